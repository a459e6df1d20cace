"""GX Data Docs per as-of date: one static site with every suite and result of the run.

The raw and the marts gate run in different Airflow tasks (often different processes), so
their results cannot share an in-memory GX context. Each gate therefore puts its suites and
validation results into GX's own filesystem stores under ``<exports>/<as_of>/gx-store/``
and renders only its own pages into the site ``<exports>/<as_of>/data-docs/``; GX rebuilds
the site's index from everything in the stores, so after both gates the index lists both.

One site per as-of date shows one run: results of any other run id (an earlier run of the
same date) are dropped from the store, and GX removes their pages from the site. A retry of
a gate in the same run replaces that gate's results.

Building needs no network; reading mostly does not either. GX's templates load Bootstrap,
jQuery and bootstrap-table from public CDNs: offline, its suite and result pages are unstyled
but complete, while its index page is empty (its tables are drawn by those scripts). So the
site's ``index.html`` is ours, plain HTML with no outside files: every suite of the run, its
status, each failed expectation with severity and observed value, and links to GX's pages.
GX's own interactive index is kept beside it as ``gx-index.html``.
"""

from __future__ import annotations

import html
import logging
import os
import pathlib
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SITE_NAME = "tierflow"


@dataclass
class SuiteValidation:
    """One suite's run: the GX suite, the batch it validated and GX's result object."""

    suite: Any  # great_expectations.core.ExpectationSuite
    data_asset: str
    result: Any  # great_expectations.core.ExpectationSuiteValidationResult


def docs_paths(run_dir: Path) -> tuple[Path, Path]:
    """(site folder, store folder) inside one as-of date's exports folder."""
    return run_dir / "data-docs", run_dir / "gx-store"


