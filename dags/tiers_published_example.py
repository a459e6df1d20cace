"""
# tiers_published_example

An example consumer: runs whenever `customer_tiering` has published new tiers and a new
allocation plan into `bi` (Airflow Assets), never after a failed night. Copy it to hook a
CRM sync, a dashboard refresh or a notification onto the nightly tiers.

The Asset events that trigger a run say what was published: their `extra` holds the as-of
date and the row counts, read here from `triggering_asset_events`.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task
from tierflow.assets import PUBLISHED_ALLOCATION, PUBLISHED_TIERS
from tierflow.examples import announce_published_tiers


@dag(
    dag_id="tiers_published_example",
    schedule=(PUBLISHED_TIERS & PUBLISHED_ALLOCATION),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["tierflow", "example"],
    doc_md=__doc__,
)
def tiers_published_example() -> None:
    @task
    def announce(*, triggering_asset_events=None) -> str:
        """Print and return one line on the tier mix the triggering publish event names
        (its as-of date and row count; the newest published date on a manual run)."""
        message = announce_published_tiers(triggering_asset_events)
        print(message)
        return message

    announce()


tiers_published_example()
