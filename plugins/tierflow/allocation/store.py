"""Read the tiered customers from build_marts and write the plan back, one transaction per date."""

from __future__ import annotations

import sys
from datetime import date
from decimal import Decimal

import psycopg
from psycopg import sql

from tierflow.allocation.curves import value_base_cents
from tierflow.allocation.model import AllocationError, CustomerInput, Plan, from_hundredths
from tierflow.settings import MARTS_SCHEMA

# the columns of customer_tiers the plan reads (the tiers mart's contract)
INPUT_COLUMNS = (
    "customer_id",
    "value_tier",
    "value_score",
    "monetary",
    "recency_days",
    "lifecycle_stage",
    "credit_risk_band",
    "is_high_potential",
    "high_potential_reason",
    "account_manager",
    "is_override",
    "predicted_clv_12m",
)

# text columns with a few distinct values (tiers, stages, bands, account managers)
SHARED_TEXT_COLUMNS = (
    "value_tier", "lifecycle_stage", "credit_risk_band", "high_potential_reason", "account_manager",
    "purchase_rhythm", "channel_preference", "breadth_trend", "loyalty_band",
)
READ_CHUNK_ROWS = 10_000  # customer_tiers rows per round trip of the streamed read

# the profile columns of customer_tiers (customer_profile), read when present; needed only when
# allocation.profile_rules are configured
PROFILE_COLUMNS = (
    "purchase_rhythm",
    "usual_gap_days",
    "is_overdue_by_rhythm",
    "channel_preference",
    "breadth_trend",
    "loyalty_band",
)

CUSTOMER_TABLE = "allocation_plan_customer"
TIER_TABLE = "allocation_plan_tier"

PERIOD_COMMENT = (
    "Plan period containing A (allocation.plan_period): month 'YYYY-MM', quarter 'YYYY-Qn' or year 'YYYY'."
)

CUSTOMER_COLUMNS = (
    ("customer_id", "text not null", "Customer (customer_tiers)."),
    ("as_of_date", "date not null", "As-of date A of the run that computed the plan."),
    (
        "plan_period",
        "text not null",
        PERIOD_COMMENT,
    ),
    ("value_tier", "text not null", "Value tier for A (customer_tiers)."),
    ("tier_rank", "integer not null", "Rank of the tier, 1 = best level."),
    ("service_level", "text not null", "Service level of the tier (allocation.tiers.<tier>.service_level)."),
    (
        "plan_mode",
        "text not null",
        "policy (shares per tier, split by value score) or optimized (allocation.mode).",
    ),
    (
        "primary_action",
        "text not null",
        "retain, develop, convert potential, win back, serve at low cost or credit review (rules in config).",
    ),
    ("action_reason", "text not null", "Why this action, in plain words with the numbers behind it."),
    (
        "allocated_budget",
        "numeric not null",
        "Budget for the customer in the plan period, base currency, in cents; all customers add up to "
        "the budget.",
    ),
    (
        "budget_floor",
        "numeric not null",
        "Least the customer may get: customer_floor x its tier's average budget per customer, rounded down.",
    ),
    (
        "budget_cap",
        "numeric not null",
        "Most the customer may get: customer_cap x the tier average (rounded up), or credit_risk_cap x the "
        "tier average (rounded down) for a high-credit-risk customer.",
    ),
    ("is_at_floor", "boolean not null", "allocated_budget = budget_floor."),
    (
        "is_at_cap",
        "boolean not null",
        "allocated_budget = budget_cap: money beyond it went to other customers.",
    ),
    ("is_credit_capped", "boolean not null", "The cap is the credit-risk cap (credit_risk_band high)."),
    (
        "account_manager_hours",
        "numeric not null",
        "Account-manager hours in the plan period (highest-value customers first, up to the capacity).",
    ),
    (
        "is_am_capacity_short",
        "boolean not null",
        "The customer got fewer account-manager hours than its tier's account_manager_hours: the "
        "capacity ran out (policy) or the hours earn more elsewhere (optimized).",
    ),
    ("account_manager", "text", "The customer's account manager (customer_tiers), who acts on the plan."),
    (
        "expected_return",
        "numeric not null",
        "Expected incremental contribution of the budget and hours, from the response curves "
        "(allocation.response).",
    ),
    ("roi", "numeric", "expected_return / allocated_budget; null when the budget is 0."),
    ("value_score", "numeric not null", "Value score (customer_tiers): the weight of the policy split."),
    (
        "value_base",
        "numeric not null",
        "The value that scales the customer's response curve (allocation.response.value_base): monetary "
        "(net revenue in the RFM window) or predicted_clv_12m (customer_clv), at least 0.",
    ),
    (
        "is_control",
        "boolean not null",
        "In the plan period's control group (allocation.control_share, a hash of plan_period and "
        "customer_id): no budget, hours or action (primary_action 'control group'), so that "
        "plan_performance can measure the plan's effect. Its account alerts still go out.",
    ),
    (
        "assigned_action",
        "text not null",
        "The action by the rules (actions.py); equals primary_action except for control customers, "
        "where it is the action they would have had: plan_performance compares by it.",
    ),
)

