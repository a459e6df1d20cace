"""The report step: what a night writes for people after ``bi`` is published, through one entry.

``write_report`` (step.py) is all the pipeline's report step calls. It writes the exports and
the CRM import file (exports.py), links the Data Docs and generates the dbt docs, draws the
HTML run report (page.py) and saves the run summary (summary.py).

The HTML report is one self-contained file a sales manager opens offline: inline CSS and
inline SVG charts drawn here in Python, no scripts, fonts or files fetched from anywhere, and
every text that comes from data HTML-escaped. Its rooms, leaf first:

- ``reading``: what every reader shares (``Missing``, ``table_exists``, ``num``);
- ``team``, ``outcomes``, ``queries``: what the sections read, in one snapshot
  (``queries.read_report_data``);
- ``html``: colours, number formats and escaped HTML pieces; ``svg``: the charts;
- ``sections``: one module per group of sections and ``SECTIONS``, the one registry that
  feeds the table of contents, the tiles and the body;
- ``page``: the page around the sections, and ``render_report``.
"""

from tierflow.report.page import render_report
from tierflow.report.step import write_report

__all__ = ["render_report", "write_report"]
