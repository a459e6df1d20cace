"""The sales sections: the company's KPI decomposition, each rep's book, the regions by
potential, and cohort retention (bi.sales_kpis, sales_rep_performance, region_potential,
cohort_retention).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from tierflow.report import svg
from tierflow.report.html import (
    FAIL,
    MONEY_COLOR,
    PASS,
    Section,
    esc,
    fmt_int,
    fmt_money,
    fmt_pct,
    fmt_signed,
    missing,
    note,
    row,
    section,
    share,
    table,
)
from tierflow.report.outcomes import Retention
from tierflow.report.queries import ReportData, SalesMonth
from tierflow.report.reading import Missing


def _decomposed_month(months: Sequence[SalesMonth]) -> SalesMonth | None:
    """The latest complete month with a previous month, else the latest month with one."""
    with_previous = [m for m in months if m.revenue_change is not None]
    complete = [m for m in with_previous if m.is_complete]
    if complete:
        return complete[-1]
    return with_previous[-1] if with_previous else None


def sales_section(d: ReportData) -> str:
    intro = (
        "Revenue = covered customers × active rate × revenue per active customer. The change in "
        "revenue from one month to the next is split into the effect of each factor (chained "
        "substitution, in that order), summed over all regions and channels; the three effects "
        "add up to the change."
    )
    s = d.sales
    if isinstance(s, Missing):
        return section("kpis", "Sales KPI decomposition", intro, missing(s))
    if not s:
        return section(
            "kpis",
            "Sales KPI decomposition",
            intro,
            note(
                f"No sales KPIs for {d.as_of.isoformat()} in {d.publish_schema}.sales_kpis: the table is "
                "rebuilt whole by every run and holds the latest run's as-of date only."
            ),
        )
    parts = []
    m = _decomposed_month(s)
    if m is None:
        parts.append(note("Only one month of sales so far: no month-over-month change to decompose."))
        chart = ""
    else:
        label = m.month.strftime("%Y-%m") + ("" if m.is_complete else " (to date)")
        prev_label = (m.month.replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
        effects = [m.covered_effect or 0.0, m.active_rate_effect or 0.0, m.revenue_per_active_effect or 0.0]
        change = m.revenue_change or 0.0
        chart = svg.diverging_bars(
            "kpi-decomposition",
            f"Revenue change {prev_label} to {label} by factor",
            ["change in revenue", "covered customers", "active rate", "revenue per active"],
            [change, *effects],
            [MONEY_COLOR, *(PASS if v >= 0 else FAIL for v in effects)],
            fmt_money,
            title=(
                f"revenue {prev_label} {fmt_money(m.previous_revenue or 0.0)}"
                f" → {label} {fmt_money(m.revenue)}"
            ),
        )
    recent = s[-6:]
    rows = []
    for x in reversed(recent):
        rows.append(
            [
                x.month.strftime("%Y-%m") + ("" if x.is_complete else " (to date)"),
                fmt_int(x.covered),
                fmt_int(x.active),
                fmt_pct(share(x.active, x.covered)),
                fmt_money(x.revenue / x.active) if x.active else "–",
                fmt_money(x.revenue),
                fmt_signed(x.revenue_change),
                fmt_signed(x.covered_effect),
                fmt_signed(x.active_rate_effect),
                fmt_signed(x.revenue_per_active_effect),
                fmt_int(x.new_customers),
                fmt_int(x.churned_customers),
            ]
        )
    tbl = table(
        "sales-kpis",
        [
            "month",
            "covered",
            "active",
            "active rate",
            "revenue / active",
            "revenue",
            "change",
            "Δ covered",
            "Δ active rate",
            "Δ revenue / active",
            "new",
            "churned",
        ],
        rows,
        numeric=tuple(range(1, 12)),
        nowrap=(0,),
    )
    legend = (
        "<p>Δ: the part of the month's change in revenue due to that factor (revenue per active "
        "customer = orders per active customer × average order value).</p>"
    )
    if chart:
        parts.append(row(chart))
    parts.append(tbl + legend)
    return section("kpis", "Sales KPI decomposition", intro, "".join(parts))


def _points(rate: float, team: float) -> str:
    """A rate against the team's, in percentage points."""
    diff = 100 * (rate - team)
    return f"{'+' if diff >= 0 else '−'}{abs(diff):.1f} pts"


