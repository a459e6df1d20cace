"""Airflow Assets for the published tables other DAGs and tools wait for.

``customer_tiering``'s ``publish`` task emits them after every successful publish; a DAG
scheduled on them runs once tonight's tiers are in ``bi`` (never on a failed night). Each
event says what was published in its ``extra`` (:func:`published_event_extra`), so a
consumer reads the night's as-of date and row counts from the event that triggered it
(``triggering_asset_events``) instead of guessing them from the tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from airflow.sdk import Asset

PUBLISHED_TIERS = Asset("tierflow://bi/customer_tiers", group="tierflow")
PUBLISHED_ALLOCATION = Asset("tierflow://bi/allocation_plan_tier", group="tierflow")
PUBLISHED_CUSTOMER_ALLOCATION = Asset("tierflow://bi/allocation_plan_customer", group="tierflow")

# the published table each Asset stands for (a per-date table: it gets rows every night)
PUBLISHED_TABLES: tuple[tuple[Asset, str], ...] = (
    (PUBLISHED_TIERS, "customer_tiers"),
    (PUBLISHED_ALLOCATION, "allocation_plan_tier"),
    (PUBLISHED_CUSTOMER_ALLOCATION, "allocation_plan_customer"),
)


def published_event_extra(as_of: date, table: str, counts: Mapping[str, int]) -> dict[str, Any]:
    """The ``extra`` of one Asset's event after a publish.

    ``as_of_date``: the as-of date published (ISO); ``rows``: the rows of ``table`` for that
    date; ``published_rows``: rows per table published in the same transaction, as the
    publish step counted them (the current-state tables only when they were replaced).
    """
    return {"as_of_date": as_of.isoformat(), "rows": counts[table], "published_rows": dict(counts)}


def annotate_published_events(outlet_events: Any, as_of: date, counts: Mapping[str, int]) -> None:
    """Set the ``extra`` of each published Asset's event on the task's ``outlet_events``
    (Airflow's accessor from the task context; the events are emitted when the task succeeds)."""
    for asset, table in PUBLISHED_TABLES:
        outlet_events[asset].extra = published_event_extra(as_of, table, counts)
