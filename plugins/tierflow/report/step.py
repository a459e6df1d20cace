"""The report step: everything a night writes after ``bi`` is published, in one call.

``write_report`` writes, into the as-of date's folder of ``$TIERFLOW_EXPORTS``, the exports
and the CRM import file, links the Data Docs site the gates built there, generates the dbt
docs and the HTML report, and saves the run summary on the run's row. The pipeline's report
step is a one-line call to it.
"""

from __future__ import annotations

import logging
import time
from datetime import date
from pathlib import Path

from tierflow.config import TierflowConfig
from tierflow.report.exports import write_exports
from tierflow.report.page import render_report
from tierflow.report.summary import build_summary, format_summary, save_summary
from tierflow.settings import Settings
from tierflow.transform import DbtError, generate_docs

log = logging.getLogger(__name__)


def write_report(
    url: str, settings: Settings, cfg: TierflowConfig, as_of: date, run_id: str, ingest_report: dict
) -> dict:
    """Exports, Data Docs link, dbt docs, HTML report and run summary for ``as_of``; returns the
    summary (also saved in ``tierflow_meta.runs`` and logged).

    The exports and the summary fail the step; the doc sites and the HTML report are for reading,
    so one that cannot be built is logged and shown as not built in the summary.
    """
    run_dir = settings.run_dir(as_of)  # where the gates wrote their Data Docs
    exports = write_exports(url, settings.publish_schema, as_of, settings.exports)
    summary = build_summary(url, settings.publish_schema, as_of, run_id, ingest_report, exports)
    summary["docs"] = {"data_docs": _data_docs(run_dir), "dbt_docs": _dbt_docs(url, cfg, as_of, run_dir)}

    summary["docs"]["report"] = _html_report(url, settings, as_of, run_id, run_dir, summary["docs"])

    save_summary(url, run_id, summary)
    log.info("\n%s", format_summary(summary))
    return summary


def _html_report(
    url: str, settings: Settings, as_of: date, run_id: str, run_dir: Path, docs: dict
) -> str | None:
    """The self-contained HTML report of the run, linking the doc sites that were built.

    ``bi`` is published by now: a report that cannot be drawn is logged and shown as not
    built in the summary rather than failing a night whose tables are already out.
    """
    sites = (("Data Docs", "data_docs", "data-docs"), ("dbt docs", "dbt_docs", "dbt-docs"))
    links = {label: f"{folder}/index.html" for label, key, folder in sites if docs.get(key)}
    try:
        return str(render_report(url, settings.publish_schema, as_of, run_id, run_dir / "report.html", links))
    except Exception:
        log.exception("the HTML report for %s was not built", as_of)
        return None


def _data_docs(run_dir: Path) -> str | None:
    """The Data Docs site the gates of this run built (quality/docs.py), if they did."""
    index = run_dir / "data-docs" / "index.html"
    if not index.is_file():
        log.warning("no GX Data Docs in %s (see the validate tasks' logs)", index.parent)
        return None
    return str(index)


def _dbt_docs(url: str, cfg: TierflowConfig, as_of: date, run_dir: Path) -> str | None:
    """dbt docs of the run; like the Data Docs, for reading: a failure is logged, not fatal,
    because ``bi`` is already published by now and a missing docs page must not fail the night.
    """
    started = time.perf_counter()
    try:
        index = generate_docs(url, cfg, as_of, run_dir / "dbt-docs")
    except DbtError:
        log.exception("could not generate the dbt docs in %s", run_dir / "dbt-docs")
        return None
    log.info("dbt docs generated in %.1f s: %s", time.perf_counter() - started, index)
    return str(index)
