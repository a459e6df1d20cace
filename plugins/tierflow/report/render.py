"""Assemble the run report: one HTML file, inline CSS, inline SVG, no scripts."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from tierflow.report import svg
from tierflow.report.queries import (
    CRITICAL,
    NEW_TIER,
    Actions,
    Alerts,
    Missing,
    Rejects,
    ReportData,
    SalesMonth,
    TierChanges,
    TierMix,
    WhaleCurve,
    read_report_data,
)
from tierflow.report.svg import esc

TIER_COLORS = ("#1f4e79", "#2e86c1", "#85c1e9", "#5d6d7e", "#a9cce3", "#d4ac0d", "#7d3c98")
NEW_COLOR = "#9ca3af"
PASS, WARN, FAIL = "#1e8449", "#d68910", "#c0392b"
CUSTOMERS_COLOR, MONEY_COLOR, RETURN_COLOR = "#2e86c1", "#1f4e79", "#17a589"
OTHER_SEVERITY = "#5d6d7e"
# account_alerts.alert_type in the order the report shows them (others after, by name)
ALERT_TYPES = ("churn_risk", "revenue_drop", "credit", "tier_downgrade")
MAX_CURVE_POINTS = 600
MAX_REASONS_CHARTED = 10
MAX_REJECT_ROWS = 25
TOP_CUSTOMERS = 10  # customers with the most budget listed in the Actions section
MAX_CRITICAL_LISTED = 50

CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; background: #f3f4f6; color: #111827;
       font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
             "PingFang SC", "Microsoft YaHei", "Noto Sans CJK SC", sans-serif; }
header { background: #1f4e79; color: #fff; padding: 20px 32px; }
header h1 { margin: 0 0 4px; font-size: 22px; }
header .meta { opacity: .9; }
header nav a { color: #fff; margin-right: 18px; font-weight: 600; }
header nav { margin-top: 8px; }
main { max-width: 1180px; margin: 0 auto; padding: 16px 24px 40px; }
.tiles { display: flex; flex-wrap: wrap; gap: 10px; margin: 8px 0 16px; }
.tile { background: #fff; border-radius: 8px; padding: 10px 12px; min-width: 120px;
        box-shadow: 0 1px 2px rgba(0,0,0,.08); }
.tile b { display: block; font-size: 20px; }
.tile span { color: #6b7280; font-size: 12px; }
.toc a { margin-right: 14px; }
section { background: #fff; border-radius: 8px; padding: 16px 22px 20px; margin: 16px 0;
          box-shadow: 0 1px 2px rgba(0,0,0,.08); }
section h2 { margin: 0 0 4px; font-size: 18px; }
.intro { color: #4b5563; margin: 0 0 10px; max-width: 900px; }
.row { display: flex; flex-wrap: wrap; gap: 18px 28px; align-items: flex-start; }
.chart { flex: 1 1 560px; min-width: 0; }
.chart svg { max-width: 100%; height: auto; display: block; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0; }
th, td { padding: 4px 8px; border-bottom: 1px solid #e5e7eb; text-align: left; vertical-align: top; }
th { background: #f9fafb; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.total td { font-weight: 600; border-top: 2px solid #d1d5db; }
.note { background: #fef9c3; border-left: 4px solid #d4ac0d; padding: 8px 12px; margin: 8px 0; }
.bad { color: #c0392b; font-weight: 600; }
.good { color: #1e8449; font-weight: 600; }
p.changes span { margin-right: 14px; white-space: nowrap; }
p.changes b { font-variant-numeric: tabular-nums; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 6px; }
details { margin-top: 8px; }
td.wrap { max-width: 420px; overflow-wrap: anywhere; }
td.nowrap { white-space: nowrap; }
.scroll { max-width: 100%; overflow-x: auto; }
#kpis table { font-size: 12px; }
#kpis th, #kpis td { padding: 4px 6px; }
footer { color: #6b7280; font-size: 12px; text-align: center; padding: 12px; }
"""


# -- formatting --------------------------------------------------------------------------


def fmt_int(v: float) -> str:
    return f"{round(v):,}"


def fmt_money(v: float) -> str:
    return f"{v:,.2f}"


def fmt_pct(v: float) -> str:
    return f"{v:.1%}"


def fmt_pct_axis(v: float) -> str:
    return f"{v:.0%}"


def fmt_signed(v: float | None, fmt: Callable[[float], str] = fmt_money) -> str:
    if v is None:
        return "–"
    return ("+" if v > 0 else "") + fmt(v)


