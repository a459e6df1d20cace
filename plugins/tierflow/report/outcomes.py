"""What the report's closing-the-loop sections read: bi.plan_performance and bi.cohort_retention
for the as-of date (docs/closing-the-loop.md). Data only; tierflow.report.sections.plan and
.sales draw them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import psycopg
from psycopg import sql

from tierflow.report.reading import Missing, num, table_exists

MAX_COHORTS = 12
MAX_MONTHS_SINCE = 12


@dataclass
class PlanPerformance:
    plan_period: str
    plan_as_of_date: date
    interval_z: float
    tiers: list[dict[str, Any]]  # primary_action 'all', best tier first
    actions: list[dict[str, Any]]


@dataclass
class Retention:
    cohorts: list[str]  # oldest first
    months: list[int]
    active_share: dict[tuple[str, int], float]
    customers: dict[str, int]


@dataclass
class Outcomes:
    plan: PlanPerformance | Missing | None = None
    retention: Retention | Missing | None = None
    notes: list[str] = field(default_factory=list)


def read_plan_performance(conn: psycopg.Connection, bi: str, as_of: date) -> PlanPerformance | Missing | None:
    """The last closed plan period judged on ``as_of`` (None when none is judged yet)."""
    if not table_exists(conn, bi, "plan_performance"):
        return Missing(f"{bi}.plan_performance")
    rows = conn.execute(
        sql.SQL(
            """
            select * from {}
            where as_of_date = %s
                and period_end_date = (select max(period_end_date) from {} where as_of_date = %s)
            order by tier_rank, value_tier, primary_action = 'all' desc, budget_spent desc, primary_action
            """
        ).format(sql.Identifier(bi, "plan_performance"), sql.Identifier(bi, "plan_performance")),
        (as_of, as_of),
    ).fetchall()
    if not rows:
        return None
    first = rows[0]
    return PlanPerformance(
        plan_period=first["plan_period"],
        plan_as_of_date=first["plan_as_of_date"],
        interval_z=num(first["interval_z"]),
        tiers=[dict(r) for r in rows if r["primary_action"] == "all"],
        actions=[dict(r) for r in rows if r["primary_action"] != "all"],
    )


def read_retention(conn: psycopg.Connection, bi: str, as_of: date) -> Retention | Missing | None:
    """Active share per cohort and month since, over all tiers, for the last cohorts."""
    if not table_exists(conn, bi, "cohort_retention"):
        return Missing(f"{bi}.cohort_retention")
    rows = conn.execute(
        sql.SQL(
            """
            select cohort, months_since, sum(customers) as customers, sum(active_customers) as active
            from {}
            where as_of_date = %s and months_since <= %s
                and cohort_month >= (
                    select max(cohort_month) - make_interval(months => %s) from {} where as_of_date = %s
                )
            group by cohort, months_since
            order by cohort, months_since
            """
        ).format(sql.Identifier(bi, "cohort_retention"), sql.Identifier(bi, "cohort_retention")),
        (as_of, MAX_MONTHS_SINCE, MAX_COHORTS - 1, as_of),
    ).fetchall()
    if not rows:
        return None
    cohorts = sorted({r["cohort"] for r in rows})
    return Retention(
        cohorts=cohorts,
        months=list(range(max(r["months_since"] for r in rows) + 1)),
        active_share={(r["cohort"], r["months_since"]): int(r["active"]) / int(r["customers"]) for r in rows},
        customers={r["cohort"]: int(r["customers"]) for r in rows if r["months_since"] == 0},
    )


def read_outcomes(conn: psycopg.Connection, bi: str, as_of: date) -> Outcomes:
    return Outcomes(plan=read_plan_performance(conn, bi, as_of), retention=read_retention(conn, bi, as_of))
