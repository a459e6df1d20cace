"""The policy plan: budget shares per tier, split inside a tier by value score.

Steps, all in integer cents (hours in hundredths):

1. Tier budgets. Each tier gets ``round(budget x budget_share, 2)`` (half away from zero); the
   rounding remainder (+ or - a few cents) goes to the best tier, so the tiers add up to the
   budget exactly. (These are the rules the former dbt model allocation_plan_tier used.)
2. A tier without customers passes its money to the tiers with customers, in proportion to
   their budget_share (largest remainder, ties to the better tier): the tier budget.
3. Per-customer floor and cap, from the tier's average ``avg = tier budget / customers``:
   ``floor = customer_floor x avg`` rounded down, ``cap = customer_cap x avg`` rounded up; a
   customer with credit_risk_band 'high' is capped at ``credit_risk_cap x avg`` rounded down
   (its floor is lowered to that cap if needed). With ``customer_floor <= 1 <= customer_cap``
   the tier budget always fits between the tier's sum of floors and its sum of caps, unless
   credit-risk caps bind: then the money the tier cannot use goes to the other tiers that can
   still take money, in proportion to budget_share again, until everything is placed. If every
   customer is at its cap, the plan fails and says so.
4. Inside a tier: ``amount_i = clip(level x value_score_i, floor_i, cap_i)`` with the one water
   level that makes the tier's amounts add up to the tier's budget (exact arithmetic), so money
   a capped customer cannot take goes to the other customers of the tier in proportion to
   their value scores. Customers with value score 0 get their floor, unless every scored
   customer is at its cap: then the rest is split equally among them. Rounded to cents by
   largest remainder (ties: higher value score, then customer_id), which keeps floors and caps.
5. Account-manager hours: customers in value order (best tier, then value score, then
   customer_id) each get their tier's account_manager_hours, until the capacity is used up;
   the customer at the boundary gets what is left.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

import numpy as np

from tierflow.allocation.model import (
    AllocationError,
    CustomerPlan,
    TierPlan,
    exact,
    round_to_total,
    to_hundredths,
)
from tierflow.config import AllocationConfig


def tier_policy_budgets(budget_cents: int, shares: Sequence[Decimal]) -> list[int]:
    """Step 1: round each tier's share to cents, the remainder to the best (first) tier."""
    budgets = [
        int((budget_cents * Decimal(str(share))).quantize(Decimal(1), rounding=ROUND_HALF_UP))
        for share in shares
    ]
    budgets[0] += budget_cents - sum(budgets)
    if budgets[0] < 0:
        raise AllocationError(f"allocation.budget: too small to split by the tiers' budget_share ({budgets})")
    return budgets


def customer_bounds(
    tier_budget_cents: int,
    customers: int,
    customer_floor: float,
    customer_cap: float,
    high_credit_risk: bool,
    credit_risk_cap: float,
) -> tuple[int, int, bool]:
    """Step 2: (floor, cap, is_credit_capped) in cents for one customer of a tier."""
    avg = Fraction(tier_budget_cents, customers)
    floor_ = math.floor(exact(customer_floor) * avg)
    cap = math.ceil(exact(customer_cap) * avg)
    credit_capped = False
    if high_credit_risk:
        risk_cap = math.floor(exact(credit_risk_cap) * avg)
        if risk_cap < cap:
            cap, credit_capped = risk_cap, True
        floor_ = min(floor_, cap)
    return floor_, cap, credit_capped


def _spread(amount: int, receivers: list[int], weights: list[Fraction]) -> list[int]:
    total = sum(weights)
    return round_to_total([amount * w / total for w in weights], amount, lambda i: receivers[i])


