"""Airflow Assets for the published tables other DAGs and tools wait for.

``customer_tiering``'s ``publish`` task emits them after every successful publish; a DAG
scheduled on them runs once tonight's tiers are in ``bi`` (never on a failed night).
"""

from __future__ import annotations

from airflow.sdk import Asset

PUBLISHED_TIERS = Asset("tierflow://bi/customer_tiers", group="tierflow")
PUBLISHED_ALLOCATION = Asset("tierflow://bi/allocation_plan_tier", group="tierflow")
PUBLISHED_CUSTOMER_ALLOCATION = Asset("tierflow://bi/allocation_plan_customer", group="tierflow")