TIER_COLUMNS = (
    # the columns of the former dbt model first, in its order, so BI queries keep working
    ("value_tier", "text not null", "Value tier (level name)."),
    ("as_of_date", "date not null", "As-of date A of the run that computed the plan."),
    (
        "plan_period",
        "text not null",
        PERIOD_COMMENT,
    ),
    ("tier_rank", "integer not null", "Rank of the tier, 1 = best level."),
    ("service_level", "text not null", "Service level of the tier (allocation.tiers)."),
    ("customers", "bigint not null", "Number of customers in the tier for A (customer_tiers)."),
    (
        "revenue_in_window",
        "numeric not null",
        "Sum of the tier's customers' monetary (net revenue in the RFM window), in the base currency.",
    ),
    ("budget_share", "numeric not null", "Share of the budget given to the tier (allocation.tiers)."),
    (
        "allocated_budget",
        "numeric not null",
        "Budget of the tier = sum of its customers' allocated_budget (allocation_plan_customer); "
        "the tiers add "
        "up to the budget to the cent.",
    ),
    (
        "budget_per_customer",
        "numeric",
        "allocated_budget / customers, rounded to cents; null without customers.",
    ),
    (
        "policy_budget",
        "numeric not null",
        "budget x budget_share rounded to cents, the rounding remainder to the best tier; differs from "
        "allocated_budget when a tier could not use its money (no customers, caps) or in optimized mode.",
    ),
    ("expected_return", "numeric not null", "Sum of the tier's customers' expected_return."),
    ("account_manager_hours", "numeric not null", "Sum of the tier's customers' account-manager hours."),
    ("plan_mode", "text not null", "policy or optimized (allocation.mode)."),
    (
        "control_customers",
        "bigint not null",
        "Customers of the tier in the control group (is_control in allocation_plan_customer): counted "
        "in customers, but no budget or hours.",
    ),
)

TABLE_COMMENTS = {
    CUSTOMER_TABLE: "Allocation plan per customer and as-of date (tierflow.allocation): budget, service "
    "level, account-manager hours, primary action with its reason, expected return and ROI.",
    TIER_TABLE: "Allocation plan per value tier and as-of date: the sums of allocation_plan_customer, "
    "one row "
    "per tier level (also with no customers).",
}


def read_customers(conn: psycopg.Connection, as_of: date, needs_profile: bool = False) -> list[CustomerInput]:
    present = {
        r[0]
        for r in conn.execute(
            "select column_name from information_schema.columns where table_schema = %s and table_name = %s",
            (MARTS_SCHEMA, "customer_tiers"),
        )
    }
    if not present:
        raise AllocationError(f"{MARTS_SCHEMA}.customer_tiers does not exist: did dbt build it?")
    missing = [c for c in INPUT_COLUMNS if c not in present]
    if missing:
        raise AllocationError(
            f"{MARTS_SCHEMA}.customer_tiers lacks the column(s) the allocation reads: {missing}"
        )
    profile = [c for c in PROFILE_COLUMNS if c in present]
    if needs_profile and len(profile) < len(PROFILE_COLUMNS):
        raise AllocationError(
            f"allocation.profile_rules need the profile columns of {MARTS_SCHEMA}.customer_tiers, it lacks "
            f"{[c for c in PROFILE_COLUMNS if c not in present]}"
        )
    columns = (*INPUT_COLUMNS, *profile)
    query = sql.SQL("select {} from {} where as_of_date = %s order by customer_id").format(
        sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.Identifier(MARTS_SCHEMA, "customer_tiers"),
    )
    out = []
    # streamed, not fetched whole: the plan holds one CustomerInput per customer, not also every row
    with conn.transaction(), conn.cursor(name="tierflow_allocation_customers") as cur:
        cur.itersize = READ_CHUNK_ROWS
        cur.execute(query, (as_of,))
        for r in cur:
            out.append(_customer_input(dict(zip(columns, r, strict=True))))
    return out