def tier_targets(policy: list[int], capacity: list[int | float | None], shares: list[Fraction]) -> list[int]:
    """Steps 2 and 3: each tier's budget after the money it cannot use moved on.

    ``capacity`` is the sum of the tier's caps, or None for a tier without customers.
    """
    target = [p if cap is not None else 0 for p, cap in zip(policy, capacity, strict=True)]
    pool = sum(p for p, cap in zip(policy, capacity, strict=True) if cap is None)
    full: set[int] = {i for i, cap in enumerate(capacity) if cap is None}
    while True:
        for i, cap in enumerate(capacity):
            if cap is not None and target[i] >= cap:
                pool += target[i] - cap
                target[i] = cap
                full.add(i)
        if pool == 0:
            return target
        receivers = [i for i in range(len(policy)) if i not in full]
        if not receivers:
            raise AllocationError(
                f"cannot place {pool / 100:,.2f} of the budget: every customer is at its cap "
                f"(allocation.tiers.*.customer_cap, allocation.credit_risk_cap)"
            )
        weights = [shares[i] for i in receivers]
        if sum(weights) == 0:  # only tiers with budget_share 0 are left: equally
            weights = [Fraction(1)] * len(receivers)
        for i, extra in zip(receivers, _spread(pool, receivers, weights), strict=True):
            target[i] += extra
        pool = 0


def tier_budgets(tiers: list[TierPlan], counts: list[int]) -> list[int]:
    """Step 2: the policy budgets with the money of tiers without customers moved on."""
    capacity = [math.inf if n else None for n in counts]
    return tier_targets([t.policy_cents for t in tiers], capacity, [exact(t.budget_share) for t in tiers])


def water_fill(total: int, lo: list[int], hi: list[int], weights: list[Fraction]) -> list[Fraction]:
    """Step 4: ``x_i = clip(level x w_i, lo_i, hi_i)`` adding up to ``total`` (exact).

    Needs ``sum(lo) <= total <= sum(hi)``. The sum is piecewise linear and non-decreasing in
    the level, with kinks at ``lo_i / w_i`` and ``hi_i / w_i``: find the two kinks around
    ``total`` by bisection and interpolate between them.
    """
    n = len(lo)
    if not (sum(lo) <= total <= sum(hi)):
        raise AllocationError(f"cannot split {total} cents within floors {sum(lo)} and caps {sum(hi)}")
    scored = [i for i in range(n) if weights[i] > 0]
    unscored = [i for i in range(n) if weights[i] <= 0]
    most_scored = sum(hi[i] for i in scored) + sum(lo[i] for i in unscored)
    x = [Fraction(v) for v in lo]
    if total >= most_scored:
        # every scored customer at its cap; the rest is split equally among the unscored ones
        for i in scored:
            x[i] = Fraction(hi[i])
        rest = (
            water_fill(
                total - sum(hi[i] for i in scored),
                [lo[i] for i in unscored],
                [hi[i] for i in unscored],
                [Fraction(1)] * len(unscored),
            )
            if unscored
            else []
        )
        for i, v in zip(unscored, rest, strict=True):
            x[i] = v
        return x
    target = total - sum(lo[i] for i in unscored)
    w = [weights[i] for i in scored]
    lo_s, hi_s = [lo[i] for i in scored], [hi[i] for i in scored]
    level = _level_fast(target, lo_s, hi_s, w)
    if level is None:
        level = _level_exact(target, lo_s, hi_s, w)
    for i, wi, a, b in zip(scored, w, lo_s, hi_s, strict=True):
        x[i] = min(max(level * wi, Fraction(a)), Fraction(b))
    return x


def _filled(level: Fraction, lo: list[int], hi: list[int], w: list[Fraction]) -> Fraction:
    return sum((min(max(level * wi, a), b) for wi, a, b in zip(w, lo, hi, strict=True)), Fraction(0))


