"""The value sections: the whale curve of net contribution, and the CLV model's night."""

from __future__ import annotations

import math
from collections.abc import Sequence

from tierflow.report import svg
from tierflow.report.html import (
    TIER_COLORS,
    Section,
    esc,
    fmt_int,
    fmt_money,
    fmt_pct,
    missing,
    note,
    row,
    section,
    share,
    table,
)
from tierflow.report.queries import ReportData, WhaleCurve
from tierflow.report.reading import Missing

MAX_CURVE_POINTS = 600


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
        ["loss-making customers", f"{fmt_int(w.loss_making)} ({fmt_pct(share(w.loss_making, n))})"],
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


def whale_tiles(d: ReportData) -> list[tuple[str, str]]:
    if isinstance(d.whale, WhaleCurve) and d.whale.points:
        return [(fmt_money(d.whale.total_contribution), "net contribution")]
    return []


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


WHALE = Section("whale", "Whale curve", whale_section, whale_tiles)
CLV = Section("clv", "CLV", clv_section)
