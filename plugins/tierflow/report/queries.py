"""What the run report reads: the published tables and tierflow's own metadata.

Each ``read_*`` function returns plain Python values for one section of the report. A
table that is not there (e.g. a mart another release adds) does not stop the report: the
section says which table is missing instead (``reading.Missing``). ``read_report_data`` reads
every section's values, with those of team.py and outcomes.py, in one snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from tierflow.quality.completeness import degradations
from tierflow.report.outcomes import Outcomes, read_outcomes
from tierflow.report.reading import Missing, num, table_exists
from tierflow.report.team import RegionsView, TeamView, read_regions, read_team
from tierflow.settings import META_SCHEMA

NEW_TIER = "new"  # how tier_migrations' from_tier null (no previous tier) is shown
CRITICAL = "critical"  # account_alerts.severity of the alerts listed one by one


@dataclass
class TierMix:
    tiers: list[str]  # configured order (best first)
    dates: list[date]
    customers: dict[tuple[date, str], int]  # (as_of_date, tier) -> customers
    revenue: dict[str, float]  # tier -> revenue in window, for as_of only


@dataclass
class WhaleCurve:
    points: list[tuple[int, float]]  # (contribution_rank, cumulative_contribution_share)
    total_contribution: float
    loss_making: int
    top: list[dict[str, Any]]  # best contributors: customer_id, customer_name, net_contribution


@dataclass
class Migrations:
    cells: dict[tuple[str, str], tuple[int, float]]  # (from, to) -> (customers, revenue)
    from_tiers: list[str]
    to_tiers: list[str]
    ranks: dict[str, int]
    previous_date: date | None


@dataclass
class SalesMonth:
    month: date
    is_complete: bool
    covered: int
    active: int
    orders: int
    revenue: float
    previous_revenue: float | None
    revenue_change: float | None
    covered_effect: float | None
    active_rate_effect: float | None
    revenue_per_active_effect: float | None
    new_customers: int
    churned_customers: int


@dataclass
class TierChanges:
    """The night's tier changes (customer_tiers on as_of): tier_change and the flags."""

    up: int = 0
    down: int = 0
    same: int = 0
    new: int = 0
    held_by_hysteresis: int = 0
    overrides: int = 0
    high_potential: int = 0


@dataclass
class ActionRow:
    action: str
    customers: int
    budget: float
    expected_return: float


@dataclass
class Actions:
    by_action: list[ActionRow]  # most budget first
    plan_modes: list[str]
    plan_periods: list[str]
    top: list[dict[str, Any]]  # the customers with the most budget, with action and reason


@dataclass
class Alerts:
    counts: dict[tuple[str, str], int]  # (alert_type, severity) -> alerts
    owners: list[dict[str, Any]]  # owner, alerts, critical, other, customers; most critical first
    critical: list[dict[str, Any]]  # the first critical alerts by owner, customer, type
    critical_total: int


@dataclass
class Rejects:
    files: int = 0
    rows_in: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    by_reason: list[tuple[str, int]] = field(default_factory=list)
    by_reason_file: list[tuple[str, str, int]] = field(default_factory=list)
    ignored: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) not loaded
    extra_columns: list[tuple[str, list[str]]] = field(default_factory=list)  # (file, columns kept aside)


@dataclass
class Clv:
    """The CLV model of the night: its fits (clv_model_fits) and what customer_clv holds."""

    fits: list[dict[str, Any]]  # in use first
    customers: int = 0
    mean_probability_alive: float = 0.0
    total_predicted_clv: float = 0.0


def read_clv(conn: psycopg.Connection, bi: str, as_of: date) -> Clv | Missing:
    if not table_exists(conn, bi, "clv_model_fits"):
        return Missing(f"{bi}.clv_model_fits")
    fits = [
        dict(r)
        for r in conn.execute(
            sql.SQL(
                "select * from {} where as_of_date = %s order by is_in_use desc, fit_id desc, model"
            ).format(sql.Identifier(bi, "clv_model_fits")),
            (as_of,),
        )
    ]
    out = Clv(fits)
    if table_exists(conn, bi, "customer_clv"):
        r = conn.execute(
            sql.SQL(
                "select count(*) as n, avg(probability_alive) as alive, sum(predicted_clv_12m) as clv"
                " from {} where as_of_date = %s"
            ).format(sql.Identifier(bi, "customer_clv")),
            (as_of,),
        ).fetchone()
        out.customers, out.mean_probability_alive, out.total_predicted_clv = (
            int(r["n"]), num(r["alive"]), num(r["clv"])
        )
    return out


