"""Helpers for the example DAGs (dags/tiers_published_example.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

import psycopg
from psycopg import sql

from tierflow.assets import PUBLISHED_TIERS
from tierflow.settings import load_settings


def published_tiers_event(triggering_asset_events: Mapping[Any, Sequence[Any]] | None) -> dict | None:
    """The ``extra`` of the newest PUBLISHED_TIERS event that triggered this run (its as-of
    date and row counts, see tierflow.assets), or None: a manual run has no triggering event,
    and an event from before the events carried an as-of date is no help either."""
    events = (triggering_asset_events or {}).get(PUBLISHED_TIERS) or []
    newest = max(events, key=lambda event: event.timestamp, default=None)
    if newest is None or not (newest.extra or {}).get("as_of_date"):
        return None
    return dict(newest.extra)


def tier_mix_message(as_of: date | None = None) -> str:
    """One line on a published tier mix, e.g. for a chat notification: that of ``as_of``
    (the date the triggering event names), else of the newest published date."""
    settings = load_settings()
    tiers = sql.Identifier(settings.publish_schema, "customer_tiers")
    with psycopg.connect(settings.warehouse_url()) as conn:
        rows = conn.execute(
            sql.SQL(
                "select as_of_date, value_tier, count(*) from {}"
                " where as_of_date = coalesce(%s::date, (select max(as_of_date) from {}))"
                " group by 1, 2 order by 2"
            ).format(tiers, tiers),
            (as_of,),
        ).fetchall()
    if not rows:
        return "no tiers published yet" if as_of is None else f"no tiers published for {as_of}"
    return f"tiers for {rows[0][0]}: " + ", ".join(f"{tier} {n}" for _, tier, n in rows)


def announce_published_tiers(triggering_asset_events: Mapping[Any, Sequence[Any]] | None) -> str:
    """The example consumer's message: the tier mix of the night the triggering event
    published, with the event's row count (the newest published date on a manual run)."""
    event = published_tiers_event(triggering_asset_events)
    if event is None:
        return tier_mix_message()
    message = tier_mix_message(date.fromisoformat(event["as_of_date"]))
    return f"{message} ({event['rows']} customers tiered)"
