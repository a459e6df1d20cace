"""The report's closing-the-loop sections: "Did last period's plan work?" and cohort retention.

Read from bi.plan_performance and bi.cohort_retention (docs/closing-the-loop.md); drawn as
inline SVG like the other charts (``class="mark"`` on every shape that carries data).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import psycopg
from psycopg import sql

from tierflow.report.queries import Missing, _exists, _num
from tierflow.report.svg import AXIS, GRID, TEXT, _clip, _n, _open, _text, esc, nice_ticks, short

UPLIFT_COLOR = "#1e8449"
LOSS_COLOR = "#c0392b"
UNKNOWN_COLOR = "#9ca3af"
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
    if not _exists(conn, bi, "plan_performance"):
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
        interval_z=_num(first["interval_z"]),
        tiers=[dict(r) for r in rows if r["primary_action"] == "all"],
        actions=[dict(r) for r in rows if r["primary_action"] != "all"],
    )


def read_retention(conn: psycopg.Connection, bi: str, as_of: date) -> Retention | Missing | None:
    """Active share per cohort and month since, over all tiers, for the last cohorts."""
    if not _exists(conn, bi, "cohort_retention"):
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


# -- charts ------------------------------------------------------------------------------


def interval_bars(
    chart: str,
    label: str,
    categories: Sequence[str],
    values: Sequence[float | None],
    intervals: Sequence[tuple[float, float] | None],
    fmt: Any,
    *,
    width: int = 760,
) -> str:
    """A bar per category from a zero line to its estimate, with its interval as a whisker
    (class "interval"); a category without an estimate says so instead of a bar."""
    bar_h, row_h = 18, 40
    left = 16 + 7.5 * max((len(c) for c in categories), default=4)
    right, top = 170, 10  # the value labels get a column of their own on the right
    height = top + row_h * len(categories) + 28
    plot_w = width - left - right
    points = [v for v in values if v is not None] + [x for iv in intervals if iv for x in iv]
    ticks = nice_ticks(1.15 * min(0.0, *points), 1.15 * max(0.0, *points), 5) if points else [0.0, 1.0]
    lo, hi = ticks[0], ticks[-1]
    if hi == lo:
        hi = lo + 1

    def px(v: float) -> float:
        return left + plot_w * (v - lo) / (hi - lo)

    out = _open(chart, width, height, label)
    bottom = top + row_h * len(categories)
    for t in ticks:
        out.append(f'<line x1="{_n(px(t))}" y1="{top}" x2="{_n(px(t))}" y2="{bottom}" stroke="{GRID}"/>')
        out.append(_text(px(t), bottom + 16, short(t), "middle", AXIS))
    for i, (cat, v, iv) in enumerate(zip(categories, values, intervals, strict=True)):
        y = top + row_h * i + (row_h - bar_h) / 2
        mid = y + bar_h / 2
        out.append(_text(left - 8, mid + 4, _clip(cat, 40), "end"))
        if v is None:
            out.append(_text(px(0) + 6, mid + 4, "no control group: not measured", "start", AXIS))
            continue
        significant = iv is not None and (iv[0] > 0 or iv[1] < 0)
        color = (UPLIFT_COLOR if v >= 0 else LOSS_COLOR) if significant else UNKNOWN_COLOR
        x0, x1 = sorted((px(0), px(v)))
        title = f"{cat}: {fmt(v)}" + (f" (interval {fmt(iv[0])} to {fmt(iv[1])})" if iv else " (no interval)")
        out.append(
            f'<rect class="mark" x="{_n(x0)}" y="{_n(y)}" width="{_n(max(x1 - x0, 1))}" height="{bar_h}"'
            f' fill="{color}" fill-opacity="0.8"><title>{esc(title)}</title></rect>'
        )
        if iv:
            a, b = px(iv[0]), px(iv[1])
            out.append(
                f'<path class="interval" d="M{_n(a)} {_n(mid)}H{_n(b)}M{_n(a)} {_n(mid - 7)}V{_n(mid + 7)}'
                f'M{_n(b)} {_n(mid - 7)}V{_n(mid + 7)}" stroke="{TEXT}" stroke-width="1.5" fill="none"/>'
            )
        text = (fmt(v) if v <= 0 else "+" + fmt(v)) + ("" if iv else " (no interval)")
        out.append(_text(width - right + 12, mid + 4, text, "start", AXIS))
    out.append(f'<line x1="{_n(px(0))}" y1="{top}" x2="{_n(px(0))}" y2="{bottom}" stroke="{AXIS}"/>')
    out.append("</svg>")
    return "\n".join(out)


def triangle(
    chart: str, label: str, r: Retention, fmt: Any, *, row_title: str, col_title: str
) -> str:
    """The retention triangle: a cell per cohort and month since (darker = more active);
    months a cohort has not reached yet stay empty."""
    cell_w, cell_h = 52, 26
    left = 24 + 8 * max((len(c) for c in r.cohorts), default=7) + 60
    top = 44
    width = left + cell_w * len(r.months) + 16
    height = top + cell_h * len(r.cohorts) + 12
    out = _open(chart, width, height, label)
    out.append(_text(left + cell_w * len(r.months) / 2, 14, col_title, "middle", AXIS))
    out.append(_text(8, top - 8, row_title, "start", AXIS))
    for j, m in enumerate(r.months):
        out.append(_text(left + cell_w * j + cell_w / 2, top - 8, str(m), "middle"))
    for i, c in enumerate(r.cohorts):
        y = top + cell_h * i
        out.append(_text(left - 8, y + cell_h / 2 + 4, f"{c} ({r.customers.get(c, 0)})", "end"))
        for j, m in enumerate(r.months):
            if (c, m) not in r.active_share:
                continue
            v = r.active_share[(c, m)]
            red, green, blue = (round(255 - (255 - a) * v) for a in (31, 78, 121))
            x = left + cell_w * j
            out.append(
                f'<rect class="mark" x="{x + 1}" y="{y + 1}" width="{cell_w - 2}" height="{cell_h - 2}"'
                f' fill="rgb({red},{green},{blue})" stroke="{GRID}">'
                f"<title>{esc(c)} +{m}: {esc(fmt(v))} active</title></rect>"
            )
            out.append(_text(x + cell_w / 2, y + cell_h / 2 + 4, fmt(v), "middle",
                             "#ffffff" if v > 0.55 else TEXT))
    out.append("</svg>")
    return "\n".join(out)


# -- sections ----------------------------------------------------------------------------


def _money_or_dash(v: Any) -> str:
    from tierflow.report.render import fmt_money

    return "–" if v is None else fmt_money(_num(v))


def _signed(v: Any) -> str:
    from tierflow.report.render import fmt_money

    if v is None:
        return "–"
    x = _num(v)
    return ("+" if x > 0 else "") + fmt_money(x)


def _roi(v: Any) -> str:
    return "–" if v is None else f"{_num(v) * 100:,.2f}%"


def verdict(r: dict[str, Any]) -> str:
    """One phrase a sales director reads: did the treated customers beat control?"""
    if not r["control_customers"]:
        return "no control group: not measured"
    if r["uplift_ci_low"] is None:
        return "too few customers for an interval"
    if _num(r["uplift_ci_low"]) > 0:
        return "earned more than control"
    if _num(r["uplift_ci_high"]) < 0:
        return "earned less than control"
    return "no measurable difference"


def plan_section(d: Any) -> str:
    from tierflow.report.render import missing, note, row, section, table

    intro = (
        "Each closed plan period, the plan's treated customers against its control group (customers held "
        "out at random, allocation.control_share), from bi.plan_performance: the change in contribution "
        "(gross margin) against the period before, treated minus control = the uplift, for the whole tier "
        "with its interval (normal approximation), and realised ROI = uplift / budget against the ROI the "
        "plan expected. A bar is green (above 0) or red (below 0) when its interval excludes 0, else grey."
    )
    title = "Did last period's plan work?"
    p = d.outcomes.plan if d.outcomes else None
    if isinstance(p, Missing):
        return section("plan-performance", title, intro, missing(p))
    if p is None:
        return section(
            "plan-performance", title, intro,
            note(f"No plan period has closed with a published plan by {d.as_of.isoformat()} yet."),
        )
    assert isinstance(p, PlanPerformance)
    level = f"{(2 * _normal_cdf(p.interval_z) - 1) * 100:.0f}%"
    chart = interval_bars(
        "plan-uplift",
        f"Uplift in contribution per tier, plan period {p.plan_period}, with {level} intervals",
        [f"{t['value_tier']} ({t['treated_customers']} treated / {t['control_customers']} control)"
         for t in p.tiers],
        [None if t["uplift_total"] is None else _num(t["uplift_total"]) for t in p.tiers],
        [
            None if t["uplift_total_ci_low"] is None
            else (_num(t["uplift_total_ci_low"]), _num(t["uplift_total_ci_high"]))
            for t in p.tiers
        ],
        lambda v: f"{v:,.0f}",
    )
    tiers = table(
        "plan-performance",
        ["tier", "treated", "control", "budget", "expected return", "uplift", f"{level} interval",
         "realised ROI", "expected ROI", "verdict"],
        [
            [
                t["value_tier"],
                str(t["treated_customers"]),
                str(t["control_customers"]),
                _money_or_dash(t["budget_spent"]),
                _money_or_dash(t["expected_return"]),
                _signed(t["uplift_total"]),
                "–" if t["uplift_total_ci_low"] is None
                else f"{_signed(t['uplift_total_ci_low'])} to {_signed(t['uplift_total_ci_high'])}",
                _roi(t["realised_roi"]),
                _roi(t["expected_roi"]),
                verdict(t),
            ]
            for t in p.tiers
        ],
        numeric=(1, 2, 3, 4, 5, 6, 7, 8),
        nowrap=(6,),
    )
    actions = table(
        "plan-performance-actions",
        ["tier", "action", "treated", "control", "budget", "uplift per customer", "interval", "verdict"],
        [
            [
                a["value_tier"],
                a["primary_action"],
                str(a["treated_customers"]),
                str(a["control_customers"]),
                _money_or_dash(a["budget_spent"]),
                _signed(a["uplift_per_customer"]),
                "–" if a["uplift_ci_low"] is None
                else f"{_signed(a['uplift_ci_low'])} to {_signed(a['uplift_ci_high'])}",
                verdict(a),
            ]
            for a in p.actions
        ],
        numeric=(2, 3, 4, 5, 6),
        nowrap=(6,),
    )
    head = (
        f'<p data-line="plan-judged">Plan period <b>{esc(p.plan_period)}</b>, the plan published on '
        f"{esc(p.plan_as_of_date.isoformat())}, against the period before.</p>"
    )
    return section(
        "plan-performance", title, intro, head + row(chart) + tiers + "<p>By action:</p>" + actions
    )


def _normal_cdf(z: float) -> float:
    from statistics import NormalDist

    return NormalDist().cdf(z)


def retention_section(d: Any) -> str:
    from tierflow.report.render import fmt_pct, missing, note, row, section

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
    chart = triangle(
        "retention",
        "Active share by first-purchase cohort and months since",
        r,
        fmt_pct,
        row_title="cohort (customers)",
        col_title="months since the first purchase",
    )
    return section("retention", title, intro, row(chart))