def tier_ranks(conn: psycopg.Connection, bi: str) -> dict[str, int]:
    """Tier name -> rank (1 = best) as the runs configured them."""
    ranks: dict[str, int] = {}
    if table_exists(conn, bi, "allocation_plan_tier"):
        for r in conn.execute(
            sql.SQL("select value_tier, min(tier_rank) as rank from {} group by value_tier").format(
                sql.Identifier(bi, "allocation_plan_tier")
            )
        ):
            ranks[r["value_tier"]] = r["rank"]
    if table_exists(conn, bi, "customer_tiers"):
        for r in conn.execute(
            sql.SQL("select value_tier, min(value_tier_rank) as rank from {} group by value_tier").format(
                sql.Identifier(bi, "customer_tiers")
            )
        ):
            ranks[r["value_tier"]] = min(r["rank"], ranks.get(r["value_tier"], r["rank"]))
    return ranks


def ordered(names: set[str] | list[str], ranks: dict[str, int]) -> list[str]:
    """Tiers in configured order; names without a rank (config changed) last, by name."""
    return sorted(set(names), key=lambda n: (ranks.get(n, 1_000_000), n))


def read_tier_mix(conn: psycopg.Connection, bi: str, as_of: date, ranks: dict[str, int]) -> TierMix | Missing:
    if not table_exists(conn, bi, "customer_tiers"):
        return Missing(f"{bi}.customer_tiers")
    rows = conn.execute(
        sql.SQL(
            """
            select as_of_date, value_tier, count(*) as customers, coalesce(sum(monetary), 0) as revenue
            from {} where as_of_date <= %s
            group by as_of_date, value_tier
            order by as_of_date
            """
        ).format(sql.Identifier(bi, "customer_tiers")),
        (as_of,),
    ).fetchall()
    dates = sorted({r["as_of_date"] for r in rows})
    return TierMix(
        tiers=ordered({r["value_tier"] for r in rows}, ranks),
        dates=dates,
        customers={(r["as_of_date"], r["value_tier"]): r["customers"] for r in rows},
        revenue={r["value_tier"]: num(r["revenue"]) for r in rows if r["as_of_date"] == as_of},
    )


def read_tier_changes(conn: psycopg.Connection, bi: str, as_of: date) -> TierChanges | Missing:
    if not table_exists(conn, bi, "customer_tiers"):
        return Missing(f"{bi}.customer_tiers")
    r = conn.execute(
        sql.SQL(
            """
            select count(*) filter (where tier_change = 'up') as up,
                   count(*) filter (where tier_change = 'down') as down,
                   count(*) filter (where tier_change = 'same') as same,
                   count(*) filter (where tier_change = 'new') as new,
                   count(*) filter (where is_hysteresis_held) as held_by_hysteresis,
                   count(*) filter (where is_override) as overrides,
                   count(*) filter (where is_high_potential) as high_potential
            from {} where as_of_date = %s
            """
        ).format(sql.Identifier(bi, "customer_tiers")),
        (as_of,),
    ).fetchone()
    return TierChanges(**{k: int(v) for k, v in r.items()})


def _customer_names(conn: psycopg.Connection, bi: str, alias: str) -> tuple[sql.Composable, sql.Composable]:
    """The select expression and join that add dim_customers' customer_name (null without it)."""
    if not table_exists(conn, bi, "dim_customers"):
        return sql.SQL("null::text"), sql.SQL("")
    return sql.SQL("d.customer_name"), sql.SQL("left join {} d on d.customer_id = {}.customer_id").format(
        sql.Identifier(bi, "dim_customers"), sql.Identifier(alias)
    )


def read_whale_curve(conn: psycopg.Connection, bi: str, as_of: date) -> WhaleCurve | Missing:
    if not table_exists(conn, bi, "customer_profitability"):
        return Missing(f"{bi}.customer_profitability")
    table = sql.Identifier(bi, "customer_profitability")
    rows = conn.execute(
        sql.SQL(
            """
            select contribution_rank, cumulative_contribution_share, net_contribution, is_loss_making
            from {} where as_of_date = %s order by contribution_rank
            """
        ).format(table),
        (as_of,),
    ).fetchall()
    names, join = _customer_names(conn, bi, "p")
    top = conn.execute(
        sql.SQL(
            """
            select p.contribution_rank, p.customer_id, {names} as customer_name, p.net_contribution,
                   p.cumulative_contribution_share
            from {table} p {join}
            where p.as_of_date = %s order by p.contribution_rank limit 5
            """
        ).format(names=names, table=table, join=join),
        (as_of,),
    ).fetchall()
    return WhaleCurve(
        points=[
            (r["contribution_rank"], num(r["cumulative_contribution_share"]))
            for r in rows
            if r["cumulative_contribution_share"] is not None
        ],
        total_contribution=sum(num(r["net_contribution"]) for r in rows),
        loss_making=sum(1 for r in rows if r["is_loss_making"]),
        top=[dict(r) for r in top],
    )