def team_section(d: ReportData) -> str:
    intro = (
        "Each rep's book (the customers they are account manager of): covered customers × active "
        "rate × revenue per active customer, the month's change in revenue split into the three "
        "factors as for the company, and each rep's rates against the team's. Top and bottom "
        "movers first; tier mix of the book and alerts of its customers beside them "
        f"({esc(d.publish_schema)}.sales_rep_performance)."
    )
    t = d.team
    if isinstance(t, Missing):
        return section("team", "Sales team", intro, missing(t))
    if t is None or not t.reps:
        return section("team", "Sales team", intro,
                       note("No month with a previous month yet: nothing to compare per rep."))
    label = t.month.strftime("%Y-%m") + ("" if t.is_complete else " (to date)")
    covered = sum(r.covered for r in t.reps)
    active = sum(r.active for r in t.reps)
    team_rate = share(active, covered)
    team_rpa = sum(r.revenue for r in t.reps) / active if active else 0.0
    moved = [r for r in t.reps if r.revenue_change]
    top = [r for r in moved if (r.revenue_change or 0) > 0][:3]
    bottom = [r for r in reversed(moved) if (r.revenue_change or 0) < 0][:3]

    def names(rs: list) -> str:
        return ", ".join(f"{esc(r.sales_rep)} {esc(fmt_signed(r.revenue_change))}" for r in rs) or "none"

    parts = [f"<p>{esc(label)}: top movers {names(top)}; bottom movers {names(bottom)}. Team: active "
             f"rate {esc(fmt_pct(team_rate))}, revenue per active customer {esc(fmt_money(team_rpa))}.</p>"]
    if moved:
        parts.append(row(svg.diverging_bars(
            "team-changes",
            f"Change in each book's revenue in {label}",
            [r.sales_rep for r in moved],
            [r.revenue_change or 0.0 for r in moved],
            [PASS if (r.revenue_change or 0) >= 0 else FAIL for r in moved],
            fmt_money,
        )))
    rows = []
    for r in t.reps:
        rate = share(r.active, r.covered)
        rpa = r.revenue / r.active if r.active else None
        vs_team = fmt_signed(rpa / team_rpa - 1, fmt_pct) if rpa is not None and team_rpa else "–"
        alerts = f"{r.open_alerts if r.open_alerts is not None else '–'} / {r.month_alerts}"
        rows.append([
            r.sales_rep,
            fmt_int(r.covered),
            f"{fmt_pct(rate)} ({_points(rate, team_rate)})" if r.covered else "–",
            f"{fmt_money(rpa)} ({vs_team})" if rpa is not None else "–",
            fmt_money(r.revenue),
            fmt_signed(r.revenue_change),
            fmt_signed(r.covered_effect),
            fmt_signed(r.active_rate_effect),
            fmt_signed(r.revenue_per_active_effect),
            fmt_money(r.gross_margin),
            fmt_money(r.net_contribution),
            fmt_money(r.sold_revenue),
            r.tier_mix or "–",
            alerts,
        ])
    parts.append(table(
        "team",
        ["rep", "covered", "active rate (vs team)", "revenue / active (vs team)", "revenue", "change",
         "Δ covered", "Δ active rate", "Δ revenue / active", "margin", "net contribution", "sold",
         "tier mix on A", "alerts open / month"],
        rows,
        numeric=tuple(range(1, 12)),
        nowrap=(0,),
    ))
    parts.append("<p>Δ: the part of the book's change in revenue due to that factor. sold: orders naming "
                 "the rep as sales rep, any customer's. Net contribution: margin after the month's cost to "
                 "serve (no cost of capital).</p>")
    return section("team", "Sales team", intro, "".join(parts))


def regions_section(d: ReportData) -> str:
    intro = (
        "Regions ranked for sales coverage by potential index (0..1, region_potential in "
        "config/tierflow.yml): headroom (1 − penetration), revenue per active customer against the "
        "median region, the share of top-tier customers and growth, over the last months "
        f"({esc(d.publish_schema)}.region_potential)."
    )
    g = d.regions
    if isinstance(g, Missing):
        return section("regions", "Regions by potential", intro, missing(g))
    if g is None:
        return section("regions", "Regions by potential", intro,
                       note(f"No regions for the month of {d.as_of.isoformat()}."))
    rows = [
        [
            fmt_int(x.potential_rank),
            x.region,
            f"{x.potential_index:.4f}",
            f"{fmt_pct(share(x.active, x.known))} ({fmt_int(x.active)} of {fmt_int(x.known)})",
            fmt_money(x.revenue_per_active) if x.revenue_per_active is not None else "–",
            fmt_money(x.median_revenue_per_active) if x.median_revenue_per_active is not None else "–",
            fmt_pct(x.high_tier_share),
            fmt_signed(x.growth_rate, fmt_pct) if x.growth_rate is not None else "–",
        ]
        for x in g.regions
    ]
    tbl = table(
        "regions",
        ["rank", "region", "potential index", "penetration", "revenue / active", "median", "top tier",
         "growth"],
        rows,
        numeric=(0, 2, 3, 4, 5, 6, 7),
        nowrap=(1,),
    )
    return section("regions", "Regions by potential", intro, tbl)


def retention_section(d: ReportData) -> str:
    intro = (
        "Share of each first-purchase cohort (customers whose first revenue fell in that month; their count "
        "in brackets) with revenue in each month since, over all tiers. bi.cohort_retention also holds "
        "revenue retention net of returns and the split by the customers' first tier."
    )
    title = "Cohort retention"
    r = d.outcomes.retention if d.outcomes else None
    if isinstance(r, Missing):
        return section("retention", title, intro, missing(r))
    if r is None:
        return section("retention", title, intro, note("No cohort has revenue yet."))
    assert isinstance(r, Retention)
    chart = svg.triangle(
        "retention",
        "Active share by first-purchase cohort and months since",
        r.cohorts,
        r.months,
        r.active_share,
        r.customers,
        fmt_pct,
        row_title="cohort (customers)",
        col_title="months since the first purchase",
    )
    return section("retention", title, intro, row(chart))


SALES_KPIS = Section("kpis", "Sales KPIs", sales_section)
TEAM = Section("team", "Sales team", team_section)
REGIONS = Section("regions", "Regions", regions_section)
RETENTION = Section("retention", "Retention", retention_section)
