"""Issue 13 item 6: fit and score the CLV models at 100,000 customers; seconds and peak RSS.

A synthetic BTYD summary is drawn from the models' own generative story (BG/NBD purchases,
Gamma-Gamma spend) with known parameters, so the bench also shows that the fit recovers them.
The fit is made as the nightly step makes it: on a deterministic sample of at most
clv.fit_sample_size customers (config default); everyone is scored (P(alive), 90/365-day
purchases, spend, 12-month CLV). Target (issue 13): under 60 s and 1 GB on 2 cores.

    make bench-clv                      # 100,000 customers, a fresh pytensor compile dir
    .venv/bin/python bench/bench_clv.py --customers 100000 --warm

Without --warm the pytensor C compilation of a first fit on a new machine is included (a
fresh compile dir under a temporary folder); with --warm the compile dir of TIERFLOW_HOME is
used, as every later night does.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time

import numpy as np
import pandas as pd

TRUE_BG = {"r": 0.6, "alpha": 40.0, "a": 0.8, "b": 2.5}
TRUE_GG = {"p": 6.0, "q": 4.0, "v": 60.0}


def synthetic_summary(n: int, seed: int = 13) -> pd.DataFrame:
    """BTYD summaries (days) of n customers first seen 30..730 days before the as-of date."""
    rng = np.random.default_rng(seed)
    T = rng.integers(30, 731, n).astype(float)
    lam = rng.gamma(TRUE_BG["r"], 1 / TRUE_BG["alpha"], n)
    p = rng.beta(TRUE_BG["a"], TRUE_BG["b"], n)
    t = np.zeros(n)
    freq = np.zeros(n, dtype=np.int64)
    recency = np.zeros(n)
    active = np.ones(n, dtype=bool)
    while active.any():
        idx = np.flatnonzero(active)
        t[idx] += rng.exponential(1 / lam[idx])
        bought = t[idx] <= T[idx]
        done = idx[~bought]
        active[done] = False
        b = idx[bought]
        freq[b] += 1
        recency[b] = t[b]
        active[b[rng.random(len(b)) < p[b]]] = False  # drops out after the purchase
    recency = np.floor(recency)
    nu = rng.gamma(TRUE_GG["q"], 1 / TRUE_GG["v"], n)
    total = rng.gamma(TRUE_GG["p"] * np.maximum(freq, 1), 1 / nu)
    monetary = np.where(freq > 0, total / np.maximum(freq, 1), 0.0)
    return pd.DataFrame({
        "customer_id": [f"C{i:07d}" for i in range(n)],
        "frequency": freq,
        "recency": recency,
        "T": np.floor(T),
        "monetary_value": np.round(monetary, 2),
        "spend_ok": True,
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--warm", action="store_true", help="use TIERFLOW_HOME's pytensor compile dir")
    args = parser.parse_args()
    if not args.warm:
        os.environ["PYTENSOR_FLAGS"] = f"compiledir={tempfile.mkdtemp(prefix='tierflow-bench-pytensor-')}"

    from tierflow.clv import sample
    from tierflow.clv.model import fit_bg_nbd, fit_gamma_gamma, score
    from tierflow.config import ClvConfig

    cfg = ClvConfig()
    started = time.perf_counter()
    summary = synthetic_summary(args.customers)
    made = time.perf_counter() - started

    def cpu_seconds() -> float:  # this process and its children (pytensor's C compiler)
        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    fit_on = sample(summary, cfg.fit_sample_size)
    bg = fit_bg_nbd(fit_on)
    gg = fit_gamma_gamma(fit_on)
    fitted = time.perf_counter() - t0
    t1 = time.perf_counter()
    scored = score(summary, bg.parameters, gg.parameters, cfg.horizon_months, cfg.monthly_discount_rate)
    scoring = time.perf_counter() - t1
    cpu = cpu_seconds() - cpu0
    load = os.getloadavg()[0]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    total = fitted + scoring
    result = {
        "customers": args.customers,
        "fitted_on": len(fit_on),
        "pytensor": "warm compile dir" if args.warm else "fresh compile dir (first fit on a machine)",
        "synthetic_summary_s": round(made, 1),
        "fit_s": round(fitted, 1),
        "bg_nbd_fit_s": bg.fit_seconds,
        "gamma_gamma_fit_s": gg.fit_seconds,
        "score_s": round(scoring, 1),
        "fit_and_score_s": round(total, 1),
        # on a machine shared with other work, wall time includes waiting for a core
        "fit_and_score_cpu_s": round(cpu, 1),
        "load_average_1m": round(load, 2),
        "peak_rss_mb": round(peak_mb),
        "converged": bg.converged and gg.converged,
        "bg_nbd": {k: round(v, 4) for k, v in bg.parameters.items()},
        "bg_nbd_true": TRUE_BG,
        "gamma_gamma": {k: round(v, 4) for k, v in gg.parameters.items()},
        "gamma_gamma_true": TRUE_GG,
        "mean_probability_alive": round(float(scored["probability_alive"].mean()), 4),
        "mean_predicted_clv_12m": round(float(scored["predicted_clv_12m"].mean()), 2),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result, indent=2))
    ok = total < 60 and peak_mb < 1024 and result["converged"]
    print(f"fit + score {total:.1f} s, peak RSS {peak_mb:.0f} MB: "
          f"{'within' if ok else 'OUTSIDE'} the target (< 60 s, < 1 GB, converged)")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
