"""The allocation's inputs and outputs as plain data, and exact-arithmetic helpers.

Money is planned in integer cents and hours in integer hundredths of an hour, so that
"adds up to the budget to the cent" is an integer identity, not a float comparison.
Intermediate values (shares of a tier, water levels) are exact ``Fraction`` s.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any


class AllocationError(ValueError):
    """The allocation cannot be computed from these inputs; the message says why."""


@functools.lru_cache(maxsize=1024, typed=True)
def exact(value: float | int | Decimal | str) -> Fraction:
    """A config number as the decimal a reader sees (0.1 is 1/10, not the nearest float).

    Cached: the plan asks for the same few config numbers once per customer (a Fraction is
    immutable, so sharing one is safe), which at 100,000 customers was a million
    Decimal-to-Fraction conversions.
    """
    if isinstance(value, float):
        value = Decimal(str(value))
    return Fraction(value)


def to_hundredths(value: float | int | Decimal) -> int:
    """An amount or hours value as integer hundredths, rounding half away from zero (SQL round)."""
    return int((Decimal(str(value)) * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def from_hundredths(value: int | Fraction) -> Decimal:
    """Integer (or exact) hundredths back to a 2-decimal amount, rounding half away from zero."""
    if isinstance(value, Fraction):
        value = Decimal(value.numerator) / Decimal(value.denominator)
    return (Decimal(value) / 100).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def round_to_total(
    exact_values: Sequence[Fraction], total: int, tie_order: Callable[[int], Any]
) -> list[int]:
    """Largest-remainder rounding of exact values that add up to the integer ``total``.

    Each value is rounded down, and the cents still missing go one each to the values with
    the largest fractional parts (ties: ``tie_order``, smallest first). Because the values
    add up to ``total`` exactly, fewer cents are missing than there are values with a
    fractional part, so a value is only ever rounded up when it was not whole: an integer
    floor or cap that the exact value respected still holds after rounding.
    """
    base = [math.floor(v) for v in exact_values]
    missing = total - sum(base)
    if missing < 0 or missing > len(base):
        raise AllocationError(
            f"cannot round {len(base)} values to {total}: they add up to {sum(exact_values)}"
        )
    # the fractional parts compared as integers over one common denominator: the order of the
    # Fractions themselves, without a Fraction comparison per step of the sort (at 100,000
    # customers most of the rounding's time). p mod q is the numerator of p/q - floor(p/q).
    fractions = [Fraction(v) for v in exact_values]
    common = math.lcm(*(f.denominator for f in fractions))
    remainder = [(f.numerator % f.denominator) * (common // f.denominator) for f in fractions]
    ranked = sorted(range(len(base)), key=lambda i: (-remainder[i], tie_order(i)))
    for i in ranked[:missing]:
        base[i] += 1
    return base


def plan_period_label(as_of: date, period: str) -> str:
    """The plan period containing ``as_of``: month 'YYYY-MM', quarter 'YYYY-Qn', year 'YYYY'."""
    if period == "month":
        return f"{as_of:%Y-%m}"
    if period == "quarter":
        return f"{as_of.year}-Q{(as_of.month - 1) // 3 + 1}"
    if period == "year":
        return f"{as_of.year}"
    raise AllocationError(f"allocation.plan_period must be month, quarter or year, got {period!r}")


@dataclass(frozen=True, slots=True)  # one per customer: no __dict__ each
class CustomerInput:
    """One row of build_marts.customer_tiers for the as-of date (the columns the plan reads)."""

    customer_id: str
    value_tier: str
    value_score: Decimal
    monetary: Decimal = Decimal(0)
    recency_days: int | None = None
    lifecycle_stage: str | None = None
    credit_risk_band: str | None = None
    is_high_potential: bool = False
    high_potential_reason: str | None = None
    account_manager: str | None = None
    is_override: bool = False  # the tier was set by sales management (crm/tier_overrides)
    # the customer's profile (customer_profile via customer_tiers), for allocation.profile_rules
    purchase_rhythm: str | None = None
    usual_gap_days: Decimal | None = None
    is_overdue_by_rhythm: bool = False
    channel_preference: str | None = None
    breadth_trend: str | None = None
    loyalty_band: str | None = None
    # customer_clv's predicted 12-month CLV; None without one (never purchased, or no CLV fit)
    predicted_clv_12m: Decimal | None = None


@dataclass(slots=True)  # one per customer: no __dict__ each
class CustomerPlan:
    """The plan for one customer; amounts in cents, hours in hundredths."""

    customer: CustomerInput
    tier_rank: int
    service_level: str
    primary_action: str
    floor_cents: int
    cap_cents: int
    is_credit_capped: bool
    am_requested: int  # hundredths of an hour the tier asks for
    allocated_cents: int = 0
    am_hundredths: int = 0
    expected_return: Fraction = Fraction(0)  # cents of incremental contribution
    action_reason: str = ""
    is_control: bool = False  # held out of the plan (allocation.control_share)
    assigned_action: str = ""  # the action by the rules, also for a control customer


@dataclass
class TierPlan:
    name: str
    rank: int
    service_level: str
    budget_share: Decimal
    policy_cents: int  # budget x budget_share (rounded; the remainder to the best tier)
    tier_cents: int = 0  # policy_cents after tiers without customers passed theirs on
    customers: int = 0
    revenue_in_window: Decimal = Decimal(0)
    allocated_cents: int = 0
    am_hundredths: int = 0
    expected_return: Decimal = Decimal(0)
    control_customers: int = 0


@dataclass
class Plan:
    as_of: date
    plan_period: str
    mode: str
    budget_cents: int
    am_capacity_hundredths: int
    customers: list[CustomerPlan]
    tiers: list[TierPlan]
    policy_expected_return: Fraction = Fraction(0)
    value_base: str = "revenue"  # what scaled the response curves: revenue or clv
    notes: list[str] = field(default_factory=list)

    @property
    def expected_return(self) -> Fraction:
        return sum((c.expected_return for c in self.customers), Fraction(0))
