"""The run summary: what a data engineer reads after a run, kept in ``tierflow_meta.runs``.

The report step builds it from the published tables and the run's metadata, adds the paths of
what it wrote, saves it on the run's row and logs it; ``tierflow run`` prints it again from
there (``load_summary``, ``format_summary``).
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from tierflow.clv.store import read_fits
from tierflow.quality.completeness import degradations
from tierflow.settings import META_SCHEMA


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
