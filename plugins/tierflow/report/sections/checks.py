"""The run's own checks: the data-quality results of its gates and dbt tests, and the rows
its loads rejected or left aside.
"""

from __future__ import annotations

import re

from tierflow.report import svg
from tierflow.report.html import (
    FAIL,
    PASS,
    WARN,
    Section,
    esc,
    fmt_int,
    missing,
    note,
    row,
    section,
    table,
)
from tierflow.report.queries import Rejects, ReportData
from tierflow.report.reading import Missing

MAX_REASONS_CHARTED = 10
MAX_REJECT_ROWS = 25


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


def quality_tiles(d: ReportData) -> list[tuple[str, str]]:
    if not (isinstance(d.quality, list) and d.quality):
        return []
    failed = sum(1 for r in d.quality if not r["success"])
    return [(f"{fmt_int(len(d.quality) - failed)} / {fmt_int(len(d.quality))}", "quality checks passed")]


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


def rejects_tiles(d: ReportData) -> list[tuple[str, str]]:
    if not isinstance(d.rejects, Rejects):
        return []
    return [(fmt_int(d.rejects.rows_rejected), f"rows rejected of {fmt_int(d.rejects.rows_in)}")]


QUALITY = Section("quality", "Quality", quality_section, quality_tiles)
REJECTS = Section("rejects", "Rejects", rejects_section, rejects_tiles)
