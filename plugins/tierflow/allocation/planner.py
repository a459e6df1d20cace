"""Build the allocation plan for one as-of date from the tiered customers (no database)."""

from __future__ import annotations

import logging
from datetime import date
from decimal import Decimal

from tierflow.allocation.actions import HIGH_CREDIT_RISK, action_reason, primary_action, profile_rule
from tierflow.allocation.control import control_reason, hold_out, is_control
from tierflow.allocation.curves import curve_for, uses_clv
from tierflow.allocation.model import (
    AllocationError,
    CustomerInput,
    CustomerPlan,
    Plan,
    TierPlan,
    from_hundredths,
    plan_period_label,
    to_hundredths,
)
from tierflow.allocation.optimize import allocate_optimized
from tierflow.allocation.policy import allocate_policy, customer_bounds, tier_budgets, tier_policy_budgets
from tierflow.config import TierflowConfig

log = logging.getLogger(__name__)


def build_plan(customers: list[CustomerInput], cfg: TierflowConfig, as_of: date) -> Plan:
    """The plan in ``cfg.allocation.mode``; every customer's expected return on the same curves."""
    alloc = cfg.allocation
    levels = [lv.name for lv in cfg.tiers.levels]
    rank_of = {name: i + 1 for i, name in enumerate(levels)}
    if not customers:
        raise AllocationError(f"no tiered customers for {as_of}: nothing to allocate")
    for c in customers:
        if c.value_tier not in rank_of:
            raise AllocationError(
                f"customer {c.customer_id}: value_tier {c.value_tier!r} is not a tier of "
                f"tiers.levels {levels}"
            )
        if c.value_score is None:
            raise AllocationError(f"customer {c.customer_id}: value_score is null")
    customers = sorted(customers, key=lambda c: c.customer_id)

    budget_cents = to_hundredths(alloc.budget)
    shares = [Decimal(str(alloc.tiers[name].budget_share)) for name in levels]
    tiers = [
        TierPlan(name, rank_of[name], alloc.tiers[name].service_level, share, cents)
        for name, share, cents in zip(levels, shares, tier_policy_budgets(budget_cents, shares), strict=True)
    ]
    period = plan_period_label(as_of, alloc.plan_period)
    control = {c.customer_id for c in customers if is_control(period, c.customer_id, alloc.control_share)}
    if len(control) == len(customers):
        raise AllocationError(
            f"allocation.control_share {alloc.control_share:g}: all {len(customers)} customers of {period} "
            f"drew the control group, so nobody can receive the budget"
        )
    counts = {name: 0 for name in levels}  # treated customers: the budget is planned over them
    for c in customers:
        counts[c.value_tier] += c.customer_id not in control
    for tier, cents in zip(tiers, tier_budgets(tiers, [counts[name] for name in levels]), strict=True):
        tier.tier_cents = cents

    plans: list[CustomerPlan] = []
    held_out: list[CustomerPlan] = []
    for c in customers:
        rank, policy = rank_of[c.value_tier], alloc.tiers[c.value_tier]
        if c.customer_id in control:
            action = primary_action(c, rank, len(levels), alloc)
            held = CustomerPlan(c, rank, policy.service_level, action, 0, 0, False, 0)
            hold_out(held)
            held_out.append(held)
            continue
        floor_, cap, credit_capped = customer_bounds(
            tiers[rank - 1].tier_cents,
            counts[c.value_tier],
            policy.customer_floor,
            policy.customer_cap,
            c.credit_risk_band == HIGH_CREDIT_RISK,
            alloc.credit_risk_cap,
        )
        plans.append(
            CustomerPlan(
                customer=c,
                tier_rank=rank,
                service_level=policy.service_level,
                primary_action=primary_action(c, rank, len(levels), alloc),
                floor_cents=floor_,
                cap_cents=cap,
                is_credit_capped=credit_capped,
                am_requested=to_hundredths(policy.account_manager_hours),
            )
        )

    allocate_policy(plans, tiers, budget_cents, alloc)
    use_clv = uses_clv(customers, alloc.response)
    curves = [curve_for(p.customer, p.primary_action, alloc.response, use_clv) for p in plans]
    for p, curve in zip(plans, curves, strict=True):
        p.expected_return = curve.expected_return(p.allocated_cents, p.am_hundredths)
    policy_return = sum(p.expected_return for p in plans)
    am_capacity = to_hundredths(alloc.account_manager_capacity_hours)
    plan = Plan(
        as_of,
        period,
        alloc.mode,
        budget_cents,
        am_capacity,
        plans,
        tiers,
        policy_expected_return=policy_return,
        value_base="clv" if use_clv else "revenue",
    )
    if alloc.response.value_base == "clv" and not use_clv:
        plan.notes.append(
            "allocation.response.value_base is clv, but the night has no predicted value "
            "(no CLV fit in use): the response curves scale by revenue"
        )

    if alloc.mode == "optimized":
        policy_amounts = [(p.allocated_cents, p.am_hundredths) for p in plans]
        policy_tier_cents = {
            t.rank: sum(p.allocated_cents for p in plans if p.tier_rank == t.rank) for t in tiers
        }
        min_shares = {rank_of[name]: alloc.tiers[name].optimized_min_share for name in levels}
        allocate_optimized(plans, curves, tiers, policy_tier_cents, min_shares, budget_cents, am_capacity)
        for p, curve in zip(plans, curves, strict=True):
            p.expected_return = curve.expected_return(p.allocated_cents, p.am_hundredths)
        if plan.expected_return < policy_return:
            # cannot happen for an exact optimum (the policy plan is feasible); guard the promise anyway
            log.warning(
                "optimized plan scored below the policy plan (%s < %s): keeping the policy plan",
                plan.expected_return,
                policy_return,
            )
            plan.notes.append("the optimizer's plan scored below the policy plan; the policy plan was kept")
            for p, (cents, hours), curve in zip(plans, policy_amounts, curves, strict=True):
                p.allocated_cents, p.am_hundredths = cents, hours
                p.expected_return = curve.expected_return(cents, hours)

    for p in plans:
        p.assigned_action = p.primary_action
    # the control customers join the plan only now: nothing was planned or optimized for them
    plans.extend(held_out)
    plans.sort(key=lambda p: p.customer.customer_id)
    plan.customers = plans
    for p in plans:
        better = levels[p.tier_rank - 2] if p.tier_rank > 1 else None
        p.action_reason = action_reason(
            p.assigned_action, p.customer, p.service_level, better, p.cap_cents, alloc.credit_risk_cap,
            profile_rule(p.customer, alloc),
        )
        if p.is_control:
            p.action_reason = control_reason(period, alloc.control_share, p.assigned_action, p.action_reason)
    for t in tiers:
        members = [p for p in plans if p.tier_rank == t.rank]
        t.customers = len(members)
        t.control_customers = sum(p.is_control for p in members)
        t.revenue_in_window = sum((p.customer.monetary for p in members), Decimal(0))
        t.allocated_cents = sum(p.allocated_cents for p in members)
        t.am_hundredths = sum(p.am_hundredths for p in members)
        t.expected_return = sum((from_hundredths(p.expected_return) for p in members), Decimal(0))
    return plan
