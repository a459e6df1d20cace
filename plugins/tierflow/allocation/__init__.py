"""Allocation plans: which customers get which budget, service and account-manager time.

Reads ``build_marts.customer_tiers`` for the as-of date and writes
``build_marts.allocation_plan_customer`` (one row per tiered customer) and
``build_marts.allocation_plan_tier`` (their per-tier sums, so the two always agree), in one
transaction that replaces that date's rows. It runs after dbt and before the marts'
quality gate, so the plan is checked and published with the other marts.

- :mod:`~tierflow.allocation.policy` the policy plan (default) and its rounding rules;
- :mod:`~tierflow.allocation.optimize` the optimized plan (linear program, HiGHS);
- :mod:`~tierflow.allocation.curves` the response curves both plans are scored with;
- :mod:`~tierflow.allocation.actions` primary action and reason per customer.
"""

from __future__ import annotations

import logging
from datetime import date

import psycopg

from tierflow.allocation.model import AllocationError, CustomerInput, Plan, from_hundredths
from tierflow.allocation.planner import build_plan
from tierflow.allocation.store import ensure_tables, read_customers, write_plan
from tierflow.config import TierflowConfig

__all__ = ["AllocationError", "CustomerInput", "Plan", "build_plan", "run_allocation"]

log = logging.getLogger(__name__)


def run_allocation(url: str, cfg: TierflowConfig, as_of: date) -> dict:
    """Plan for ``as_of`` and replace that date's rows of both plan tables in one transaction."""
    with psycopg.connect(url) as conn, conn.transaction():
        # one allocation per date at a time: a concurrent rerun would otherwise interleave
        conn.execute("select pg_advisory_xact_lock(hashtext('tierflow.allocate'))")
        customers = read_customers(conn, as_of, needs_profile=bool(cfg.allocation.profile_rules))
        plan = build_plan(customers, cfg, as_of)
        ensure_tables(conn)
        write_plan(conn, plan)
    summary = {
        "as_of_date": as_of.isoformat(),
        "plan_period": plan.plan_period,
        "mode": plan.mode,
        "customers": len(plan.customers),
        "budget": str(from_hundredths(plan.budget_cents)),
        "expected_return": str(from_hundredths(plan.expected_return)),
        "policy_expected_return": str(from_hundredths(plan.policy_expected_return)),
        "account_manager_hours": str(from_hundredths(sum(c.am_hundredths for c in plan.customers))),
        "customers_at_cap": sum(c.allocated_cents == c.cap_cents for c in plan.customers),
        "customers_credit_capped": sum(c.is_credit_capped for c in plan.customers),
        "value_base": plan.value_base,
        "notes": plan.notes,
    }
    log.info(
        "allocation %s (%s): %s customers, expected return %s (policy %s)",
        plan.plan_period,
        plan.mode,
        summary["customers"],
        summary["expected_return"],
        summary["policy_expected_return"],
    )
    return summary
