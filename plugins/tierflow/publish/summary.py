"""Exports and the run summary: what a data engineer and a sales manager read after a run."""

from __future__ import annotations

import csv
import json
import logging
import os
from datetime import date
from decimal import Decimal
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from tierflow.clv.store import read_fits
from tierflow.quality.completeness import degradations
from tierflow.settings import META_SCHEMA

log = logging.getLogger(__name__)

EXPORTED_TABLES = ("customer_tiers", "allocation_plan_tier", "allocation_plan_customer")
# exported when published: a BI schema restored from before them, or built by hand, has none
# (a warning says so). The customer typing and the sales team's view (docs/typing.md), and
# closing the loop (docs/closing-the-loop.md).
TEAM_EXPORTED_TABLES = ("customer_profile", "sales_rep_performance", "region_potential")
OUTCOME_TABLES = ("plan_performance", "revenue_bridge", "cohort_retention", "customer_health")
OPTIONAL_EXPORTED_TABLES = TEAM_EXPORTED_TABLES + OUTCOME_TABLES
CRM_IMPORT_FILE = "crm_import.csv"
CRM_IMPORT_COLUMNS = ("customer_id", "value_tier", "rfm_segment", "service_level", "primary_action")
# A spreadsheet reads a cell starting with one of these as a formula (=HYPERLINK(...), =cmd|...)
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def neutralise_formula(value: object) -> object:
    """A text cell as a spreadsheet must not evaluate it (OWASP "CSV injection"): one that
    starts with a formula trigger gets a leading ``'``, which Excel and LibreOffice read as
    "text". Numbers, dates and empty cells are left as they are; only the CSV files meant for
    spreadsheets and CRM imports get this, the tables and Parquet files keep values verbatim."""
    if isinstance(value, str) and value.startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value


def write_exports(url: str, publish_schema: str, as_of: date, exports_root: Path) -> list[str]:
    """CSV and Parquet of the tier and allocation tables for ``as_of`` (replaced on rerun).

    The CSV files neutralise formula triggers in text cells (``neutralise_formula``); the
    Parquet files hold the values as published."""
    import pandas as pd

    out = exports_root / as_of.isoformat()
    out.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    with psycopg.connect(url) as conn:
        published = [t for t in OPTIONAL_EXPORTED_TABLES
                     if conn.execute("select to_regclass(%s)", (f'"{publish_schema}"."{t}"',)).fetchone()[0]]
        for table in sorted(set(OPTIONAL_EXPORTED_TABLES) - set(published)):
            log.warning("export: %s.%s is not published, not exported", publish_schema, table)
        for table in (*EXPORTED_TABLES, *published):
            cur = conn.execute(
                sql.SQL("select * from {} where as_of_date = %s order by 1, 2").format(
                    sql.Identifier(publish_schema, table)
                ),
                (as_of,),
            )
            cols = [d.name for d in cur.description]
            frame = pd.DataFrame(cur.fetchall(), columns=cols)
            for col in frame.columns:  # numeric -> float for Parquet/CSV consumers
                if frame[col].map(lambda v: isinstance(v, Decimal)).any():
                    frame[col] = frame[col].astype("float64")
            csv_path, pq_path = out / f"{table}.csv", out / f"{table}.parquet"
            text = [c for c in frame.columns if frame[c].map(lambda v: isinstance(v, str)).any()]
            # CRLF line ends (RFC 4180): the csv module then also quotes a value holding a bare
            # CR, which with "\n" line ends it writes unquoted, splitting the row for a reader
            frame.assign(**{c: frame[c].map(neutralise_formula) for c in text}).to_csv(
                csv_path, index=False, encoding="utf-8", lineterminator="\r\n")
            frame.to_parquet(pq_path, index=False)
            written += [str(csv_path), str(pq_path)]
    written.append(str(write_crm_import(url, publish_schema, as_of, out)))
    return written