def _share(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


def fmt_roi(expected_return: float, budget: float) -> str:
    """Expected return per unit of budget, as a percentage; "–" without budget."""
    return fmt_pct(expected_return / budget) if budget else "–"


# -- html helpers ------------------------------------------------------------------------


def table(
    name: str,
    headers: Sequence[str],
    rows: Sequence[Sequence[object]],
    numeric: Sequence[int] = (),
    total: Sequence[object] | None = None,
    wrap: Sequence[int] = (),
    nowrap: Sequence[int] = (),
) -> str:
    """A small table; every cell is escaped. ``numeric`` columns are right-aligned, ``wrap``
    columns break long texts anywhere, ``nowrap`` ones never break."""

    def cls(i: int) -> str:
        if i in numeric:
            return ' class="num"'
        if i in nowrap:
            return ' class="nowrap"'
        return ' class="wrap"' if i in wrap else ""

    head = "".join(f"<th{cls(i)}>{esc(h)}</th>" for i, h in enumerate(headers))
    body = ["<tr>" + "".join(f"<td{cls(i)}>{esc(c)}</td>" for i, c in enumerate(r)) + "</tr>" for r in rows]
    if total is not None:
        body.append(
            '<tr class="total">'
            + "".join(f"<td{cls(i)}>{esc(c)}</td>" for i, c in enumerate(total))
            + "</tr>"
        )
    return (
        f'<div class="scroll"><table data-table="{esc(name)}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def missing(m: Missing) -> str:
    return note(
        f"Table {m.table} does not exist in the warehouse (not published yet), so this section is empty."
    )


def section(anchor: str, title: str, intro: str, body: str) -> str:
    return (
        f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2><p class="intro">{esc(intro)}</p>{body}</section>'
    )


def row(*parts: str) -> str:
    """Built HTML parts side by side (wrapping on narrow screens); a chart gets the wide column."""
    return (
        '<div class="row">'
        + "".join(
            f'<div class="chart">{p}</div>' if p.startswith("<svg") else f"<div>{p}</div>" for p in parts
        )
        + "</div>"
    )


def tier_colors(tiers: Sequence[str]) -> dict[str, str]:
    colors = {t: TIER_COLORS[i % len(TIER_COLORS)] for i, t in enumerate(t for t in tiers if t != NEW_TIER)}
    colors[NEW_TIER] = NEW_COLOR
    return colors


# -- sections ----------------------------------------------------------------------------


def tier_mix_section(d: ReportData) -> str:
    intro = (
        "Customers per value tier for the as-of date (share of customers and of revenue in the "
        "RFM window), and how the mix moved over the as-of dates published so far."
    )
    m = d.tier_mix
    if isinstance(m, Missing):
        return section("tiers", "Tier mix", intro, missing(m))
    if not m.dates:
        return section("tiers", "Tier mix", intro, note("No customer tiers are published yet."))
    colors = tier_colors(m.tiers)
    parts: list[str] = []
    today = [m.customers.get((d.as_of, t), 0) for t in m.tiers]
    total = sum(today)
    if total == 0:
        parts.append(note(f"No customer tiers for {d.as_of.isoformat()}; the trend shows earlier dates."))
    else:
        revenue_total = sum(m.revenue.values())
        earlier = [x for x in m.dates if x < d.as_of]
        prev = earlier[-1] if earlier else None
        rows = []
        for t, n in zip(m.tiers, today, strict=True):
            change = "–" if prev is None else fmt_signed(n - m.customers.get((prev, t), 0), fmt_int)
            rows.append(
                [
                    t,
                    fmt_int(n),
                    fmt_pct(_share(n, total)),
                    fmt_money(m.revenue.get(t, 0.0)),
                    fmt_pct(_share(m.revenue.get(t, 0.0), revenue_total)),
                    change,
                ]
            )
        mix_table = table(
            "tier-mix",
            [
                "tier",
                "customers",
                "share",
                "revenue in window",
                "revenue share",
                f"vs {prev.isoformat()}" if prev else "vs previous",
            ],
            rows,
            numeric=(1, 2, 3, 4, 5),
            total=[
                "all",
                fmt_int(total),
                fmt_pct(1),
                fmt_money(revenue_total),
                fmt_pct(1 if revenue_total else 0),
                "",
            ],
        )
        chart = svg.hbars(
            "tier-mix",
            f"Tier mix on {d.as_of.isoformat()}",
            m.tiers,
            [
                ("share of customers", CUSTOMERS_COLOR, [_share(n, total) for n in today]),
                (
                    "share of revenue",
                    MONEY_COLOR,
                    [_share(m.revenue.get(t, 0.0), revenue_total) for t in m.tiers],
                ),
            ],
            fmt_pct,
            axis_fmt=fmt_pct_axis,
        )
        if isinstance(d.tier_changes, TierChanges):
            parts.append(tier_changes_line(d.tier_changes))
        parts.append(row(chart, mix_table))
    labels = [x.isoformat() for x in m.dates]
    trend = svg.stacked_columns(
        "tier-trend",
        "Customers per tier per as-of date",
        labels,
        [(t, colors[t], [m.customers.get((x, t), 0) for x in m.dates]) for t in m.tiers],
        fmt_int,
        highlight=m.dates.index(d.as_of) if d.as_of in m.dates else None,
    )
    recent = m.dates[-8:]
    trend_table = table(
        "tier-trend",
        ["as-of date", *m.tiers, "all"],
        [
            [
                x.isoformat(),
                *(fmt_int(m.customers.get((x, t), 0)) for t in m.tiers),
                fmt_int(sum(m.customers.get((x, t), 0) for t in m.tiers)),
            ]
            for x in reversed(recent)
        ],
        numeric=tuple(range(1, len(m.tiers) + 2)),
    )
    more = f" (the last {len(recent)} of {len(m.dates)} dates)" if len(recent) < len(m.dates) else ""
    parts.append(row(trend, f"<p>Customers per tier{esc(more)}:</p>{trend_table}"))
    return section("tiers", "Tier mix", intro, "".join(parts))


def tier_changes_line(c: TierChanges) -> str:
    """One line with the night's tier changes (customer_tiers.tier_change and the flags)."""

    def plural(n: int, one: str, many: str) -> str:
        return f"<span><b>{esc(fmt_int(n))}</b> {esc(one if n == 1 else many)}</span>"

    items = [
        plural(c.up, "moved up", "moved up"),
        plural(c.down, "moved down", "moved down"),
        plural(c.same, "kept its tier", "kept their tier"),
        plural(c.new, "new customer", "new customers"),
        plural(c.held_by_hysteresis, "held in its tier by hysteresis", "held in their tier by hysteresis"),
        plural(c.overrides, "tier set by a manual override", "tiers set by a manual override"),
        plural(c.high_potential, "high-potential customer", "high-potential customers"),
    ]
    # the spaces between the items are where the line may wrap
    return f'<p class="changes" data-line="tier-changes">Tonight: {" ".join(items)}</p>'


def _share_at(points: Sequence[tuple[int, float]], customer_share: float) -> tuple[int, float]:
    """Cumulative contribution share held by the best ceil(share x n) customers."""
    k = max(1, math.ceil(customer_share * len(points) - 1e-9))
    return k, points[k - 1][1]


def whale_section(d: ReportData) -> str:
    intro = (
        "Customers ranked by net contribution (best first); the curve is the cumulative share of "
        "the total net contribution they hold. It rises above 100% while profitable customers are "
        "added and falls back to 100% as the loss-makers are."
    )
    w = d.whale
    if isinstance(w, Missing):
        return section("whale", "Whale curve", intro, missing(w))
    if not w.points:
        return section(
            "whale",
            "Whale curve",
            intro,
            note(f"No profitability rows for {d.as_of.isoformat()} (or the total net contribution is 0)."),
        )
    n = len(w.points)
    peak_rank, peak = max(w.points, key=lambda p: (p[1], -p[0]))
    step = max(1, math.ceil(n / MAX_CURVE_POINTS))
    keep = {0, n - 1, peak_rank - 1, *range(0, n, step)}
    curve = [(0.0, 0.0)] + [(w.points[i][0] / n, w.points[i][1]) for i in sorted(keep)]
    k20, share20 = _share_at(w.points, 0.2)
    chart = svg.line_chart(
        "whale-curve",
        f"Whale curve on {d.as_of.isoformat()}",
        curve,
        lambda x: f"{x:.0%}",
        lambda y: f"{y:.0%}",
        x_title="share of customers (best contribution first)",
        y_title="cumulative share of net contribution",
        reference_y=1.0,
        marks=[
            (peak_rank / n, peak, f"peak {fmt_pct(peak)}"),
            (k20 / n, share20, f"top 20%: {fmt_pct(share20)}"),
        ],
    )
    rows = [
        ["customers ranked", fmt_int(n)],
        ["total net contribution", fmt_money(w.total_contribution)],
        ["loss-making customers", f"{fmt_int(w.loss_making)} ({fmt_pct(_share(w.loss_making, n))})"],
        [
            "peak of the curve",
            f"{fmt_pct(peak)} after {fmt_int(peak_rank)} customers ({fmt_pct(peak_rank / n)})",
        ],
    ]
    for s in (0.1, 0.2, 0.5):
        k, v = _share_at(w.points, s)
        rows.append([f"held by the best {s:.0%} ({fmt_int(k)} customer{'s' if k != 1 else ''})", fmt_pct(v)])
    summary = table("whale-curve", ["measure", "value"], rows, numeric=(1,))
    top = table(
        "top-contributors",
        ["rank", "customer", "name", "net contribution", "cumulative share"],
        [
            [
                fmt_int(t["contribution_rank"]),
                t["customer_id"],
                t["customer_name"] or "",
                fmt_money(float(t["net_contribution"])),
                fmt_pct(float(t["cumulative_contribution_share"]))
                if t["cumulative_contribution_share"] is not None
                else "–",
            ]
            for t in w.top
        ],
        numeric=(0, 3, 4),
        wrap=(2,),
    )
    return section("whale", "Whale curve", intro, row(chart, summary + "<p>Best contributors:</p>" + top))


def _movement(frm: str, to: str, ranks: dict[str, int]) -> str:
    if frm == NEW_TIER:
        return "new customers"
    if frm not in ranks or to not in ranks:
        return "other"
    if ranks[to] < ranks[frm]:
        return "moved up"
    return "moved down" if ranks[to] > ranks[frm] else "stayed"


def migrations_section(d: ReportData) -> str:
    intro = (
        "How customers moved between value tiers since the previous run: rows are the tier "
        "before (new = no previous tier), columns the tier on the as-of date; the diagonal is "
        "customers who kept their tier."
    )
    m = d.migrations
    if isinstance(m, Missing):
        return section("migrations", "Tier migrations", intro, missing(m))
    if not m.cells:
        return section(
            "migrations",
            "Tier migrations",
            intro,
            note(f"No previous run to compare with: there are no tier migrations for {d.as_of.isoformat()}."),
        )
    since = f" since {m.previous_date.isoformat()}" if m.previous_date else ""
    chart = svg.heatmap(
        "tier-migrations",
        f"Tier migrations{since} to {d.as_of.isoformat()}",
        m.from_tiers,
        m.to_tiers,
        {k: v[0] for k, v in m.cells.items()},
        fmt_int,
        row_title="from ↓",
        col_title=f"to (tier on {d.as_of.isoformat()}) →",
    )
    kinds = ["new customers", "moved up", "stayed", "moved down", "other"]
    sums = {k: [0, 0.0] for k in kinds}
    for (frm, to), (n, rev) in m.cells.items():
        s = sums[_movement(frm, to, m.ranks)]
        s[0] += n
        s[1] += rev
    total_n = sum(v[0] for v in sums.values())
    total_rev = sum(v[1] for v in sums.values())
    summary = table(
        "tier-migrations",
        ["movement", "customers", "share", "revenue in window"],
        [
            [k, fmt_int(v[0]), fmt_pct(_share(v[0], total_n)), fmt_money(v[1])]
            for k, v in sums.items()
            if v[0] or k != "other"
        ],
        numeric=(1, 2, 3),
        total=["all", fmt_int(total_n), fmt_pct(1), fmt_money(total_rev)],
    )
    return section("migrations", f"Tier migrations{since}", intro, row(chart, summary))


def _params(p: dict | None) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in sorted((p or {}).items())) or "none"


def clv_section(d: ReportData) -> str:
    intro = (
        "Predicted value: BG/NBD (purchases) and Gamma-Gamma (spend) fitted on the BTYD summary, "
        "accepted only when a model fitted on the history before the holdout period predicts "
        "the purchase days in it within the configured error. The chart compares predicted "
        "and actual holdout purchase days per number of repeat purchases before the holdout."
    )
    c = d.clv
    if c is None:
        return ""
    if isinstance(c, Missing):
        return section("clv", "Predicted value (CLV)", intro, missing(c))
    if not c.fits:
        return section("clv", "Predicted value (CLV)", intro, note(f"No CLV fit recorded for {d.as_of}."))
    in_use = [f for f in c.fits if f["is_in_use"]]
    parts = []
    if not in_use:
        parts.append(note(f"No CLV fit in use: {c.fits[0]['note']}"))
    else:
        bg = next(f for f in in_use if f["model"] == "bg_nbd")
        gg = next(f for f in in_use if f["model"] == "gamma_gamma")
        parts.append(
            f"<p>Fit in use <b>{esc(bg['fit_id'])}</b> ({esc(bg['note'])}). "
            f"BG/NBD {esc(_params(bg['parameters']))} on {fmt_int(bg['n_customers'])} customers; "
            f"Gamma-Gamma {esc(_params(gg['parameters']))} on {fmt_int(gg['n_customers'])} customers. "
            f"{fmt_int(c.customers)} customers scored, mean P(alive) {c.mean_probability_alive:.2f}, "
            f"predicted 12-month CLV {esc(fmt_money(c.total_predicted_clv))} in all.</p>"
        )
    rejected = [f for f in c.fits if f["status"] == "rejected" and f["model"] == "bg_nbd"]
    if rejected:
        parts.append(note(f"Tonight's fit was not used: {rejected[0]['note']}"))
    checked = next((f for f in c.fits if f["model"] == "bg_nbd" and f.get("holdout_buckets")), None)
    if checked:
        buckets = checked["holdout_buckets"]
        chart = svg.hbars(
            "clv-holdout",
            f"Holdout purchase days, predicted vs actual ({checked['holdout_days']} days, fit "
            f"{checked['fit_id']})",
            [f"{b['bucket']} repeat purchases ({fmt_int(b['customers'])} customers)" for b in buckets],
            [
                ("predicted", TIER_COLORS[1], [float(b["predicted"]) for b in buckets]),
                ("actual", TIER_COLORS[5], [float(b["actual"]) for b in buckets]),
            ],
            fmt_int,
        )
        error = checked["holdout_error"]
        bound = checked["max_holdout_error"]
        verdict = "" if error is None else (
            f"Holdout error {float(error):.1%} (sum over buckets of |predicted - actual| / actual), "
            f"bound {float(bound):.0%}: {'passed' if float(error) <= float(bound) else 'failed'}."
        )
        parts.append(row(chart, f"<p>{esc(verdict)}</p>"))
    return section("clv", "Predicted value (CLV)", intro, "".join(parts))


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
            ("share of customers", CUSTOMERS_COLOR, [_share(int(r["customers"]), customers) for r in a]),
            ("share of budget", MONEY_COLOR, [_share(float(r["allocated_budget"]), budget) for r in a]),
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
            fmt_pct(_share(float(r["allocated_budget"]), budget)),
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
            ("share of customers", CUSTOMERS_COLOR, [_share(r.customers, n_all) for r in a.by_action]),
            ("share of budget", MONEY_COLOR, [_share(r.budget, budget) for r in a.by_action]),
            (
                "share of expected return",
                RETURN_COLOR,
                [_share(r.expected_return, returns) for r in a.by_action],
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


def _alert_label(alert_type: str) -> str:
    return alert_type.replace("_", " ")


def alerts_section(d: ReportData) -> str:
    intro = (
        "Customers someone must act on tonight (account_alerts): churn risk against the customer's own "
        "gap between orders, a sharp revenue drop, high credit risk, a fall from the top tier. Critical "
        "= a top-tier customer or a top-tier downgrade. The owner is the account manager."
    )
    title = "Account alerts"
    al = d.alerts
    if isinstance(al, Missing):
        return section("alerts", title, intro, missing(al))
    assert isinstance(al, Alerts)
    if not al.counts:
        return section(
            "alerts",
            title,
            intro,
            note(f"No account alerts for {d.as_of.isoformat()}: no customer needs an owner's attention."),
        )
    known = [t for t in ALERT_TYPES if any(k[0] == t for k in al.counts)]
    types = known + sorted({t for t, _ in al.counts} - set(known))
    severities = [CRITICAL, "warning"]
    severities += sorted({s for _, s in al.counts} - set(severities))
    colors = {CRITICAL: FAIL, "warning": WARN}
    chart = svg.hbars(
        "alerts",
        "Alerts by type and severity",
        [_alert_label(t) for t in types],
        [(s, colors.get(s, OTHER_SEVERITY), [al.counts.get((t, s), 0) for t in types]) for s in severities],
        fmt_int,
        stacked=True,
        integer=True,
    )
    by_type = table(
        "alerts-by-type",
        ["alert type", *severities, "all"],
        [
            [
                _alert_label(t),
                *(fmt_int(al.counts.get((t, s), 0)) for s in severities),
                fmt_int(sum(al.counts.get((t, s), 0) for s in severities)),
            ]
            for t in types
        ],
        numeric=tuple(range(1, len(severities) + 2)),
        total=[
            "all",
            *(fmt_int(sum(n for (_, s2), n in al.counts.items() if s2 == s)) for s in severities),
            fmt_int(sum(al.counts.values())),
        ],
    )
    owners = table(
        "alerts-by-owner",
        # severity is critical or warning (the mart's accepted values): "warning" = not critical
        ["owner", "alerts", "critical", "warning", "customers"],
        [
            [
                o["owner"],
                fmt_int(o["alerts"]),
                fmt_int(o["critical"]),
                fmt_int(o["other"]),
                fmt_int(o["customers"]),
            ]
            for o in al.owners
        ],
        numeric=(1, 2, 3, 4),
        total=[
            "all",
            fmt_int(sum(o["alerts"] for o in al.owners)),
            fmt_int(sum(o["critical"] for o in al.owners)),
            fmt_int(sum(o["other"] for o in al.owners)),
            # a customer has one owner (its account manager), so the owners' customers add up
            fmt_int(sum(o["customers"] for o in al.owners)),
        ],
        wrap=(0,),
    )
    body = row(chart, by_type) + "<p>Alerts per owner:</p>" + owners
    if al.critical:
        body += f'<p class="bad">{esc(fmt_int(al.critical_total))} critical alerts:</p>'
        body += table(
            "alerts-critical",
            ["owner", "customer", "name", "tier", "alert", "reason"],
            [
                [
                    c["owner"],
                    c["customer_id"],
                    c["customer_name"] or "",
                    c["value_tier"] or "",
                    _alert_label(c["alert_type"]),
                    c["reason"] or "",
                ]
                for c in al.critical
            ],
            wrap=(0, 2, 5),
            nowrap=(4,),
        )
        if al.critical_total > len(al.critical):
            body += (
                f"<p>… and {esc(fmt_int(al.critical_total - len(al.critical)))} more critical alerts in "
                f"{esc(d.publish_schema)}.account_alerts.</p>"
            )
    else:
        body += '<p class="good">No critical alerts.</p>'
    return section("alerts", title, intro, body)


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
                fmt_pct(_share(x.active, x.covered)),
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
    team_rate = _share(active, covered)
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
        rate = _share(r.active, r.covered)
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
            f"{fmt_pct(_share(x.active, x.known))} ({fmt_int(x.active)} of {fmt_int(x.known)})",
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


def quality_section(d: ReportData) -> str:
    intro = (
        "Every data-quality check of this run (Great Expectations suites on the raw extracts and "
        "on the marts, and dbt's tests of each model). A failed critical check stops publishing; "
        "a failed warning is reported."
    )
    q = d.quality
    # optional extracts never delivered, and what the night's results lack without them
    intro_extra = "".join(f'<p class="bad">Degraded: {esc(text)}.</p>' for text in d.degradations)
    if isinstance(q, Missing):
        return section("quality", "Data quality", intro, intro_extra + missing(q))
    if not q:
        return section(
            "quality", "Data quality", intro,
            intro_extra + note(f"No quality results recorded for run {d.run_id}."),
        )
    suites = sorted({r["suite"] for r in q})
    counts = {s: [0, 0, 0] for s in suites}  # passed, failed warning, failed critical
    for r in q:
        c = counts[r["suite"]]
        if r["success"]:
            c[0] += 1
        elif r["severity"] == "critical":
            c[2] += 1
        else:
            c[1] += 1
    chart = svg.hbars(
        "quality",
        "Checks per suite",
        suites,
        [
            ("passed", PASS, [counts[s][0] for s in suites]),
            ("failed (warning)", WARN, [counts[s][1] for s in suites]),
            ("failed (critical)", FAIL, [counts[s][2] for s in suites]),
        ],
        fmt_int,
        stacked=True,
        integer=True,
    )
    totals = [sum(c[i] for c in counts.values()) for i in range(3)]
    summary = table(
        "quality",
        ["suite", "checks", "passed", "failed (warning)", "failed (critical)"],
        [[s, fmt_int(sum(c)), fmt_int(c[0]), fmt_int(c[1]), fmt_int(c[2])] for s, c in counts.items()],
        numeric=(1, 2, 3, 4),
        total=["all", fmt_int(sum(totals)), *(fmt_int(t) for t in totals)],
    )
    columns = ["suite", "expectation", "column", "severity", "result", "observed value"]

    def line(r: dict) -> list[object]:
        observed = r["observed_value"] or ""
        observed = observed if len(observed) <= 300 else observed[:299] + "…"
        return [
            r["suite"],
            r["expectation"],
            r["column_name"] or "",
            r["severity"],
            "passed" if r["success"] else "FAILED",
            observed,
        ]

    failed = [r for r in q if not r["success"]]
    body = intro_extra + row(chart, summary)
    if failed:
        body += f'<p class="bad">{esc(fmt_int(len(failed)))} failed checks:</p>'
        body += table("quality-failed", columns, [line(r) for r in failed], wrap=(1, 5))
    else:
        body += f'<p class="good">All {esc(fmt_int(len(q)))} checks passed.</p>'
    body += (
        f"<details><summary>All {esc(fmt_int(len(q)))} checks</summary>"
        + table("quality-all", columns, [line(r) for r in q], wrap=(1, 5))
        + "</details>"
    )
    return section("quality", "Data quality", intro, body)


def reason_kind(reason: str) -> str:
    """A reject reason without its values, so the chart groups alike reasons:
    "unknown currency 'XYZ'" -> "unknown currency …", "line 36" -> "line N"."""
    kind = re.sub(r"'(?:[^']|'')*'", "…", reason)
    return re.sub(r"(?<![\w/])-?\d+(?:\.\d+)?\b", "N", kind)


def _not_loaded(r: Rejects) -> str:
    """Paths under the landing root this run did not load, and unknown columns it kept aside."""
    out = ""
    if r.ignored:
        count = esc(fmt_int(len(r.ignored)))
        out += f'<p class="bad">{count} path(s) under the landing root were not loaded:</p>'
        out += table("ignored-paths", ["path", "why not loaded"], r.ignored, wrap=(0, 1))
    if r.extra_columns:
        out += "<p>Unknown columns, kept aside in the raw tables' <code>_extra</code> column:</p>"
        out += table("extra-columns", ["file", "columns"],
                     [(path, ", ".join(cols)) for path, cols in r.extra_columns], wrap=(0, 1))
    return out


def rejects_section(d: ReportData) -> str:
    intro = (
        "Rows of this run's files that were not loaded: the chart groups the reasons by kind "
        "(values left out), the table lists them by reason and file (every rejected row is kept "
        "with its line number and raw record in tierflow_meta.rejects). Paths under the landing "
        "root that were not loaded at all, and unknown columns kept aside, are listed too."
    )
    r = d.rejects
    if isinstance(r, Missing):
        return section("rejects", "Rejected rows", intro, missing(r))
    assert isinstance(r, Rejects)
    loads = table(
        "loads",
        ["files loaded", "rows in", "rows loaded", "rows rejected"],
        [[fmt_int(r.files), fmt_int(r.rows_in), fmt_int(r.rows_loaded), fmt_int(r.rows_rejected)]],
        numeric=(0, 1, 2, 3),
    )
    loads += _not_loaded(r)
    if not r.by_reason:
        msg = "No rows were rejected in this run's loads." if r.files else "This run loaded no files."
        return section("rejects", "Rejected rows", intro, loads + note(msg))
    kinds: dict[str, int] = {}
    for reason, n in r.by_reason:
        kinds[reason_kind(reason)] = kinds.get(reason_kind(reason), 0) + n
    by_kind = sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0]))
    charted = by_kind[:MAX_REASONS_CHARTED]
    rest = by_kind[MAX_REASONS_CHARTED:]
    if rest:
        charted = [*charted, (f"other ({len(rest)} reasons)", sum(n for _, n in rest))]
    chart = svg.hbars(
        "rejects",
        "Rejected rows by kind of reason",
        [reason for reason, _ in charted],
        [("rows", FAIL, [n for _, n in charted])],
        fmt_int,
        label_chars=56,
        integer=True,
        width=900,
    )
    shown = r.by_reason_file[:MAX_REJECT_ROWS]
    detail = table(
        "rejects",
        ["reason", "file", "rows"],
        [[reason, path, fmt_int(n)] for reason, path, n in shown],
        numeric=(2,),
        total=[
            "all",
            f"{len({p for _, p, _ in r.by_reason_file})} files",
            fmt_int(sum(n for *_, n in r.by_reason_file)),
        ],
        wrap=(0, 1),
    )
    more = (
        f"<p>… and {len(r.by_reason_file) - len(shown)} more reason × file pairs.</p>"
        if len(r.by_reason_file) > len(shown)
        else ""
    )
    return section("rejects", "Rejected rows", intro, loads + row(chart) + detail + more)


