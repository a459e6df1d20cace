"""The report page's building blocks: colours, number formats and escaped HTML pieces.

Every section draws with these, so a table, a note or an amount reads the same everywhere in
the report. Every text goes through ``esc``: the report shows names, reasons and file paths
that come from data. ``Section`` is what the registry in ``tierflow.report.sections`` lists.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

from tierflow.report.queries import ReportData
from tierflow.report.reading import Missing

TIER_COLORS = ("#1f4e79", "#2e86c1", "#85c1e9", "#5d6d7e", "#a9cce3", "#d4ac0d", "#7d3c98")
PASS, WARN, FAIL = "#1e8449", "#d68910", "#c0392b"
CUSTOMERS_COLOR, MONEY_COLOR, RETURN_COLOR = "#2e86c1", "#1f4e79", "#17a589"


def esc(value: object) -> str:
    return escape(str(value), quote=True)


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


def share(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


def fmt_roi(expected_return: float, budget: float) -> str:
    """Expected return per unit of budget, as a percentage; "–" without budget."""
    return fmt_pct(expected_return / budget) if budget else "–"


# -- html pieces -------------------------------------------------------------------------


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


# -- sections ----------------------------------------------------------------------------


def no_tiles(d: ReportData) -> list[tuple[str, str]]:
    return []


@dataclass(frozen=True)
class Section:
    """One section of the report as the page lists it: ``anchor`` and ``label`` make its entry
    in the table of contents, ``tiles`` its figures in the row at the top of the page (value,
    caption; most sections have none), ``body`` its ``<section id="anchor">``."""

    anchor: str
    label: str
    body: Callable[[ReportData], str]
    tiles: Callable[[ReportData], list[tuple[str, str]]] = no_tiles