def _level_exact(target: int, lo: list[int], hi: list[int], w: list[Fraction]) -> Fraction:
    """The water level by bisection over the exact kinks (slow for large tiers, always right)."""
    kinks = sorted(
        {Fraction(a) / wi for a, wi in zip(lo, w, strict=True)}
        | {Fraction(b) / wi for b, wi in zip(hi, w, strict=True)}
    )
    # _filled(kinks[0]) = sum(lo) <= target <= sum(hi) = _filled(kinks[-1])
    low, high = 0, len(kinks) - 1
    while high - low > 1:
        mid = (low + high) // 2
        if _filled(kinks[mid], lo, hi, w) <= target:
            low = mid
        else:
            high = mid
    f_low, f_high = _filled(kinks[low], lo, hi, w), _filled(kinks[high], lo, hi, w)
    if f_high == f_low:
        return kinks[low]
    return kinks[low] + (target - f_low) * (kinks[high] - kinks[low]) / (f_high - f_low)


def _level_fast(target: int, lo: list[int], hi: list[int], w: list[Fraction]) -> Fraction | None:
    """The water level found in floating point, then made exact and checked exactly.

    Floats tell which customers sit at their floor, at their cap or in between; the exact
    level follows from that split, and is accepted only if every customer agrees with it
    exactly. Otherwise (a customer right at a kink) None: the caller bisects exactly.
    """
    wf = np.array([float(v) for v in w])
    lof, hif = np.array(lo, dtype=float), np.array(hi, dtype=float)
    a, b = float((lof / wf).min()), float((hif / wf).max())
    for _ in range(200):
        mid = (a + b) / 2
        if np.clip(mid * wf, lof, hif).sum() < target:
            a = mid
        else:
            b = mid
    at_lo, at_hi = b * wf <= lof, b * wf >= hif
    free = ~(at_lo | at_hi)
    fixed = sum(lo[i] for i in np.flatnonzero(at_lo)) + sum(hi[i] for i in np.flatnonzero(at_hi))
    free_w = sum((w[i] for i in np.flatnonzero(free)), Fraction(0))
    if free_w == 0:
        return None
    level = (target - fixed) / free_w
    for i in range(len(w)):
        v = level * w[i]
        if (at_lo[i] and v > lo[i]) or (at_hi[i] and v < hi[i]) or (free[i] and not lo[i] <= v <= hi[i]):
            return None
    return level


def value_order(c: CustomerPlan) -> tuple:
    """Best first: tier rank, then value score (higher first), then customer_id."""
    return (c.tier_rank, -c.customer.value_score, c.customer.customer_id)


def split_tier(total: int, members: list[CustomerPlan]) -> list[int]:
    """Step 4 for one tier: exact water-filling, then largest-remainder cents."""
    exact_amounts = water_fill(
        total,
        [c.floor_cents for c in members],
        [c.cap_cents for c in members],
        [Fraction(c.customer.value_score) for c in members],
    )
    return round_to_total(exact_amounts, total, lambda i: value_order(members[i]))


def assign_hours(customers: list[CustomerPlan], capacity: int) -> None:
    """Step 5: account-manager hours to the highest-value customers, up to the capacity."""
    left = capacity
    for c in sorted(customers, key=value_order):
        c.am_hundredths = min(c.am_requested, left)
        left -= c.am_hundredths


def allocate_policy(
    customers: list[CustomerPlan], tiers: list[TierPlan], budget_cents: int, cfg: AllocationConfig
) -> None:
    """Fill in ``allocated_cents`` and ``am_hundredths`` of every customer (steps 3 to 5).

    The customers' floors and caps were already set by ``build_plan`` from :func:`tier_budgets`.
    """
    by_tier: dict[int, list[CustomerPlan]] = {t.rank: [] for t in tiers}
    for c in customers:
        by_tier[c.tier_rank].append(c)
    capacity = [sum(c.cap_cents for c in by_tier[t.rank]) if by_tier[t.rank] else None for t in tiers]
    targets = tier_targets([t.tier_cents for t in tiers], capacity, [exact(t.budget_share) for t in tiers])
    for tier, target in zip(tiers, targets, strict=True):
        members = by_tier[tier.rank]
        if not members:
            continue
        for c, cents in zip(members, split_tier(target, members), strict=True):
            c.allocated_cents = cents
    assign_hours(customers, to_hundredths(cfg.account_manager_capacity_hours))