def _crm_import_rows(conn: psycopg.Connection, publish_schema: str, as_of: date) -> list[tuple]:
    """Rows in byte order of customer_id (collation "C"), the same on every server."""
    query = sql.SQL(
        """
        select t.customer_id, t.value_tier, t.rfm_segment, c.service_level, c.primary_action
        from {tiers} as t
        left join {plan} as c on c.customer_id = t.customer_id and c.as_of_date = t.as_of_date
        where t.as_of_date = %s
        order by t.customer_id collate "C"
        """
    ).format(
        tiers=sql.Identifier(publish_schema, "customer_tiers"),
        plan=sql.Identifier(publish_schema, "allocation_plan_customer"),
    )
    return conn.execute(query, (as_of,)).fetchall()


def write_crm_import(url: str, publish_schema: str, as_of: date, out: Path) -> Path:
    """``crm_import.csv``: one row per tiered customer, to write tiers back to the CRM.

    The file is meant for CRM import tools and for the people who open it in Excel first, so:
    UTF-8 with a byte-order mark, comma-separated, CRLF line ends, quotes only where needed
    (RFC 4180). The BOM is what makes Excel (and so the many Chinese CRMs and Dynamics 365
    imports that start from an Excel file) read UTF-8 instead of the local ANSI code page, and it
    is what Excel's own "CSV UTF-8" format writes. Salesforce's Import Wizard and Dynamics accept
    it; a tool that reads the BOM as part of the first header (some Salesforce Data Loader
    set-ups) needs the file's first three bytes dropped. Empty means unknown. The file is
    written beside the old one and then moved over it, so an importer never reads half a file.
    A text that starts with a formula trigger (``=``, ``+``, ``-``, ``@``, tab, CR) is written
    with a leading ``'`` so a spreadsheet shows it instead of evaluating it.
    """
    with psycopg.connect(url) as conn:
        rows = _crm_import_rows(conn, publish_schema, as_of)
    path = out / CRM_IMPORT_FILE
    partial = out / f".{CRM_IMPORT_FILE}.partial"
    with partial.open("w", encoding="utf-8-sig", newline="") as f:
        writer = csv.writer(f, lineterminator="\r\n")
        writer.writerow(CRM_IMPORT_COLUMNS)
        writer.writerows(["" if v is None else neutralise_formula(v) for v in row] for row in rows)
    os.replace(partial, path)
    return path


def _f(v: object) -> float:
    return float(v) if v is not None else 0.0


