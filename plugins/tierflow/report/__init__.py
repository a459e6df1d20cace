"""The nightly HTML run report: one self-contained file that a sales manager opens offline.

``render_report`` reads the published tables (``bi``) and ``tierflow_meta`` and writes one
HTML file with inline CSS and inline SVG charts drawn here in Python: no scripts, fonts or
files fetched from anywhere. Every text that comes from data is HTML-escaped.
"""

from tierflow.report.render import render_report

__all__ = ["render_report"]
