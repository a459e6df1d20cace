"""All SQL of the CLV step: read the BTYD summary and the holdout split, read the last accepted
fit from the published schema, write customer_clv and clv_model_fits into build_marts.

The two tables are per-as-of-date marts like the dbt ones: this step replaces only the as-of
date's rows in build_marts, the marts gate checks them, and publish copies that date into BI.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date

import pandas as pd
import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from tierflow.settings import MARTS_SCHEMA

CLV_TABLE = "customer_clv"
FITS_TABLE = "clv_model_fits"

CLV_COLUMNS = (
    (
        "customer_id",
        "text not null",
        "Customer (dim_customers); one row per customer with a completed order up to A.",
    ),
    ("as_of_date", "date not null", "As-of date A: the BTYD summary of customer_rfm for A was scored."),
    (
        "fit_id",
        "text not null",
        "The fit that scored the row (clv_model_fits.fit_id): clv-<date it was fitted>.",
    ),
    ("frequency_repeat", "integer not null", "BTYD frequency: purchase days - 1 (customer_rfm)."),
    ("recency_btyd_days", "integer not null", "Days from the first to the last purchase day (customer_rfm)."),
    ("t_days", "integer not null", "Days from the first purchase day to A (customer_rfm)."),
    ("avg_repeat_value", "numeric not null", "Mean revenue of the repeat purchase days (customer_rfm)."),
    (
        "is_in_spend_model",
        "boolean not null",
        "True when the Gamma-Gamma spend model uses the customer: repeat purchases, every repeat purchase "
        "day with positive revenue. Others get the population mean spend.",
    ),
    (
        "probability_alive",
        "numeric not null",
        "BG/NBD probability that the customer is still active at A (1 for a customer without repeat "
        "purchases: the model lets customers drop out only after a repeat purchase).",
    ),
    ("expected_purchases_90d", "numeric not null", "BG/NBD expected purchase days in the 90 days after A."),
    ("expected_purchases_365d", "numeric not null", "BG/NBD expected purchase days in the 365 days after A."),
    (
        "expected_avg_value",
        "numeric not null",
        "Gamma-Gamma expected revenue per future purchase day, in the base currency.",
    ),
    (
        "predicted_clv_12m",
        "numeric not null",
        "Predicted revenue over the next clv.horizon_months 30-day months (12 by default), each month "
        "discounted at clv.monthly_discount_rate, in the base currency.",
    ),
)

FITS_COLUMNS = (
    ("as_of_date", "date not null", "As-of date A of the run."),
    ("model", "text not null", "bg_nbd (purchase process) or gamma_gamma (spend per purchase day)."),
    ("fit_id", "text not null", "clv-<date the fit was made>: the same id for both models of one fit."),
    ("fitted_as_of_date", "date", "As-of date whose BTYD summary the fit was made on (null: no fit)."),
    (
        "status",
        "text not null",
        "accepted (fitted tonight, passed, in use), rejected (fitted tonight, not used: see note), "
        "reused (an earlier accepted fit, in use tonight) or not_fitted (no fit tonight and none to reuse).",
    ),
    ("is_in_use", "boolean not null", "True for the fit whose predictions are in customer_clv for A."),
    ("parameters", "jsonb", "Fitted parameters: r, alpha, a, b (bg_nbd) or p, q, v (gamma_gamma)."),
    (
        "n_customers",
        "integer not null",
        "Customers the model was fitted on (a sample above clv.fit_sample_size).",
    ),
    ("fit_seconds", "numeric", "Seconds the fit took (a measurement: reruns may differ)."),
    (
        "converged",
        "boolean",
        "The optimizer reached a maximum (finite, identified parameters, zero gradient).",
    ),
    ("holdout_days", "integer", "bg_nbd: days of the holdout period (clv.holdout_days)."),
    ("holdout_customers", "integer", "bg_nbd: customers with a purchase before the holdout period."),
    (
        "holdout_error",
        "numeric",
        "bg_nbd: sum over calibration-frequency buckets of |predicted - actual| holdout purchase days, "
        "divided by the actual holdout purchase days.",
    ),
    (
        "max_holdout_error",
        "numeric",
        "bg_nbd: the bound the holdout error must not exceed (clv.max_holdout_error).",
    ),
    (
        "holdout_buckets",
        "jsonb",
        "bg_nbd: per calibration-frequency bucket (0 .. 6, 7+): customers, predicted and actual holdout "
        "purchase days.",
    ),
    ("note", "text not null", "Why this row is what it is, in plain words."),
)

TABLE_COMMENTS = {
    CLV_TABLE: "Predicted customer lifetime value per customer and as-of date: BG/NBD + Gamma-Gamma on "
    "customer_rfm's BTYD summary (docs/clv.md). No rows for a date without an accepted fit.",
    FITS_TABLE: "CLV model fits per as-of date: the fit in use, tonight's candidate if one was made, "
    "parameters, convergence and the holdout check.",
}


@dataclass(frozen=True)
class StoredFit:
    """An accepted fit, as clv_model_fits holds it."""

    fit_id: str
    fitted_as_of: date
    bg: dict
    gg: dict
    bg_row: dict
    gg_row: dict


def read_summary(conn: psycopg.Connection, as_of: date) -> pd.DataFrame:
    """customer_rfm's BTYD summary for A (customers with a completed order), with whether every
    repeat purchase day had positive revenue (the spend model's filter)."""
    query = sql.SQL(
        """
        select customer_id, frequency_repeat, recency_btyd_days, t_days, avg_repeat_value,
            repeat_days_all_positive
        from {rfm}
        where as_of_date = %(as_of)s and frequency_repeat is not null
        order by customer_id
        """
    ).format(rfm=sql.Identifier(MARTS_SCHEMA, "customer_rfm"))
    rows = conn.execute(query, {"as_of": as_of}).fetchall()
    frame = pd.DataFrame(
        rows, columns=["customer_id", "frequency", "recency", "T", "monetary_value", "spend_ok"]
    )
    for col in ("frequency", "recency", "T"):
        frame[col] = frame[col].astype("int64")
    frame["monetary_value"] = frame["monetary_value"].astype("float64")
    frame["spend_ok"] = frame["spend_ok"].astype(bool)
    return frame


def read_holdout(
    conn: psycopg.Connection, as_of: date, holdout_days: int, schema: str = MARTS_SCHEMA
) -> pd.DataFrame:
    """The calibration/holdout split: for every customer whose first purchase day is on or
    before the cutoff C = A - holdout_days, the BTYD summary as of C (frequency, recency, T) and
    the purchase days in (C, A] (actual)."""
    query = sql.SQL(
        """
        with days as (
            select distinct customer_id, order_date
            from {orders}
            where status = 'completed' and order_date <= %(as_of)s
        )
        select customer_id,
            count(*) filter (where order_date <= %(cutoff)s) - 1 as frequency,
            max(order_date) filter (where order_date <= %(cutoff)s) - min(order_date) as recency,
            %(cutoff)s::date - min(order_date) as t,
            count(*) filter (where order_date > %(cutoff)s) as actual
        from days
        group by customer_id
        having min(order_date) <= %(cutoff)s
        order by customer_id
        """
    ).format(orders=sql.Identifier(schema, "fct_orders"))
    cutoff = date.fromordinal(as_of.toordinal() - holdout_days)
    rows = conn.execute(query, {"as_of": as_of, "cutoff": cutoff}).fetchall()
    frame = pd.DataFrame(rows, columns=["customer_id", "frequency", "recency", "T", "actual"])
    for col in ("frequency", "recency", "T", "actual"):
        frame[col] = frame[col].astype("int64")
    return frame


def last_accepted_fit(conn: psycopg.Connection, publish_schema: str, before: date) -> StoredFit | None:
    """The newest fit in use on a published date before ``before`` (None: there is none yet).

    Only published nights count, like every other history tierflow reads: a failed night's
    fit never becomes the fit in use, and a rerun of a date sees what it saw the first time.
    """
    table = sql.Identifier(publish_schema, FITS_TABLE)
    if conn.execute("select to_regclass(%s)", (f"{publish_schema}.{FITS_TABLE}",)).fetchone()[0] is None:
        return None
    cur = conn.execute(
        sql.SQL(
            """
            select f.model, f.fit_id, f.fitted_as_of_date, f.parameters, f.n_customers, f.fit_seconds,
                f.converged, f.holdout_days, f.holdout_customers, f.holdout_error, f.max_holdout_error,
                f.holdout_buckets
            from {table} as f
            where f.is_in_use and f.as_of_date = (
                select max(as_of_date) from {table} where is_in_use and as_of_date < %s
            )
            """
        ).format(table=table),
        (before,),
    )
    names = [d.name for d in cur.description]
    rows = {r[0]: dict(zip(names, r, strict=True)) for r in cur.fetchall()}
    if set(rows) != {"bg_nbd", "gamma_gamma"}:
        return None
    bg, gg = rows["bg_nbd"], rows["gamma_gamma"]
    return StoredFit(bg["fit_id"], bg["fitted_as_of_date"], bg["parameters"], gg["parameters"], bg, gg)


def _ensure_table(conn: psycopg.Connection, table: str, columns: tuple) -> None:
    ident = sql.Identifier(MARTS_SCHEMA, table)
    conn.execute(
        sql.SQL("create table if not exists {} ({})").format(
            ident,
            sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t)) for n, t, _ in columns),
        )
    )
    for name, type_, comment in columns:
        conn.execute(
            sql.SQL("alter table {} add column if not exists {} {}").format(
                ident, sql.Identifier(name), sql.SQL(type_.replace(" not null", ""))
            )
        )
        conn.execute(
            sql.SQL("comment on column {}.{} is {}").format(ident, sql.Identifier(name), sql.Literal(comment))
        )
    conn.execute(sql.SQL("comment on table {} is {}").format(ident, sql.Literal(TABLE_COMMENTS[table])))