def _customer_input(d: dict) -> CustomerInput:
    if d["value_score"] is None:
        raise AllocationError(
            f"{MARTS_SCHEMA}.customer_tiers: customer {d['customer_id']}: value_score is null"
        )
    d["monetary"] = Decimal(d["monetary"] or 0)
    d["value_score"] = Decimal(d["value_score"])
    d["is_high_potential"] = bool(d["is_high_potential"])
    d["is_override"] = bool(d["is_override"])
    if "is_overdue_by_rhythm" in d:
        d["is_overdue_by_rhythm"] = bool(d["is_overdue_by_rhythm"])
    if d["predicted_clv_12m"] is not None:
        d["predicted_clv_12m"] = Decimal(d["predicted_clv_12m"])
    for column in SHARED_TEXT_COLUMNS:
        if d.get(column) is not None:
            d[column] = sys.intern(d[column])  # a handful of values, one string each
    return CustomerInput(**d)


def ensure_tables(conn: psycopg.Connection) -> None:
    """Create the two plan tables (or add new columns), with table and column comments."""
    conn.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(MARTS_SCHEMA)))
    for table, columns in ((CUSTOMER_TABLE, CUSTOMER_COLUMNS), (TIER_TABLE, TIER_COLUMNS)):
        ident = sql.Identifier(MARTS_SCHEMA, table)
        conn.execute(
            sql.SQL("create table if not exists {} ({})").format(
                ident,
                sql.SQL(", ").join(
                    sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t)) for n, t, _ in columns
                ),
            )
        )
        for name, type_, comment in columns:
            conn.execute(
                sql.SQL("alter table {} add column if not exists {} {}").format(
                    ident, sql.Identifier(name), sql.SQL(type_.replace(" not null", ""))
                )
            )
            conn.execute(
                sql.SQL("comment on column {}.{} is {}").format(
                    ident, sql.Identifier(name), sql.Literal(comment)
                )
            )
        conn.execute(sql.SQL("comment on table {} is {}").format(ident, sql.Literal(TABLE_COMMENTS[table])))


def _customer_rows(plan: Plan) -> list[tuple]:
    rows = []
    for p in plan.customers:
        c = p.customer
        budget = from_hundredths(p.allocated_cents)
        ret = from_hundredths(p.expected_return)
        rows.append(
            (
                c.customer_id,
                plan.as_of,
                plan.plan_period,
                c.value_tier,
                p.tier_rank,
                p.service_level,
                plan.mode,
                p.primary_action,
                p.action_reason,
                budget,
                from_hundredths(p.floor_cents),
                from_hundredths(p.cap_cents),
                p.allocated_cents == p.floor_cents,
                p.allocated_cents == p.cap_cents,
                p.is_credit_capped,
                from_hundredths(p.am_hundredths),
                p.am_hundredths < p.am_requested,
                c.account_manager,
                ret,
                (ret / budget).quantize(Decimal("0.0001")) if budget else None,
                c.value_score,
                from_hundredths(value_base_cents(c, plan.value_base == "clv")),
                p.is_control,
                p.assigned_action,
            )
        )
    return rows


def _tier_rows(plan: Plan) -> list[tuple]:
    rows = []
    for t in plan.tiers:
        budget = from_hundredths(t.allocated_cents)
        per_customer = (budget / t.customers).quantize(Decimal("0.01")) if t.customers else None
        rows.append(
            (
                t.name,
                plan.as_of,
                plan.plan_period,
                t.rank,
                t.service_level,
                t.customers,
                t.revenue_in_window,
                t.budget_share,
                budget,
                per_customer,
                from_hundredths(t.policy_cents),
                t.expected_return,
                from_hundredths(t.am_hundredths),
                plan.mode,
                t.control_customers,
            )
        )
    return rows


def write_plan(conn: psycopg.Connection, plan: Plan) -> None:
    """Replace the as-of date's rows of both tables (call inside one transaction)."""
    for table, columns, rows in (
        (CUSTOMER_TABLE, CUSTOMER_COLUMNS, _customer_rows(plan)),
        (TIER_TABLE, TIER_COLUMNS, _tier_rows(plan)),
    ):
        ident = sql.Identifier(MARTS_SCHEMA, table)
        conn.execute(sql.SQL("delete from {} where as_of_date = %s").format(ident), (plan.as_of,))
        names = sql.SQL(", ").join(sql.Identifier(n) for n, _, _ in columns)
        with conn.cursor().copy(sql.SQL("copy {} ({}) from stdin").format(ident, names)) as copy:
            for row in rows:
                copy.write_row(row)