def build_summary(
    url: str, publish_schema: str, as_of: date, run_id: str, ingest: dict, exports: list[str]
) -> dict:
    bi = sql.Identifier(publish_schema)
    meta = sql.Identifier(META_SCHEMA)
    with psycopg.connect(url, row_factory=dict_row) as conn:
        tiers = conn.execute(
            sql.SQL(
                """
                select value_tier as tier, min(value_tier_rank) as tier_rank, count(*) as customers,
                       coalesce(sum(monetary), 0) as revenue
                from {}.customer_tiers where as_of_date = %s
                group by value_tier order by min(value_tier_rank)
                """
            ).format(bi),
            (as_of,),
        ).fetchall()
        allocation = conn.execute(
            sql.SQL(
                """
                select value_tier as tier, customers, allocated_budget, budget_per_customer, service_level,
                       plan_period, plan_mode, expected_return
                from {}.allocation_plan_tier where as_of_date = %s order by tier_rank
                """
            ).format(bi),
            (as_of,),
        ).fetchall()
        movements = conn.execute(
            sql.SQL(
                """
                select count(*) filter (where tier_change = 'up') as up,
                       count(*) filter (where tier_change = 'down') as down,
                       count(*) filter (where tier_change = 'new') as new,
                       count(*) filter (where is_hysteresis_held) as held_by_hysteresis,
                       count(*) filter (where is_override) as overrides,
                       count(*) filter (where is_high_potential) as high_potential
                from {}.customer_tiers where as_of_date = %s
                """
            ).format(bi),
            (as_of,),
        ).fetchone()
        actions = conn.execute(
            sql.SQL(
                """
                select primary_action as action, count(*) as customers
                from {}.allocation_plan_customer where as_of_date = %s
                group by 1 order by 2 desc, 1
                """
            ).format(bi),
            (as_of,),
        ).fetchall()
        alerts = conn.execute(
            sql.SQL(
                """
                select alert_type, count(*) as alerts
                from {}.account_alerts where as_of_date = %s
                group by 1 order by 2 desc, 1
                """
            ).format(bi),
            (as_of,),
        ).fetchall()
        rejects = conn.execute(
            sql.SQL(
                """
                select r.reason, count(*) as rows
                from {m}.rejects r join {m}.load_audit a using (load_id)
                where a.run_id = %s
                group by r.reason order by count(*) desc, r.reason limit 8
                """
            ).format(m=meta),
            (run_id,),
        ).fetchall()
        quality = conn.execute(
            sql.SQL(
                """
                select count(*) as checks,
                       count(*) filter (where not success and severity = 'critical') as failed_critical,
                       count(*) filter (where not success and severity = 'warning') as failed_warning
                from {}.data_quality_results where run_id = %s
                """
            ).format(meta),
            (run_id,),
        ).fetchone()
        degraded = degradations(conn, as_of)
        clv_fits = read_fits(conn, publish_schema, as_of)
    total_customers = sum(t["customers"] for t in tiers) or 1
    total_revenue = sum(_f(t["revenue"]) for t in tiers) or 1.0
    return {
        "run_id": run_id,
        "as_of_date": as_of.isoformat(),
        "ingest": ingest,
        "tiers": [
            {
                "tier": t["tier"],
                "customers": t["customers"],
                "customer_share": round(t["customers"] / total_customers, 4),
                "revenue": round(_f(t["revenue"]), 2),
                "revenue_share": round(_f(t["revenue"]) / total_revenue, 4),
            }
            for t in tiers
        ],
        "allocation": [
            {
                "tier": a["tier"],
                "plan_period": a["plan_period"],
                "customers": a["customers"],
                "budget": round(_f(a["allocated_budget"]), 2),
                "per_customer": (
                    round(_f(a["budget_per_customer"]), 2) if a["budget_per_customer"] is not None else None
                ),
                "service_level": a["service_level"],
                "plan_mode": a["plan_mode"],
                "expected_return": round(_f(a["expected_return"]), 2),
            }
            for a in allocation
        ],
        "tier_movements": dict(movements) if movements else {},
        "actions": [{"action": a["action"], "customers": a["customers"]} for a in actions],
        "alerts": [dict(a) for a in alerts],
        "rejects_by_reason": [{"reason": r["reason"], "rows": r["rows"]} for r in rejects],
        "quality": dict(quality) if quality else {},
        "degradations": degraded,
        "clv": [
            {k: f[k] for k in ("model", "fit_id", "status", "is_in_use", "holdout_error", "note")}
            | {"holdout_error": float(f["holdout_error"]) if f["holdout_error"] is not None else None}
            for f in clv_fits
        ],
        "exports": exports,
    }


def save_summary(url: str, run_id: str, summary: dict) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(
            sql.SQL("update {}.runs set summary = %s where run_id = %s").format(sql.Identifier(META_SCHEMA)),
            (json.dumps(summary, ensure_ascii=False), run_id),
        )


def load_summary(url: str, run_id: str) -> dict | None:
    with psycopg.connect(url) as conn:
        if conn.execute("select to_regclass(%s)", (f"{META_SCHEMA}.runs",)).fetchone()[0] is None:
            return None
        row = conn.execute(
            sql.SQL("select summary from {}.runs where run_id = %s").format(sql.Identifier(META_SCHEMA)),
            (run_id,),
        ).fetchone()
    return row[0] if row else None


