"""The optimized plan: maximize expected incremental contribution, solved exactly (HiGHS).

Decision variables per customer ``i`` (cents, hundredths of an hour):

    x_i        budget,              floor_i <= x_i <= cap_i          (integer)
    s_ik       spend in segment k,  0 <= s_ik <= length_ik           (the response curve)
    g_i        account-manager time, 0 <= g_i <= the tier's hours   (integer)

    maximize    sum_i sum_k rate_ik s_ik + hour_rate_i g_i
    subject to  sum_k s_ik <= x_i                    (spend above the curve earns nothing)
                sum_i x_i = budget                   (every cent is placed)
                sum_{i in tier t} x_i >= optimized_min_share_t x policy budget of t
                sum_i g_i <= account_manager_capacity_hours

Floors and caps (incl. the credit-risk cap) are the policy plan's, and the policy plan meets
every constraint, so it is a feasible point: the optimum's expected return is >= the policy
plan's. Rates fall from segment to segment (concave curves), so an optimal solution fills a
customer's segments in order and the objective equals the curve's return. The constraint
matrix is an interval (laminar) matrix with integer right-hand sides, so the LP optimum is
integral already: HiGHS solves the LP and the integrality is checked (with a MIP as the fallback).
"""

from __future__ import annotations

import logging
import math

import numpy as np
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

from tierflow.allocation.curves import Curve
from tierflow.allocation.model import AllocationError, CustomerPlan, TierPlan, exact

log = logging.getLogger(__name__)


def allocate_optimized(
    customers: list[CustomerPlan],
    curves: list[Curve],
    tiers: list[TierPlan],
    policy_tier_cents: dict[int, int],
    min_shares: dict[int, float],
    budget_cents: int,
    am_capacity: int,
) -> None:
    """Overwrite ``allocated_cents`` and ``am_hundredths`` with the optimal plan."""
    n = len(customers)
    k = len(curves[0].lengths) if curves else 0
    per = k + 2  # x, s_1..s_k, g
    nvar = n * per
    cost = np.zeros(nvar)
    lower = np.zeros(nvar)
    upper = np.zeros(nvar)
    integrality = np.zeros(nvar)
    for i, (c, curve) in enumerate(zip(customers, curves, strict=True)):
        base = i * per
        lower[base], upper[base], integrality[base] = c.floor_cents, c.cap_cents, 1
        for j, (length, rate) in enumerate(zip(curve.lengths, curve.rates, strict=True)):
            upper[base + 1 + j] = length
            cost[base + 1 + j] = -float(rate)
        g = base + 1 + k
        upper[g], integrality[g] = c.am_requested, 1
        cost[g] = -float(curve.hour_rate)

    rows, cols, vals, row_lo, row_hi = [], [], [], [], []
    tier_minimum: dict[int, int] = {}

    def add_row(entries: list[tuple[int, float]], lo: float, hi: float) -> None:
        r = len(row_lo)
        for col, val in entries:
            rows.append(r)
            cols.append(col)
            vals.append(val)
        row_lo.append(lo)
        row_hi.append(hi)

    for i in range(n):  # curve spend within the budget
        base = i * per
        add_row([(base, -1.0)] + [(base + 1 + j, 1.0) for j in range(k)], -np.inf, 0.0)
    add_row([(i * per, 1.0) for i in range(n)], budget_cents, budget_cents)
    for tier in tiers:
        members = [i for i, c in enumerate(customers) if c.tier_rank == tier.rank]
        if members:
            minimum = math.ceil(exact(min_shares[tier.rank]) * policy_tier_cents[tier.rank])
            tier_minimum[tier.rank] = minimum
            add_row([(i * per, 1.0) for i in members], minimum, np.inf)
    add_row([(i * per + 1 + k, 1.0) for i in range(n)], -np.inf, am_capacity)

    matrix = sparse.csr_array((vals, (rows, cols)), shape=(len(row_lo), nvar))
    solution = _solve(cost, lower, upper, integrality, matrix, np.array(row_lo), np.array(row_hi))
    amounts = [int(round(solution[i * per])) for i in range(n)]
    hours = [int(round(solution[i * per + 1 + k])) for i in range(n)]
    # the solver works in floating point: check the rounded plan against every constraint
    problems = []
    if sum(amounts) != budget_cents:
        problems.append(f"amounts add up to {sum(amounts)} cents, not {budget_cents}")
    if sum(hours) > am_capacity:
        problems.append(f"hours {sum(hours)} exceed the capacity {am_capacity}")
    for rank, minimum in tier_minimum.items():
        placed = sum(x for c, x in zip(customers, amounts, strict=True) if c.tier_rank == rank)
        if placed < minimum:
            problems.append(f"tier {rank} gets {placed} cents, below its minimum {minimum}")
    for c, x, g in zip(customers, amounts, hours, strict=True):
        if not (c.floor_cents <= x <= c.cap_cents) or not (0 <= g <= c.am_requested):
            problems.append(f"customer {c.customer.customer_id}: {x} cents, {g} hundredths out of bounds")
            break
    if problems:
        raise AllocationError(
            "the optimizer's plan breaks a constraint after rounding: " + "; ".join(problems)
        )
    for c, x, g in zip(customers, amounts, hours, strict=True):
        c.allocated_cents, c.am_hundredths = x, g
    log.info("optimized plan: %d customers, %d variables", n, nvar)


def _solve(
    cost: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    integrality: np.ndarray,
    matrix: sparse.csr_array,
    row_lo: np.ndarray,
    row_hi: np.ndarray,
) -> np.ndarray:
    """The LP with HiGHS; its optimal vertex is integral (see the module docstring).

    Should floating point ever give a fractional vertex, the same model is solved as a MIP
    with integer amounts and hours (zero gap), which is exact but slower (a 30,000-customer
    plan: ~10 s as an LP, ~100 s as a MIP on one core).
    """
    eq = row_lo == row_hi
    ub_rows, lb_rows = ~eq & np.isfinite(row_hi), ~eq & np.isfinite(row_lo)
    res = linprog(
        cost,
        A_ub=sparse.vstack([matrix[ub_rows], -matrix[lb_rows]]).tocsr(),
        b_ub=np.concatenate([row_hi[ub_rows], -row_lo[lb_rows]]),
        A_eq=matrix[eq],
        b_eq=row_lo[eq],
        bounds=np.column_stack([lower, upper]),
        method="highs",
    )
    if res.status != 0 or res.x is None:
        raise AllocationError(f"the optimizer found no plan: {res.message}")
    whole = integrality == 1
    if np.abs(res.x[whole] - np.round(res.x[whole])).max(initial=0) < 1e-6:
        return res.x
    log.warning("the LP optimum is not integral; solving the allocation as a MIP")
    mip = milp(
        cost,
        integrality=integrality,
        bounds=Bounds(lower, upper),
        constraints=LinearConstraint(matrix, row_lo, row_hi),
        options={"mip_rel_gap": 0.0},
    )
    if mip.status != 0 or mip.x is None:
        raise AllocationError(f"the optimizer found no plan: {mip.message}")
    return mip.x
