"""Helpers for the example DAGs."""

from __future__ import annotations

import psycopg
from psycopg import sql

from tierflow.settings import load_settings


def tier_mix_message() -> str:
    """One line on the newest published tier mix, e.g. for a chat notification."""
    settings = load_settings()
    with psycopg.connect(settings.warehouse_url()) as conn:
        rows = conn.execute(
            sql.SQL(
                "select as_of_date, value_tier, count(*) from {} "
                "where as_of_date = (select max(as_of_date) from {}) group by 1, 2 order by 2"
            ).format(
                sql.Identifier(settings.publish_schema, "customer_tiers"),
                sql.Identifier(settings.publish_schema, "customer_tiers"),
            )
        ).fetchall()
    if not rows:
        return "no tiers published yet"
    return f"tiers for {rows[0][0]}: " + ", ".join(f"{tier} {n}" for _, tier, n in rows)