# -- page --------------------------------------------------------------------------------


def _check_links(links: dict[str, str]) -> None:
    for label, href in links.items():
        parts = urlsplit(href)
        if parts.scheme or parts.netloc or href.startswith("/"):
            raise ValueError(
                f"report link {label!r} -> {href!r} must be a relative URL (the report is opened offline "
                "next to its files)"
            )


def _tiles(d: ReportData) -> str:
    tiles: list[tuple[str, str]] = []
    if isinstance(d.tier_mix, TierMix):
        n = sum(d.tier_mix.customers.get((d.as_of, t), 0) for t in d.tier_mix.tiers)
        tiles.append((fmt_int(n), "customers tiered"))
    if isinstance(d.whale, WhaleCurve) and d.whale.points:
        tiles.append((fmt_money(d.whale.total_contribution), "net contribution"))
    if isinstance(d.allocation, list) and d.allocation:
        tiles.append((fmt_money(sum(float(r["allocated_budget"]) for r in d.allocation)), "budget allocated"))
        tiles.append(
            (fmt_money(sum(float(r["expected_return"] or 0) for r in d.allocation)), "expected return")
        )
    if isinstance(d.alerts, Alerts):
        n = sum(d.alerts.counts.values())
        tiles.append((fmt_int(n), f"account alerts, {fmt_int(d.alerts.critical_total)} critical"))
    if isinstance(d.quality, list) and d.quality:
        failed = sum(1 for r in d.quality if not r["success"])
        tiles.append(
            (f"{fmt_int(len(d.quality) - failed)} / {fmt_int(len(d.quality))}", "quality checks passed")
        )
    if isinstance(d.rejects, Rejects):
        tiles.append((fmt_int(d.rejects.rows_rejected), f"rows rejected of {fmt_int(d.rejects.rows_in)}"))
    return (
        '<div class="tiles">'
        + "".join(f'<div class="tile"><b>{esc(v)}</b><span>{esc(k)}</span></div>' for v, k in tiles)
        + "</div>"
    )


