"""The plan sections: the allocation by tier, the actions asked of the sales teams, and
whether last period's plan worked (bi.plan_performance, docs/closing-the-loop.md).
"""

from __future__ import annotations

from statistics import NormalDist
from typing import Any

from tierflow.report import svg
from tierflow.report.html import (
    CUSTOMERS_COLOR,
    MONEY_COLOR,
    RETURN_COLOR,
    Section,
    esc,
    fmt_int,
    fmt_money,
    fmt_pct,
    fmt_pct_axis,
    fmt_roi,
    fmt_signed,
    missing,
    note,
    row,
    section,
    share,
    table,
)
from tierflow.report.outcomes import PlanPerformance
from tierflow.report.queries import Actions, ReportData
from tierflow.report.reading import Missing, num


def allocation_section(d: ReportData) -> str:
    intro = (
        "The sales and service budget of the plan period, by value tier, next to each tier's share "
        "of customers, and the incremental contribution the plan expects from it (response curves "
        "in the config)."
    )
    a = d.allocation
    if isinstance(a, Missing):
        return section("allocation", "Allocation by tier", intro, missing(a))
    if not a:
        return section(
            "allocation", "Allocation by tier", intro, note(f"No allocation plan for {d.as_of.isoformat()}.")
        )
    budget = sum(float(r["allocated_budget"]) for r in a)
    returns = sum(float(r["expected_return"] or 0) for r in a)
    customers = sum(int(r["customers"]) for r in a)
    tiers = [r["value_tier"] for r in a]
    chart = svg.hbars(
        "allocation",
        f"Budget and customers by tier, plan period {a[0]['plan_period']}",
        tiers,
        [
            ("share of customers", CUSTOMERS_COLOR, [share(int(r["customers"]), customers) for r in a]),
            ("share of budget", MONEY_COLOR, [share(float(r["allocated_budget"]), budget) for r in a]),
        ],
        fmt_pct,
        axis_fmt=fmt_pct_axis,
    )
    rows = [
        [
            r["value_tier"],
            r["service_level"],
            fmt_int(r["customers"]),
            fmt_money(float(r["allocated_budget"])),
            fmt_pct(share(float(r["allocated_budget"]), budget)),
            fmt_money(float(r["allocated_budget"]) / int(r["customers"])) if r["customers"] else "–",
            fmt_money(float(r["expected_return"] or 0)),
            fmt_roi(float(r["expected_return"] or 0), float(r["allocated_budget"])),
        ]
        for r in a
    ]
    periods = sorted({str(r["plan_period"]) for r in a})
    modes = sorted({str(r["plan_mode"]) for r in a if r["plan_mode"] is not None})
    tbl = table(
        "allocation",
        [
            "tier",
            "service level",
            "customers",
            "budget",
            "budget share",
            "per customer",
            "expected return",
            "ROI",
        ],
        rows,
        numeric=(2, 3, 4, 5, 6, 7),
        total=[
            "all",
            "",
            fmt_int(customers),
            fmt_money(budget),
            fmt_pct(1 if budget else 0),
            fmt_money(budget / customers) if customers else "–",
            fmt_money(returns),
            fmt_roi(returns, budget),
        ],
        wrap=(1,),
    )
    head = (
        f'<p data-line="allocation">Plan period {esc(", ".join(periods))} · plan mode '
        f"{esc(', '.join(modes) or '–')} · total expected return <b>{esc(fmt_money(returns))}</b> "
        f"on a budget of {esc(fmt_money(budget))} (ROI {esc(fmt_roi(returns, budget))})</p>"
    )
    return section("allocation", "Allocation by tier", intro, head + row(chart) + tbl)


def allocation_tiles(d: ReportData) -> list[tuple[str, str]]:
    if not (isinstance(d.allocation, list) and d.allocation):
        return []
    return [
        (fmt_money(sum(float(r["allocated_budget"]) for r in d.allocation)), "budget allocated"),
        (fmt_money(sum(float(r["expected_return"] or 0) for r in d.allocation)), "expected return"),
    ]