def read_migrations(
    conn: psycopg.Connection, bi: str, as_of: date, ranks: dict[str, int]
) -> Migrations | Missing:
    if not table_exists(conn, bi, "tier_migrations"):
        return Missing(f"{bi}.tier_migrations")
    rows = conn.execute(
        sql.SQL(
            """
            select coalesce(from_tier, %s) as from_tier, coalesce(to_tier, '(none)') as to_tier,
                   sum(customers) as customers, coalesce(sum(revenue_in_window), 0) as revenue
            from {} where as_of_date = %s
            group by 1, 2
            """
        ).format(sql.Identifier(bi, "tier_migrations")),
        (NEW_TIER, as_of),
    ).fetchall()
    previous = None
    if table_exists(conn, bi, "customer_tiers"):
        previous = conn.execute(
            sql.SQL("select max(as_of_date) as d from {} where as_of_date < %s").format(
                sql.Identifier(bi, "customer_tiers")
            ),
            (as_of,),
        ).fetchone()["d"]
    cells = {(r["from_tier"], r["to_tier"]): (int(r["customers"] or 0), num(r["revenue"])) for r in rows}
    from_tiers = ordered({f for f, _ in cells} - {NEW_TIER}, ranks)
    if any(f == NEW_TIER for f, _ in cells):
        from_tiers.insert(0, NEW_TIER)
    return Migrations(
        cells=cells,
        from_tiers=from_tiers,
        to_tiers=ordered({t for _, t in cells}, ranks),
        ranks=ranks,
        previous_date=previous,
    )


def read_allocation(conn: psycopg.Connection, bi: str, as_of: date) -> list[dict[str, Any]] | Missing:
    if not table_exists(conn, bi, "allocation_plan_tier"):
        return Missing(f"{bi}.allocation_plan_tier")
    return [
        dict(r)
        for r in conn.execute(
            sql.SQL(
                """
                select value_tier, tier_rank, plan_period, service_level, customers, allocated_budget,
                       expected_return, plan_mode
                from {} where as_of_date = %s order by tier_rank, value_tier
                """
            ).format(sql.Identifier(bi, "allocation_plan_tier")),
            (as_of,),
        )
    ]


def read_actions(conn: psycopg.Connection, bi: str, as_of: date, top: int) -> Actions | Missing:
    """allocation_plan_customer per primary action, and the ``top`` customers by budget."""
    if not table_exists(conn, bi, "allocation_plan_customer"):
        return Missing(f"{bi}.allocation_plan_customer")
    table = sql.Identifier(bi, "allocation_plan_customer")
    rows = conn.execute(
        sql.SQL(
            """
            select primary_action, count(*) as customers, coalesce(sum(allocated_budget), 0) as budget,
                   coalesce(sum(expected_return), 0) as expected_return,
                   array_agg(distinct plan_mode order by plan_mode) as modes,
                   array_agg(distinct plan_period order by plan_period) as periods
            from {} where as_of_date = %s
            group by primary_action
            order by budget desc, customers desc, primary_action
            """
        ).format(table),
        (as_of,),
    ).fetchall()
    names, join = _customer_names(conn, bi, "c")
    best = conn.execute(
        sql.SQL(
            """
            select c.customer_id, {names} as customer_name, c.value_tier, c.allocated_budget,
                   c.expected_return, c.primary_action, c.action_reason
            from {table} c {join}
            where c.as_of_date = %s
            order by c.allocated_budget desc, c.customer_id
            limit %s
            """
        ).format(names=names, table=table, join=join),
        (as_of, top),
    ).fetchall()
    return Actions(
        by_action=[
            ActionRow(r["primary_action"], int(r["customers"]), num(r["budget"]), num(r["expected_return"]))
            for r in rows
        ],
        plan_modes=sorted({m for r in rows for m in r["modes"] if m is not None}),
        plan_periods=sorted({p for r in rows for p in r["periods"] if p is not None}),
        top=[dict(r) for r in best],
    )