def ensure_tables(conn: psycopg.Connection) -> None:
    conn.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(MARTS_SCHEMA)))
    _ensure_table(conn, CLV_TABLE, CLV_COLUMNS)
    _ensure_table(conn, FITS_TABLE, FITS_COLUMNS)


def write_night(conn: psycopg.Connection, as_of: date, clv_rows: list[tuple], fit_rows: list[dict]) -> None:
    """Replace the as-of date's rows of both tables (call inside one transaction)."""
    for table, columns, rows in (
        (CLV_TABLE, CLV_COLUMNS, clv_rows),
        (FITS_TABLE, FITS_COLUMNS, [_fit_tuple(r) for r in fit_rows]),
    ):
        ident = sql.Identifier(MARTS_SCHEMA, table)
        conn.execute(sql.SQL("delete from {} where as_of_date = %s").format(ident), (as_of,))
        names = sql.SQL(", ").join(sql.Identifier(n) for n, _, _ in columns)
        with conn.cursor().copy(sql.SQL("copy {} ({}) from stdin").format(ident, names)) as copy:
            for row in rows:
                copy.write_row(row)


def _fit_tuple(row: dict) -> tuple:
    out = []
    for name, _, _ in FITS_COLUMNS:
        value = row.get(name)
        if name in ("parameters", "holdout_buckets") and value is not None:
            value = json.dumps(value, sort_keys=True)
        out.append(value)
    return tuple(out)


def read_fits(conn: psycopg.Connection, schema: str, as_of: date) -> list[dict]:
    """clv_model_fits rows of one date (for the CLI and the report)."""
    cur = conn.cursor(row_factory=dict_row)  # whatever the connection's own row factory
    if cur.execute("select to_regclass(%s) as t", (f"{schema}.{FITS_TABLE}",)).fetchone()["t"] is None:
        return []
    cur.execute(
        sql.SQL("select * from {} where as_of_date = %s order by is_in_use desc, model, fit_id").format(
            sql.Identifier(schema, FITS_TABLE)
        ),
        (as_of,),
    )
    return list(cur.fetchall())
