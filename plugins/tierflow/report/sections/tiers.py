"""The tier sections: the tier mix with its trend, and the migrations between tiers since the
previous run.
"""

from __future__ import annotations

from collections.abc import Sequence

from tierflow.report import svg
from tierflow.report.html import (
    CUSTOMERS_COLOR,
    MONEY_COLOR,
    TIER_COLORS,
    Section,
    esc,
    fmt_int,
    fmt_money,
    fmt_pct,
    fmt_pct_axis,
    fmt_signed,
    missing,
    note,
    row,
    section,
    share,
    table,
)
from tierflow.report.queries import NEW_TIER, ReportData, TierChanges, TierMix
from tierflow.report.reading import Missing

NEW_COLOR = "#9ca3af"


def tier_colors(tiers: Sequence[str]) -> dict[str, str]:
    colors = {t: TIER_COLORS[i % len(TIER_COLORS)] for i, t in enumerate(t for t in tiers if t != NEW_TIER)}
    colors[NEW_TIER] = NEW_COLOR
    return colors


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
                    fmt_pct(share(n, total)),
                    fmt_money(m.revenue.get(t, 0.0)),
                    fmt_pct(share(m.revenue.get(t, 0.0), revenue_total)),
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
                ("share of customers", CUSTOMERS_COLOR, [share(n, total) for n in today]),
                (
                    "share of revenue",
                    MONEY_COLOR,
                    [share(m.revenue.get(t, 0.0), revenue_total) for t in m.tiers],
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


def tier_mix_tiles(d: ReportData) -> list[tuple[str, str]]:
    if not isinstance(d.tier_mix, TierMix):
        return []
    n = sum(d.tier_mix.customers.get((d.as_of, t), 0) for t in d.tier_mix.tiers)
    return [(fmt_int(n), "customers tiered")]


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
            [k, fmt_int(v[0]), fmt_pct(share(v[0], total_n)), fmt_money(v[1])]
            for k, v in sums.items()
            if v[0] or k != "other"
        ],
        numeric=(1, 2, 3),
        total=["all", fmt_int(total_n), fmt_pct(1), fmt_money(total_rev)],
    )
    return section("migrations", f"Tier migrations{since}", intro, row(chart, summary))


TIER_MIX = Section("tiers", "Tier mix", tier_mix_section, tier_mix_tiles)
MIGRATIONS = Section("migrations", "Migrations", migrations_section)