def build_html(d: ReportData, links: dict[str, str], generated_at: datetime | None = None) -> str:
    from tierflow.report.outcomes import plan_section, retention_section  # they import this module

    _check_links(links)
    generated_at = generated_at or datetime.now(UTC)
    status = ""
    if d.run:
        status = f" · status {d.run['status']}"
        if d.run.get("published_at"):
            status += f" (published {d.run['published_at']:%Y-%m-%d %H:%M %Z})"
    nav = "".join(f'<a href="{esc(href)}">{esc(label)}</a>' for label, href in links.items())
    toc = "".join(
        f'<a href="#{a}">{esc(t)}</a>'
        for a, t in (
            ("tiers", "Tier mix"),
            ("whale", "Whale curve"),
            ("migrations", "Migrations"),
            ("clv", "CLV"),
            ("allocation", "Allocation"),
            ("actions", "Actions"),
            ("plan-performance", "Did the plan work?"),
            ("alerts", "Alerts"),
            ("kpis", "Sales KPIs"),
            ("team", "Sales team"),
            ("regions", "Regions"),
            ("retention", "Retention"),
            ("quality", "Quality"),
            ("rejects", "Rejects"),
        )
    )
    sections = [
        tier_mix_section(d),
        whale_section(d),
        migrations_section(d),
        clv_section(d),
        allocation_section(d),
        actions_section(d),
        plan_section(d),
        alerts_section(d),
        sales_section(d),
        team_section(d),
        regions_section(d),
        retention_section(d),
        quality_section(d),
        rejects_section(d),
    ]
    title = f"tierflow run report {d.as_of.isoformat()}"
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{esc(title)}</title>",
            f"<style>{CSS}</style>",
            "</head><body>",
            "<header>",
            f"<h1>Customer tiering · as of {esc(d.as_of.isoformat())}</h1>",
            f'<div class="meta">run {esc(d.run_id)}{esc(status)}'
            f" · tables from schema {esc(d.publish_schema)}</div>",
            f"<nav>{nav}</nav>" if nav else "",
            "</header><main>",
            _tiles(d),
            f'<p class="toc">{toc}</p>',
            *sections,
            "</main>",
            f"<footer>Generated {esc(generated_at.strftime('%Y-%m-%d %H:%M UTC'))} by tierflow.</footer>",
            "</body></html>",
        ]
    )


def render_report(
    url: str,
    publish_schema: str,
    as_of: date,
    run_id: str,
    out_path: Path,
    links: dict[str, str] | None = None,
) -> Path:
    """Write the run report for ``as_of`` / ``run_id`` to ``out_path`` (replaced atomically)."""
    links = dict(links or {})
    _check_links(links)  # before touching the warehouse
    data = read_report_data(url, publish_schema, as_of, run_id, TOP_CUSTOMERS, MAX_CRITICAL_LISTED)
    page = build_html(data, links)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, out_path)
    return out_path
