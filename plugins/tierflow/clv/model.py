"""The CLV models: fitted with pymc-marketing's ``clv`` module (a MAP fit), scored with the
library's closed forms written in numpy (:func:`score`).

Pure functions on pandas frames: no database here (store.py reads and writes the tables).

- BG/NBD (``BetaGeoModel``) for the purchase process: parameters r, alpha (purchase rate) and
  a, b (dropout after each repeat purchase). Flat priors (``HalfFlat``), so the MAP point is
  the maximum-likelihood estimate: the same estimate as lifetimes' ``BetaGeoFitter`` without
  a penalizer (tests/test_clv.py compares them).
- Gamma-Gamma (``GammaGammaModel``) for the spend per purchase day: p, q, v, fitted only on
  customers with repeat purchases whose every repeat purchase day had positive revenue.

Frames use the library's names: ``frequency`` (repeat purchase days), ``recency`` (days from
the first to the last purchase day), ``T`` (days from the first purchase day to the as-of
date) and ``monetary_value`` (mean revenue of the repeat purchase days).

A fit is *converged* when the optimizer's point is a real maximum: every parameter finite,
positive and below ``MAX_PARAMETER`` (a parameter running off to infinity is a ridge, not an
estimate: the data do not identify it) and the gradient of the log-likelihood with respect to
the log parameters is below ``GRADIENT_TOL`` per customer. Gamma-Gamma also needs q > 1, or
the expected spend is infinite.

The optimizer (``pymc.find_MAP``: scipy's L-BFGS-B on the log parameters) is told to stop on
that same gradient (:func:`_map_options`), not on its default relative change of the
log-likelihood: on tens of thousands of customers that default stopped short of the maximum
(a BG/NBD calibration fit on the 50,000-customer demo stopped at 0.00069 per customer), so
the check rejected every fit and every night refitted, and still had no predicted value.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.special import expit, hyp2f1

from tierflow.settings import configure_pytensor

BG_NBD = "bg_nbd"
GAMMA_GAMMA = "gamma_gamma"
BG_PARAMS = ("r", "alpha", "a", "b")
GG_PARAMS = ("p", "q", "v")
MAX_PARAMETER = 1e4
GRADIENT_TOL = 1e-4
DAYS_PER_MONTH = 30  # pymc-marketing's (and lifetimes') month for time unit "D"


@dataclass(frozen=True)
class Fit:
    """One fitted model: what clv_model_fits stores."""

    model: str
    parameters: dict[str, float]
    n_customers: int
    fit_seconds: float
    converged: bool
    note: str = ""
    extra: dict = field(default_factory=dict)


def _clv_module():
    configure_pytensor()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # arviz announces its refactor on import
        from pymc_extras.prior import Prior
        from pymc_marketing.clv import BetaGeoModel, GammaGammaModel
    return Prior, BetaGeoModel, GammaGammaModel


def _check(model, names: tuple[str, ...], n: int) -> tuple[dict[str, float], bool, str]:
    """The MAP point's parameters, and whether it is a converged maximum (see module doc)."""
    post = model.idata.posterior
    params = {k: float(post[k].values.ravel()[0]) for k in names}
    bad = [k for k, v in params.items() if not math.isfinite(v) or v <= 0]
    if bad:
        return params, False, f"parameter(s) {bad} not positive and finite"
    huge = [k for k, v in params.items() if v > MAX_PARAMETER]
    if huge:
        return (
            params,
            False,
            (
                f"parameter(s) {huge} ran off to {max(params[k] for k in huge):.3g}: "
                "the data do not identify them"
            ),
        )
    point = {f"{k}_log__": np.log(v) for k, v in params.items()}
    grad = model.model.compile_dlogp(jacobian=False)(point)
    worst = float(np.max(np.abs(grad))) / max(n, 1)
    if worst > GRADIENT_TOL:
        return params, False, f"gradient {worst:.2g} per customer at the optimum (> {GRADIENT_TOL:g})"
    return params, True, ""


