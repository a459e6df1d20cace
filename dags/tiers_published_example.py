"""
# tiers_published_example

An example consumer: runs whenever `customer_tiering` has published new tiers and a new
allocation plan into `bi` (Airflow Assets), never after a failed night. Copy it to hook a
CRM sync, a dashboard refresh or a notification onto the nightly tiers.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task
from tierflow.assets import PUBLISHED_ALLOCATION, PUBLISHED_TIERS


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
    def announce() -> str:
        from tierflow.examples import tier_mix_message

        message = tier_mix_message()
        print(message)
        return message

    announce()


tiers_published_example()