def actions_section(d: ReportData) -> str:
    intro = (
        "What the sales teams are asked to do with each customer (allocation_plan_customer): the "
        "primary action, with its customers, budget and expected return, and the customers who get "
        "the most budget with the reason for their action. ROI = expected return / budget."
    )
    title = "Actions"
    a = d.actions
    if isinstance(a, Missing):
        return section("actions", title, intro, missing(a))
    assert isinstance(a, Actions)
    if not a.by_action:
        return section("actions", title, intro, note(f"No customer plan for {d.as_of.isoformat()}."))
    names = [r.action for r in a.by_action]
    n_all = sum(r.customers for r in a.by_action)
    budget = sum(r.budget for r in a.by_action)
    returns = sum(r.expected_return for r in a.by_action)
    chart = svg.hbars(
        "actions",
        "Customers, budget and expected return by primary action",
        names,
        [
            ("share of customers", CUSTOMERS_COLOR, [share(r.customers, n_all) for r in a.by_action]),
            ("share of budget", MONEY_COLOR, [share(r.budget, budget) for r in a.by_action]),
            (
                "share of expected return",
                RETURN_COLOR,
                [share(r.expected_return, returns) for r in a.by_action],
            ),
        ],
        fmt_pct,
        axis_fmt=fmt_pct_axis,
    )
    tbl = table(
        "actions",
        ["primary action", "customers", "budget", "expected return", "ROI"],
        [
            [
                r.action,
                fmt_int(r.customers),
                fmt_money(r.budget),
                fmt_money(r.expected_return),
                fmt_roi(r.expected_return, r.budget),
            ]
            for r in a.by_action
        ],
        numeric=(1, 2, 3, 4),
        total=["all", fmt_int(n_all), fmt_money(budget), fmt_money(returns), fmt_roi(returns, budget)],
    )
    head = (
        f'<p data-line="plan">Plan mode <b>{esc(", ".join(a.plan_modes) or "–")}</b> · plan period '
        f"{esc(', '.join(a.plan_periods) or '–')}</p>"
    )
    top = table(
        "top-budget",
        ["#", "customer", "name", "tier", "budget", "expected return", "action", "reason"],
        [
            [
                fmt_int(i),
                t["customer_id"],
                t["customer_name"] or "",
                t["value_tier"],
                fmt_money(float(t["allocated_budget"])),
                fmt_money(float(t["expected_return"] or 0)),
                t["primary_action"],
                t["action_reason"],
            ]
            for i, t in enumerate(a.top, start=1)
        ],
        numeric=(0, 4, 5),
        wrap=(2, 7),
        nowrap=(6,),
    )
    count = len(a.top)
    return section(
        "actions",
        title,
        intro,
        head
        + row(chart, tbl)
        + f"<p>The {esc(fmt_int(count))} customer{'s' if count != 1 else ''} with the most budget:</p>"
        + top,
    )


def _money_or_dash(v: Any) -> str:
    return "–" if v is None else fmt_money(num(v))


def _signed(v: Any) -> str:
    return fmt_signed(None if v is None else num(v))


def _roi(v: Any) -> str:
    return "–" if v is None else f"{num(v) * 100:,.2f}%"


def verdict(r: dict[str, Any]) -> str:
    """One phrase a sales director reads: did the treated customers beat control?"""
    if not r["control_customers"]:
        return "no control group: not measured"
    if r["uplift_ci_low"] is None:
        return "too few customers for an interval"
    if num(r["uplift_ci_low"]) > 0:
        return "earned more than control"
    if num(r["uplift_ci_high"]) < 0:
        return "earned less than control"
    return "no measurable difference"


def plan_section(d: ReportData) -> str:
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
    chart = svg.interval_bars(
        "plan-uplift",
        f"Uplift in contribution per tier, plan period {p.plan_period}, with {level} intervals",
        [f"{t['value_tier']} ({t['treated_customers']} treated / {t['control_customers']} control)"
         for t in p.tiers],
        [None if t["uplift_total"] is None else num(t["uplift_total"]) for t in p.tiers],
        [
            None if t["uplift_total_ci_low"] is None
            else (num(t["uplift_total_ci_low"]), num(t["uplift_total_ci_high"]))
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
    return NormalDist().cdf(z)


ALLOCATION = Section("allocation", "Allocation", allocation_section, allocation_tiles)
ACTIONS = Section("actions", "Actions", actions_section)
PLAN_PERFORMANCE = Section("plan-performance", "Did the plan work?", plan_section)