def _map_options(n: int) -> dict:
    """scipy options for the MAP fit of ``n`` customers: stop when every component of the
    gradient (log parameters, summed over customers) is a tenth of what :func:`_check`
    accepts; a change of the log-likelihood, however small, is no reason to stop."""
    return {"options": {"ftol": 1e-15, "gtol": GRADIENT_TOL * max(n, 1) / 10}}


def _bg_frame(summary: pd.DataFrame) -> pd.DataFrame:
    return summary[["customer_id", "frequency", "recency", "T"]].reset_index(drop=True)


def fit_bg_nbd(summary: pd.DataFrame) -> Fit:
    """Fit BG/NBD on every row of ``summary`` (customers with at least one purchase)."""
    Prior, BetaGeoModel, _ = _clv_module()
    started = time.perf_counter()
    model = BetaGeoModel(model_config={k: Prior("HalfFlat") for k in BG_PARAMS})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(data=_bg_frame(summary), method="map", progressbar=False, **_map_options(len(summary)))
    params, converged, note = _check(model, BG_PARAMS, len(summary))
    return Fit(BG_NBD, params, len(summary), round(time.perf_counter() - started, 3), converged, note)


def spend_rows(summary: pd.DataFrame) -> pd.Series:
    """Customers in the spend model: repeat purchases, all of them with positive revenue."""
    return (summary["frequency"] > 0) & summary["spend_ok"].astype(bool) & (summary["monetary_value"] > 0)


def fit_gamma_gamma(summary: pd.DataFrame) -> Fit:
    """Fit Gamma-Gamma on the customers :func:`spend_rows` admits."""
    _, _, GammaGammaModel = _clv_module()
    rows = summary.loc[spend_rows(summary), ["customer_id", "frequency", "monetary_value"]]
    rows = rows.reset_index(drop=True)
    started = time.perf_counter()
    if len(rows) < 2:
        return Fit(GAMMA_GAMMA, {}, len(rows), 0.0, False, "fewer than 2 customers with repeat purchases")
    model = GammaGammaModel()  # its default priors are HalfFlat: MAP = maximum likelihood
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(data=rows, method="map", progressbar=False, **_map_options(len(rows)))
    params, converged, note = _check(model, GG_PARAMS, len(rows))
    if converged and params["q"] <= 1:
        converged, note = False, f"q = {params['q']:.3g} <= 1: the expected spend would be infinite"
    return Fit(GAMMA_GAMMA, params, len(rows), round(time.perf_counter() - started, 3), converged, note)