def read_alerts(conn: psycopg.Connection, bi: str, as_of: date, critical_listed: int) -> Alerts | Missing:
    """account_alerts of as_of counted in SQL (a big customer base can raise thousands), and
    the first ``critical_listed`` critical alerts by owner."""
    if not table_exists(conn, bi, "account_alerts"):
        return Missing(f"{bi}.account_alerts")
    table = sql.Identifier(bi, "account_alerts")
    owner = sql.SQL("coalesce(nullif(trim(owner), ''), 'unassigned')")
    counts = conn.execute(
        sql.SQL(
            "select alert_type, severity, count(*) as n from {} where as_of_date = %s group by 1, 2"
        ).format(table),
        (as_of,),
    ).fetchall()
    owners = conn.execute(
        sql.SQL(
            """
            select {owner} as owner, count(*) as alerts,
                   count(*) filter (where severity = %s) as critical,
                   count(*) filter (where severity is distinct from %s) as other,
                   count(distinct customer_id) as customers
            from {table} where as_of_date = %s
            group by 1
            order by critical desc, alerts desc, owner
            """
        ).format(owner=owner, table=table),
        (CRITICAL, CRITICAL, as_of),
    ).fetchall()
    critical = conn.execute(
        sql.SQL(
            """
            select {owner} as owner, customer_id, customer_name, value_tier, alert_type, reason
            from {table} where as_of_date = %s and severity = %s
            order by owner, customer_id, alert_type
            limit %s
            """
        ).format(owner=owner, table=table),
        (as_of, CRITICAL, critical_listed),
    ).fetchall()
    return Alerts(
        counts={(r["alert_type"], r["severity"]): int(r["n"]) for r in counts},
        owners=[dict(r) for r in owners],
        critical=[dict(r) for r in critical],
        critical_total=sum(int(r["n"]) for r in counts if r["severity"] == CRITICAL),
    )


def read_sales_kpis(conn: psycopg.Connection, bi: str, as_of: date) -> list[SalesMonth] | Missing:
    """Monthly totals over all regions and channels; the effects of the segments add up."""
    if not table_exists(conn, bi, "sales_kpis"):
        return Missing(f"{bi}.sales_kpis")
    rows = conn.execute(
        sql.SQL(
            """
            select month_start_date, bool_and(is_complete_month) as is_complete,
                   sum(covered_customers) as covered, sum(active_customers) as active,
                   sum(orders) as orders, sum(revenue) as revenue,
                   sum(previous_revenue) as previous_revenue, sum(revenue_change) as revenue_change,
                   sum(covered_customers_effect) as covered_effect,
                   sum(active_rate_effect) as active_rate_effect,
                   sum(revenue_per_active_effect) as revenue_per_active_effect,
                   sum(new_customers) as new_customers, sum(churned_customers) as churned_customers
            from {} where as_of_date = %s
            group by month_start_date order by month_start_date
            """
        ).format(sql.Identifier(bi, "sales_kpis")),
        (as_of,),
    ).fetchall()

    def opt(v: Decimal | None) -> float | None:
        return float(v) if v is not None else None

    return [
        SalesMonth(
            month=r["month_start_date"],
            is_complete=bool(r["is_complete"]),
            covered=int(r["covered"] or 0),
            active=int(r["active"] or 0),
            orders=int(r["orders"] or 0),
            revenue=num(r["revenue"]),
            previous_revenue=opt(r["previous_revenue"]),
            revenue_change=opt(r["revenue_change"]),
            covered_effect=opt(r["covered_effect"]),
            active_rate_effect=opt(r["active_rate_effect"]),
            revenue_per_active_effect=opt(r["revenue_per_active_effect"]),
            new_customers=int(r["new_customers"] or 0),
            churned_customers=int(r["churned_customers"] or 0),
        )
        for r in rows
    ]


def read_quality(conn: psycopg.Connection, bi: str, run_id: str) -> list[dict[str, Any]] | Missing:
    if not table_exists(conn, bi, "data_quality_results"):
        return Missing(f"{bi}.data_quality_results")
    return [
        dict(r)
        for r in conn.execute(
            sql.SQL(
                """
                select suite, expectation, column_name, severity, success, observed_value
                from {} where run_id = %s
                order by success, severity, suite, expectation, column_name nulls first
                """
            ).format(sql.Identifier(bi, "data_quality_results")),
            (run_id,),
        )
    ]