def _clv_lines(fits: list[dict]) -> list[str]:
    """The CLV model's night in a line; a fit that was not used, or none in use, as a warning."""
    out = []
    bg = [f for f in fits if f["model"] == "bg_nbd"]
    in_use = next((f for f in bg if f["is_in_use"]), None)
    if in_use:
        error = in_use["holdout_error"]
        error = f", holdout error {error:.1%}" if error is not None else ""
        out.append(f"  clv: fit {in_use['fit_id']} in use ({in_use['status']}{error})")
    for f in bg:
        if f["status"] in ("rejected", "not_fitted"):
            out.append(f"  warning: clv: {f['note']}")
    return out


def format_summary(s: dict) -> str:
    """Human-readable run summary (printed by ``tierflow run``)."""
    ing = s["ingest"]
    lines = [
        f"tierflow run {s['as_of_date']}  ({s['run_id']})",
        f"  ingest: {ing['files_loaded']} file(s) loaded, {ing['files_skipped']} already loaded; "
        f"{ing['rows_in']:,} rows in = {ing['rows_loaded']:,} loaded + {ing['rows_rejected']:,} rejected",
    ]
    for w in ing.get("warnings", []):
        lines.append(f"  warning: {w}")
    for d in s.get("degradations", []):
        lines.append(f"  degraded: {d}")
    lines.extend(_clv_lines(s.get("clv", [])))
    if ing.get("extra_columns"):
        lines.append(f"  extra columns kept aside: {', '.join(ing['extra_columns'])}")
    for p in ing.get("ignored_paths", []):
        lines.append(f"  ignored: {p['path']}: {p['reason']}")
    for r in s["rejects_by_reason"]:
        lines.append(f"    rejected {r['rows']:>6,}  {r['reason']}")
    lines.append("  value tiers:")
    lines.append(f"    {'tier':<10}{'customers':>10}{'share':>8}{'revenue (window)':>20}{'share':>8}")
    for t in s["tiers"]:
        lines.append(
            f"    {t['tier']:<10}{t['customers']:>10,}{t['customer_share']:>8.1%}"
            f"{t['revenue']:>20,.2f}{t['revenue_share']:>8.1%}"
        )
    if s["allocation"]:
        lines.append(f"  allocation plan {s['allocation'][0]['plan_period']}:")
    for a in s["allocation"]:
        per = f"{a['per_customer']:,.2f}" if a["per_customer"] is not None else "-"
        lines.append(
            f"    {a['tier']:<10}{a['budget']:>16,.2f}  ({per} per customer)  {a['service_level']}"
        )
    if s["allocation"]:
        ret = sum(a.get("expected_return") or 0 for a in s["allocation"])
        lines.append(f"    {s['allocation'][0].get('plan_mode')} plan, expected return {ret:,.2f}")
    if s.get("actions"):
        lines.append("  actions: " + ", ".join(f"{a['action']} {a['customers']:,}" for a in s["actions"]))
    m = s.get("tier_movements") or {}
    if m:
        lines.append(
            f"  tier changes: {m['up']:,} up, {m['down']:,} down, {m['new']:,} new; "
            f"{m['held_by_hysteresis']:,} held by hysteresis, {m['overrides']:,} overrides, "
            f"{m['high_potential']:,} high potential"
        )
    alerts = s.get("alerts") or []
    lines.append(
        "  account alerts: "
        + (", ".join(f"{a['alert_type']} {a['alerts']:,}" for a in alerts) or "none")
    )
    q = s.get("quality", {})
    lines.append(
        f"  quality: {q.get('checks', 0)} checks, {q.get('failed_critical', 0)} critical failed, "
        f"{q.get('failed_warning', 0)} warnings"
    )
    if s["exports"]:
        lines.append(f"  exports: {Path(s['exports'][0]).parent}")
    for label, key in (("report", "report"), ("data docs", "data_docs"), ("dbt docs", "dbt_docs")):
        if key in s.get("docs", {}):
            lines.append(f"  {label}: {s['docs'][key] or 'not built (see the log)'}")
    return "\n".join(lines)
