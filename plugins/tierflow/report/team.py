"""What the report's team and regions sections read: bi.sales_rep_performance and
bi.region_potential for the as-of date (issue 17). Data only; tierflow.report.sections.sales
draws them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import psycopg
from psycopg import sql

from tierflow.report.reading import Missing, num, table_exists


@dataclass
class RepMonth:
    """One rep's book in the decomposed month."""

    sales_rep: str
    covered: int
    active: int
    revenue: float
    revenue_change: float | None
    covered_effect: float | None
    active_rate_effect: float | None
    revenue_per_active_effect: float | None
    gross_margin: float
    net_contribution: float
    sold_revenue: float
    tier_mix: str | None
    open_alerts: int | None
    month_alerts: int


@dataclass
class TeamView:
    month: date
    is_complete: bool
    reps: list[RepMonth]  # by revenue change, largest first (reps without a change last)


@dataclass
class RegionRow:
    region: str
    potential_rank: int
    potential_index: float
    known: int
    active: int
    revenue_per_active: float | None
    median_revenue_per_active: float | None
    high_tier_share: float
    growth_rate: float | None


@dataclass
class RegionsView:
    month: date
    regions: list[RegionRow]  # by potential_rank


def read_team(conn: psycopg.Connection, bi: str, as_of: date) -> TeamView | Missing | None:
    """The latest complete month with a previous month (else the latest one with it), as the
    sales KPI section picks it; None when there is no such month."""
    if not table_exists(conn, bi, "sales_rep_performance"):
        return Missing(f"{bi}.sales_rep_performance")
    table = sql.Identifier(bi, "sales_rep_performance")
    month = conn.execute(
        sql.SQL(
            "select month_start_date, bool_and(is_complete_month) as is_complete from {}"
            " where as_of_date = %s and previous_revenue is not null group by month_start_date"
            " order by bool_and(is_complete_month) desc, month_start_date desc limit 1"
        ).format(table),
        (as_of,),
    ).fetchone()
    if month is None:
        return None
    rows = conn.execute(
        sql.SQL(
            "select * from {} where as_of_date = %s and month_start_date = %s"
            " order by revenue_change desc nulls last, sales_rep"
        ).format(table),
        (as_of, month["month_start_date"]),
    ).fetchall()

    def opt(v: object) -> float | None:
        return float(v) if v is not None else None  # type: ignore[arg-type]

    return TeamView(
        month=month["month_start_date"],
        is_complete=bool(month["is_complete"]),
        reps=[
            RepMonth(
                sales_rep=r["sales_rep"],
                covered=int(r["covered_customers"]),
                active=int(r["active_customers"]),
                revenue=num(r["revenue"]),
                revenue_change=opt(r["revenue_change"]),
                covered_effect=opt(r["covered_customers_effect"]),
                active_rate_effect=opt(r["active_rate_effect"]),
                revenue_per_active_effect=opt(r["revenue_per_active_effect"]),
                gross_margin=num(r["gross_margin"]),
                net_contribution=num(r["net_contribution"]),
                sold_revenue=num(r["sold_revenue"]),
                tier_mix=r["tier_mix"],
                open_alerts=r["open_alerts"],
                month_alerts=int(r["month_alerts"]),
            )
            for r in rows
        ],
    )


def read_regions(conn: psycopg.Connection, bi: str, as_of: date) -> RegionsView | Missing | None:
    """The regions of the month of the as-of date, ranked by potential for sales coverage."""
    if not table_exists(conn, bi, "region_potential"):
        return Missing(f"{bi}.region_potential")
    rows = conn.execute(
        sql.SQL(
            "select * from {} where as_of_date = %s and month_start_date = date_trunc('month', %s::date)"
            " order by potential_rank, region"
        ).format(sql.Identifier(bi, "region_potential")),
        (as_of, as_of),
    ).fetchall()
    if not rows:
        return None
    return RegionsView(
        month=rows[0]["month_start_date"],
        regions=[
            RegionRow(
                region=r["region"],
                potential_rank=int(r["potential_rank"]),
                potential_index=num(r["potential_index"]),
                known=int(r["known_customers"]),
                active=int(r["active_customers"]),
                revenue_per_active=float(r["revenue_per_active_customer"])
                if r["revenue_per_active_customer"] is not None else None,
                median_revenue_per_active=float(r["median_revenue_per_active"])
                if r["median_revenue_per_active"] is not None else None,
                high_tier_share=num(r["high_tier_share"]),
                growth_rate=float(r["growth_rate"]) if r["growth_rate"] is not None else None,
            )
            for r in rows
        ],
    )