def read_rejects(conn: psycopg.Connection, run_id: str) -> Rejects | Missing:
    """This run's loads are the load_audit rows stamped with its run_id."""
    if not table_exists(conn, META_SCHEMA, "load_audit"):
        return Missing(f"{META_SCHEMA}.load_audit")
    meta = sql.Identifier(META_SCHEMA)
    totals = conn.execute(
        sql.SQL(
            """
            select count(*) as files, coalesce(sum(rows_in), 0) as rows_in,
                   coalesce(sum(rows_loaded), 0) as rows_loaded,
                   coalesce(sum(rows_rejected), 0) as rows_rejected
            from {}.load_audit where run_id = %s and status = 'loaded'
            """
        ).format(meta),
        (run_id,),
    ).fetchone()
    pairs = conn.execute(
        sql.SQL(
            """
            select r.reason, r.file_path, count(*) as n
            from {m}.rejects r join {m}.load_audit a using (load_id)
            where a.run_id = %s
            group by r.reason, r.file_path
            order by n desc, r.reason, r.file_path
            """
        ).format(m=meta),
        (run_id,),
    ).fetchall()
    by_reason: dict[str, int] = {}
    for p in pairs:
        by_reason[p["reason"]] = by_reason.get(p["reason"], 0) + p["n"]
    ignored = []
    if table_exists(conn, META_SCHEMA, "ignored_paths"):
        ignored = [(r["path"], r["reason"]) for r in conn.execute(
            sql.SQL("select path, reason from {}.ignored_paths where run_id = %s order by path").format(meta),
            (run_id,),
        )]
    extras = [(r["file_path"], list(r["extra_columns"])) for r in conn.execute(
        sql.SQL(
            "select file_path, extra_columns from {}.load_audit where run_id = %s"
            " and cardinality(extra_columns) > 0 order by file_path"
        ).format(meta),
        (run_id,),
    )]
    return Rejects(
        files=totals["files"],
        rows_in=int(totals["rows_in"]),
        rows_loaded=int(totals["rows_loaded"]),
        rows_rejected=int(totals["rows_rejected"]),
        by_reason=sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0])),
        by_reason_file=[(p["reason"], p["file_path"], p["n"]) for p in pairs],
        ignored=ignored,
        extra_columns=extras,
    )


def read_run(conn: psycopg.Connection, run_id: str) -> dict[str, Any] | None:
    if not table_exists(conn, META_SCHEMA, "runs"):
        return None
    row = conn.execute(
        sql.SQL("select status, started_at, published_at from {}.runs where run_id = %s").format(
            sql.Identifier(META_SCHEMA)
        ),
        (run_id,),
    ).fetchone()
    return dict(row) if row else None


@dataclass
class ReportData:
    as_of: date
    run_id: str
    publish_schema: str
    run: dict[str, Any] | None
    ranks: dict[str, int]
    tier_mix: TierMix | Missing
    tier_changes: TierChanges | Missing
    whale: WhaleCurve | Missing
    migrations: Migrations | Missing
    allocation: list[dict[str, Any]] | Missing
    actions: Actions | Missing
    alerts: Alerts | Missing
    sales: list[SalesMonth] | Missing
    quality: list[dict[str, Any]] | Missing
    rejects: Rejects | Missing
    degradations: list[str] = field(default_factory=list)  # optional extracts never delivered
    # the sales team and regions by potential (tierflow.report.team; issue 17)
    team: TeamView | Missing | None = None
    regions: RegionsView | Missing | None = None
    outcomes: Outcomes | None = None  # closing the loop (tierflow.report.outcomes)
    clv: Clv | Missing | None = None  # None: not read (a caller that builds ReportData by hand)


def read_report_data(
    url: str,
    publish_schema: str,
    as_of: date,
    run_id: str,
    top_customers: int = 10,
    critical_listed: int = 50,
) -> ReportData:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        # one snapshot for every section, so the report never mixes two publishes
        conn.execute("set transaction isolation level repeatable read, read only")
        ranks = tier_ranks(conn, publish_schema)
        return ReportData(
            as_of=as_of,
            run_id=run_id,
            publish_schema=publish_schema,
            run=read_run(conn, run_id),
            ranks=ranks,
            tier_mix=read_tier_mix(conn, publish_schema, as_of, ranks),
            tier_changes=read_tier_changes(conn, publish_schema, as_of),
            whale=read_whale_curve(conn, publish_schema, as_of),
            migrations=read_migrations(conn, publish_schema, as_of, ranks),
            allocation=read_allocation(conn, publish_schema, as_of),
            actions=read_actions(conn, publish_schema, as_of, top_customers),
            alerts=read_alerts(conn, publish_schema, as_of, critical_listed),
            sales=read_sales_kpis(conn, publish_schema, as_of),
            quality=read_quality(conn, publish_schema, run_id),
            rejects=read_rejects(conn, run_id),
            degradations=degradations(conn, as_of),
            team=read_team(conn, publish_schema, as_of),
            regions=read_regions(conn, publish_schema, as_of),
            outcomes=read_outcomes(conn, publish_schema, as_of),
            clv=read_clv(conn, publish_schema, as_of),
        )