def _bg_arrays(summary: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (
        summary["frequency"].to_numpy(dtype=float),
        summary["recency"].to_numpy(dtype=float),
        summary["T"].to_numpy(dtype=float),
    )


def _bg_expected(bg: dict[str, float], x: np.ndarray, t_x: np.ndarray, T: np.ndarray, t) -> np.ndarray:
    """BG/NBD's expected purchase days in the next ``t`` days (Fader, Hardie and Lee 2005, eq. 10),
    as pymc-marketing's ``BetaGeoModel.expected_purchases`` computes it, in numpy."""
    r, alpha, a, b = (bg[k] for k in BG_PARAMS)
    numerator = 1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp2f1(
        r + x, b + x, a + b + x - 1, t / (alpha + T + t)
    )
    numerator *= (a + b + x - 1) / (a - 1)
    # (x > 0) as a factor, as the library writes it; np.maximum keeps b + x - 1 off 0 for x = 0
    denominator = 1 + (x > 0) * (a / (b + np.maximum(x, 1) - 1)) * ((alpha + T) / (alpha + t_x)) ** (r + x)
    return numerator / denominator


def _bg_probability_alive(bg: dict[str, float], x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """P(alive | x, t_x, T): 1 without a repeat purchase (BG/NBD drops a customer out only
    right after one), else the library's ``expected_probability_alive``."""
    r, alpha, a, b = (bg[k] for k in BG_PARAMS)
    log_div = (r + x) * np.log((alpha + T) / (alpha + t_x)) + np.log(a / (b + np.maximum(x, 1) - 1))
    return np.where(x == 0, 1.0, expit(-log_div))


def expected_purchases(summary: pd.DataFrame, bg: dict[str, float], days: int | np.ndarray) -> np.ndarray:
    """Expected purchase days in the next ``days`` days per row of ``summary``."""
    return _bg_expected(bg, *_bg_arrays(summary), days)


def score(
    summary: pd.DataFrame,
    bg: dict[str, float],
    gg: dict[str, float],
    horizon_months: int,
    monthly_discount_rate: float,
) -> pd.DataFrame:
    """Per customer: P(alive), expected purchases in 90 / 365 days, expected value per purchase
    day and the discounted CLV over ``horizon_months`` (30-day months).

    The expected value per purchase day is Gamma-Gamma's conditional mean for the customers in
    the spend model and the population mean p v / (q - 1) for the others (no repeat purchase,
    or a repeat purchase day without positive revenue): what the model knows of them.

    The closed forms pymc-marketing's predictions use (``expected_probability_alive``,
    ``expected_purchases``, ``expected_customer_spend``, ``customer_lifetime_value``), in numpy
    on the stored parameters: scoring with a reused fit needs no model object and no import of
    pymc (tests/test_clv.py compares both, customer by customer).
    """
    x, t_x, T = _bg_arrays(summary)
    p, q, v = (gg[k] for k in GG_PARAMS)
    in_spend = spend_rows(summary).to_numpy()
    # outside the spend model frequency 0 makes the conditional mean the population mean
    spend_frequency = np.where(in_spend, x, 0.0)
    mean_value = np.where(in_spend, summary["monetary_value"].to_numpy(dtype=float), 1.0)
    weight = p * spend_frequency / (p * spend_frequency + q - 1)
    avg_value = (1 - weight) * (v * p / (q - 1)) + weight * mean_value
    # customer_lifetime_value: the spend times the purchases of each 30-day month, discounted
    # by (1 + rate) per month
    clv = np.zeros(len(summary))
    previous = np.zeros(len(summary))
    for month in range(1, horizon_months + 1):
        now = _bg_expected(bg, x, t_x, T, DAYS_PER_MONTH * month)
        clv += avg_value * (now - previous) / (1 + monthly_discount_rate) ** month
        previous = now
    return pd.DataFrame(
        {
            "customer_id": summary["customer_id"].to_numpy(),
            "probability_alive": _bg_probability_alive(bg, x, t_x, T),
            "expected_purchases_90d": _bg_expected(bg, x, t_x, T, 90),
            "expected_purchases_365d": _bg_expected(bg, x, t_x, T, 365),
            "expected_avg_value": avg_value,
            "predicted_clv_12m": clv,
            "in_spend_model": in_spend,
        }
    )


# frequency buckets of the holdout comparison: calibration repeat purchase days 0, 1, ..., 6, 7+
BUCKETS = ("0", "1", "2", "3", "4", "5", "6", "7+")


def bucket_of(frequency: int) -> str:
    return BUCKETS[min(int(frequency), len(BUCKETS) - 1)]


def holdout_comparison(
    calibration_frequency: np.ndarray, predicted: np.ndarray, actual: np.ndarray
) -> tuple[list[dict], float | None]:
    """Predicted vs actual holdout purchases per calibration-frequency bucket, and the error.

    error = sum over buckets |predicted - actual| / sum of actual purchases (None when nobody
    purchased in the holdout: there is nothing to check against).
    """
    frame = pd.DataFrame(
        {
            "bucket": [bucket_of(f) for f in calibration_frequency],
            "predicted": np.asarray(predicted, dtype=float),
            "actual": np.asarray(actual, dtype=float),
        }
    )
    rows = []
    for name in BUCKETS:
        part = frame[frame["bucket"] == name]
        if part.empty:
            continue
        rows.append(
            {
                "bucket": name,
                "customers": len(part),
                "predicted": round(float(part["predicted"].sum()), 4),
                "actual": int(part["actual"].sum()),
            }
        )
    total_actual = sum(r["actual"] for r in rows)
    if total_actual == 0:
        return rows, None
    error = sum(abs(r["predicted"] - r["actual"]) for r in rows) / total_actual
    return rows, round(float(error), 4)
