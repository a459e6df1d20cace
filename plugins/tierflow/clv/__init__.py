"""Predicted customer lifetime value: BG/NBD + Gamma-Gamma on customer_rfm's BTYD summary.

The DAG's ``clv`` task runs between the marts that do not need CLV (staging .. customer_rfm)
and the tier marts that do (customer_tiers and downstream). It writes
``build_marts.customer_clv`` (one row per customer with a purchase) and
``build_marts.clv_model_fits`` (the fit in use, tonight's candidate, the holdout check), which
the marts gate checks and publish copies into BI with the other per-date marts.

Each night (docs/clv.md):

1. the fit in use is the newest accepted fit of a published earlier date, if one exists;
2. a new fit is due when there is none, or it was made ``clv.refit_days`` or more before A;
3. a due fit is made on A's summary (a sample above ``clv.fit_sample_size``) and checked on a
   holdout: BG/NBD fitted on the history up to A - ``holdout_days`` predicts each customer's
   purchase days in the holdout; the per-bucket error must be at most ``max_holdout_error``
   and every fit must converge. Only then does it replace the fit in use; otherwise the fit in
   use stays, and ``clv_model_fits`` and the run summary say why;
4. every customer is scored with the fit in use. With no fit in use (too few customers, or a
   first fit that failed its check), customer_clv has no rows for A and the tiers are
   computed without the predicted value, as before the model existed.

- :mod:`~tierflow.clv.model` fit and score (pymc-marketing), holdout comparison; no SQL;
- :mod:`~tierflow.clv.store` every query.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
import psycopg

from tierflow.clv import store
from tierflow.config import ClvConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Validation:
    """The holdout check of one candidate fit."""

    holdout_days: int
    customers: int
    buckets: list[dict]
    error: float | None
    calibration_converged: bool
    note: str


def sample(summary: pd.DataFrame, size: int) -> pd.DataFrame:
    """At most ``size`` customers, the same ones on every rerun (fixed seed over sorted ids)."""
    if len(summary) <= size:
        return summary
    rng = np.random.default_rng(20_260_101)
    keep = np.sort(rng.choice(len(summary), size=size, replace=False))
    return summary.iloc[keep].reset_index(drop=True)


def validate(holdout: pd.DataFrame, cfg: ClvConfig) -> Validation:
    """Fit BG/NBD on the calibration period and compare its holdout predictions with what happened."""
    from tierflow.clv.model import expected_purchases, fit_bg_nbd, holdout_comparison

    if len(holdout) < cfg.min_customers:
        return Validation(
            cfg.holdout_days,
            len(holdout),
            [],
            None,
            False,
            f"{len(holdout)} customers purchased before the holdout period "
            f"(clv.min_customers is {cfg.min_customers})",
        )
    calibration = sample(holdout, cfg.fit_sample_size)
    fit = fit_bg_nbd(calibration)
    if not fit.converged:
        return Validation(
            cfg.holdout_days,
            len(holdout),
            [],
            None,
            False,
            f"the calibration fit did not converge: {fit.note}",
        )
    predicted = expected_purchases(holdout, fit.parameters, cfg.holdout_days)
    buckets, error = holdout_comparison(
        holdout["frequency"].to_numpy(), predicted, holdout["actual"].to_numpy()
    )
    note = "" if error is not None else "nobody purchased in the holdout period: nothing to check against"
    return Validation(cfg.holdout_days, len(holdout), buckets, error, True, note)


def validate_date(url: str, cfg: ClvConfig, as_of: date, schema: str) -> Validation:
    """``tierflow clv validate``: the holdout check for ``as_of`` on the orders in ``schema``."""
    with psycopg.connect(url) as conn:
        holdout = store.read_holdout(conn, as_of, cfg.holdout_days, schema)
    return validate(holdout, cfg)


def _candidate_problem(bg, gg, check: Validation, cfg: ClvConfig) -> str:
    """Why a candidate fit must not be used ('' when it may)."""
    if not bg.converged:
        return f"BG/NBD did not converge: {bg.note}"
    if not gg.converged:
        return f"Gamma-Gamma did not converge: {gg.note}"
    if check.error is None:
        return f"holdout check impossible: {check.note}"
    if check.error > cfg.max_holdout_error:
        return f"holdout error {check.error:.4f} > clv.max_holdout_error {cfg.max_holdout_error:g}"
    return ""


def _fit_row(
    as_of: date, model: str, fit_id: str, fitted: date | None, status: str, in_use: bool, note: str, **values
) -> dict:
    return {
        "as_of_date": as_of,
        "model": model,
        "fit_id": fit_id,
        "fitted_as_of_date": fitted,
        "status": status,
        "is_in_use": in_use,
        "note": note,
        "n_customers": 0,
        **values,
    }


def _holdout_values(check: Validation | None, cfg: ClvConfig) -> dict:
    if check is None:
        return {}
    return {
        "holdout_days": check.holdout_days,
        "holdout_customers": check.customers,
        "holdout_error": check.error,
        "max_holdout_error": cfg.max_holdout_error,
        "holdout_buckets": check.buckets,
    }


def _round(values: np.ndarray, digits: int) -> list:
    return [round(float(v), digits) for v in values]


def run_clv(url: str, cfg: ClvConfig, as_of: date, publish_schema: str) -> dict:
    """Fit (when due), check, score and write A's rows of customer_clv and clv_model_fits."""
    from tierflow.clv.model import BG_NBD, GAMMA_GAMMA, fit_bg_nbd, fit_gamma_gamma, score

    with psycopg.connect(url) as conn:
        summary = store.read_summary(conn, as_of)
        previous = store.last_accepted_fit(conn, publish_schema, as_of)
        due = previous is None or (as_of - previous.fitted_as_of).days >= cfg.refit_days
        holdout = store.read_holdout(conn, as_of, cfg.holdout_days) if due else None

    fit_rows: list[dict] = []
    in_use: tuple[str, date, dict, dict] | None = None
    reuse_note = ""
    fit_id = f"clv-{as_of.isoformat()}"
    if due and len(summary) < cfg.min_customers:
        reuse_note = (
            f"no fit tonight: {len(summary)} customers with a purchase "
            f"(clv.min_customers is {cfg.min_customers})"
        )
    elif due:
        fit_on = sample(summary, cfg.fit_sample_size)
        bg, gg = fit_bg_nbd(fit_on), fit_gamma_gamma(fit_on)
        check = validate(holdout, cfg)
        problem = _candidate_problem(bg, gg, check, cfg)
        status = "rejected" if problem else "accepted"
        if not problem:
            in_use = (fit_id, as_of, bg.parameters, gg.parameters)
        sampled = f" (a sample of {len(fit_on):,} of {len(summary):,})" if len(fit_on) < len(summary) else ""
        note = f"fitted on A's summary{sampled}; " + (f"not used: {problem}" if problem else "accepted")
        for fit, extra in ((bg, _holdout_values(check, cfg)), (gg, {})):
            fit_rows.append(
                _fit_row(
                    as_of,
                    fit.model,
                    fit_id,
                    as_of,
                    status,
                    not problem,
                    note,
                    parameters=fit.parameters or None,
                    n_customers=fit.n_customers,
                    fit_seconds=fit.fit_seconds,
                    converged=fit.converged,
                    **extra,
                )
            )
        reuse_note = f"tonight's fit was rejected ({problem})" if problem else ""
    else:
        reuse_note = (
            f"within the refit period: fitted on {previous.fitted_as_of}, refit every {cfg.refit_days} day(s)"
        )

    if in_use is None and previous is not None:
        in_use = (previous.fit_id, previous.fitted_as_of, previous.bg, previous.gg)
        for row in (previous.bg_row, previous.gg_row):
            kept = {
                k: row[k]
                for k in (
                    "parameters",
                    "n_customers",
                    "fit_seconds",
                    "converged",
                    "holdout_days",
                    "holdout_customers",
                    "holdout_error",
                    "max_holdout_error",
                    "holdout_buckets",
                )
            }
            fit_rows.append(
                _fit_row(
                    as_of,
                    row["model"],
                    previous.fit_id,
                    previous.fitted_as_of,
                    "reused",
                    True,
                    f"reused: {reuse_note}",
                    **kept,
                )
            )
    elif in_use is None:
        note = f"no fit in use: {reuse_note}; the tiers are computed without the predicted value"
        if not fit_rows:
            for model in (BG_NBD, GAMMA_GAMMA):
                fit_rows.append(
                    _fit_row(as_of, model, fit_id, None, "not_fitted", False, note, n_customers=len(summary))
                )
        else:
            fit_rows = [{**r, "note": f"{r['note']}; {note}"} for r in fit_rows]

    clv_rows: list[tuple] = []
    if in_use is not None and len(summary):
        used_id, _, bg_params, gg_params = in_use
        scored = score(summary, bg_params, gg_params, cfg.horizon_months, cfg.monthly_discount_rate)
        columns = zip(
            summary["customer_id"],
            summary["frequency"],
            summary["recency"],
            summary["T"],
            summary["monetary_value"],
            scored["in_spend_model"],
            _round(scored["probability_alive"], 6),
            _round(scored["expected_purchases_90d"], 4),
            _round(scored["expected_purchases_365d"], 4),
            _round(scored["expected_avg_value"], 2),
            _round(scored["predicted_clv_12m"], 2),
            strict=True,
        )
        for cid, f, r, t, m, spend, alive, e90, e365, avg, clv in columns:
            clv_rows.append(
                (
                    cid,
                    as_of,
                    used_id,
                    int(f),
                    int(r),
                    int(t),
                    round(float(m), 6),
                    bool(spend),
                    alive,
                    e90,
                    e365,
                    avg,
                    clv,
                )
            )

    with psycopg.connect(url) as conn, conn.transaction():
        conn.execute("select pg_advisory_xact_lock(hashtext('tierflow.clv'))")
        store.ensure_tables(conn)
        store.write_night(conn, as_of, clv_rows, fit_rows)

    in_use_rows = [r for r in fit_rows if r["is_in_use"]]
    result = {
        "as_of_date": as_of.isoformat(),
        "customers_scored": len(clv_rows),
        "fit_in_use": in_use[0] if in_use else None,
        "refitted": any(r["status"] in ("accepted", "rejected") for r in fit_rows),
        "fits": [
            {
                k: r.get(k)
                for k in (
                    "model",
                    "fit_id",
                    "status",
                    "parameters",
                    "converged",
                    "holdout_error",
                    "fit_seconds",
                    "note",
                )
            }
            for r in fit_rows
        ],
        # what the night must say: no fit in use, or a candidate that did not replace it
        "warnings": [r["note"] for r in fit_rows if r["status"] in ("rejected", "not_fitted")][:1]
        or ([in_use_rows[0]["note"]] if in_use_rows and "rejected" in in_use_rows[0]["note"] else []),
    }
    for warning in result["warnings"]:
        log.warning("clv %s: %s", as_of, warning)
    log.info("clv %s: %s customers scored with %s", as_of, len(clv_rows), result["fit_in_use"])
    return result
