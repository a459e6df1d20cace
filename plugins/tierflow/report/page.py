"""The report page: the header, the tiles, the table of contents and the sections of the
registry (``tierflow.report.sections``), in one HTML file with inline CSS and inline SVG, no
scripts; ``render_report`` reads the warehouse and writes the file.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import urlsplit

from tierflow.report.html import esc
from tierflow.report.queries import ReportData, read_report_data
from tierflow.report.sections import SECTIONS

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


def _check_links(links: dict[str, str]) -> None:
    for label, href in links.items():
        parts = urlsplit(href)
        if parts.scheme or parts.netloc or href.startswith("/"):
            raise ValueError(
                f"report link {label!r} -> {href!r} must be a relative URL (the report is opened offline "
                "next to its files)"
            )


def _tiles(d: ReportData) -> str:
    tiles = [tile for s in SECTIONS for tile in s.tiles(d)]
    return (
        '<div class="tiles">'
        + "".join(f'<div class="tile"><b>{esc(v)}</b><span>{esc(k)}</span></div>' for v, k in tiles)
        + "</div>"
    )


def build_html(d: ReportData, links: dict[str, str], generated_at: datetime | None = None) -> str:
    _check_links(links)
    generated_at = generated_at or datetime.now(UTC)
    status = ""
    if d.run:
        status = f" · status {d.run['status']}"
        if d.run.get("published_at"):
            status += f" (published {d.run['published_at']:%Y-%m-%d %H:%M %Z})"
    nav = "".join(f'<a href="{esc(href)}">{esc(label)}</a>' for label, href in links.items())
    # one registry, so a section is in the table of contents, the tiles and the body or in none
    toc = "".join(f'<a href="#{s.anchor}">{esc(s.label)}</a>' for s in SECTIONS)
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
            *(s.body(d) for s in SECTIONS),
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