def _context(site_dir: Path, store_dir: Path):
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    from great_expectations.data_context.types.base import DataContextConfig, InMemoryStoreBackendDefaults

    def files(folder: Path) -> dict:
        return {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(folder)}

    defaults = InMemoryStoreBackendDefaults()
    stores = dict(defaults.stores)
    for name, class_name, sub in (
        (defaults.expectations_store_name, "ExpectationsStore", "expectations"),
        (defaults.validation_results_store_name, "ValidationResultsStore", "validations"),
    ):
        stores[name] = {"class_name": class_name, "store_backend": files(store_dir / sub)}
    config = DataContextConfig(
        store_backend_defaults=defaults,
        stores=stores,
        data_docs_sites={
            SITE_NAME: {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,  # GX tutorial buttons mean nothing to our readers
                "store_backend": files(site_dir),
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            }
        },
        analytics_enabled=False,
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def build_data_docs(run_dir: Path, run_id: str, validations: list[SuiteValidation]) -> Path:
    """Add ``validations`` (one gate of run ``run_id``) to the as-of date's Data Docs site.

    Returns the site's ``index.html``.
    """
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    site_dir, store_dir = docs_paths(run_dir)
    context = _context(site_dir, store_dir)
    results_store = context.validation_results_store
    suites_store = context.expectations_store
    names = {v.suite.name for v in validations}

    # this date's site shows this run only; a retried gate replaces its own results
    kept_suites: set[str] = set()
    for key in results_store.list_keys():
        suite_name = key.expectation_suite_identifier.name
        if key.run_id.run_name != run_id or suite_name in names:
            results_store.remove_key(key)
        else:
            kept_suites.add(suite_name)
    for key in suites_store.list_keys():
        if key.name not in kept_suites | names:
            suites_store.remove_key(key)

    run = RunIdentifier(run_name=run_id, run_time=datetime.now(UTC))
    built: list = []
    for v in validations:
        v.result.meta["run_id"] = run  # shown on GX's result page
        context.suites.add_or_update(v.suite)
        key = ValidationResultIdentifier(
            expectation_suite_identifier=ExpectationSuiteIdentifier(name=v.suite.name),
            run_id=run,
            batch_identifier=v.data_asset,
        )
        results_store.set(key, v.result)
        built += [ExpectationSuiteIdentifier(name=v.suite.name), key]
    # renders this gate's pages; the index is rebuilt from every key left in the stores
    context.build_data_docs(site_names=[SITE_NAME], resource_identifiers=built)
    index = site_dir / "index.html"
    if not index.is_file():
        raise RuntimeError(f"GX did not write the Data Docs index {index}")
    index.replace(site_dir / "gx-index.html")
    rows = [(key, results_store.get(key)) for key in results_store.list_keys()]
    index.write_text(_index_html(run_id, rows), encoding="utf-8")
    _prune_unused_images(site_dir)
    return index


def _page_link(key: Any) -> str:
    """The site path GX gives a validation result page (as its index builder computes it)."""
    suite_parts = key.expectation_suite_identifier.name.split(".")
    path = pathlib.Path("validations", *suite_parts, *key.run_id.to_tuple(), key.batch_identifier)
    return urllib.parse.quote(path.as_posix() + ".html")


def _index_html(run_id: str, rows: list[tuple[Any, Any]]) -> str:
    e = html.escape
    body: list[str] = []
    failed_suites = 0
    for key, result in sorted(rows, key=lambda kr: kr[0].expectation_suite_identifier.name):
        res = result.to_json_dict()
        stats = res.get("statistics") or {}
        failed = [r for r in res["results"] if not r["success"]]
        failed_suites += bool(failed)
        status = "passed" if not failed else f"{len(failed)} failed"
        body.append(
            f'<tr class="{"bad" if failed else "ok"}"><td><a href="{e(_page_link(key))}">'
            f"{e(key.expectation_suite_identifier.name)}</a></td><td>{e(str(key.batch_identifier))}</td>"
            f"<td>{stats.get('successful_expectations', '?')} of {stats.get('evaluated_expectations', '?')}"
            f"</td><td>{e(status)}</td></tr>"
        )
        for r in failed:
            cfg = r["expectation_config"]
            kwargs = cfg.get("kwargs") or {}
            outcome = r.get("result") or {}
            observed = outcome.get("observed_value")
            if observed is None and outcome.get("unexpected_count") is not None:
                observed = f"{outcome['unexpected_count']} unexpected"
            body.append(
                f'<tr class="detail"><td colspan="4">{e(str(cfg.get("severity") or "critical"))}: '
                f"<code>{e(cfg['type'])}</code>"
                f"{' on <code>' + e(str(kwargs['column'])) + '</code>' if kwargs.get('column') else ''}"
                f"{'; observed ' + e(str(observed)) if observed is not None else ''}</td></tr>"
            )
    summary = f"{len(rows)} suite(s), {failed_suites} with failed expectations"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Data quality {e(run_id)}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; }} td, th {{ padding: .3em .8em; text-align: left; }}
tr.ok td:last-child {{ color: #1a7f37; }} tr.bad td:last-child {{ color: #c62828; font-weight: bold; }}
tr.detail td {{ padding-left: 2.5em; color: #555; }} th {{ border-bottom: 1px solid #999; }}
</style></head>
<body>
<h1>Data quality: run {e(run_id)}</h1>
<p>{e(summary)}. Each suite links to its Great Expectations result page;
<a href="gx-index.html">GX's own index</a> needs network access for its scripts.</p>
<table><thead><tr><th>suite</th><th>data asset</th><th>expectations met</th><th>status</th></tr></thead>
<tbody>
{chr(10).join(body)}
</tbody></table>
</body></html>
"""


def _prune_unused_images(site_dir: Path) -> None:
    """GX copies 3.4 MB of tutorial images into every site; keep only those a page uses."""
    images = site_dir / "static" / "images"
    if not images.is_dir():
        return
    pages = "".join(p.read_text(encoding="utf-8", errors="replace") for p in site_dir.rglob("*.htm*"))
    pages += "".join(p.read_text(encoding="utf-8", errors="replace") for p in site_dir.rglob("*.css"))
    for image in images.iterdir():
        if image.is_file() and image.name not in pages:
            image.unlink()
