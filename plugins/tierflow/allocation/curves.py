"""Diminishing-return response curves: the expected incremental contribution of a plan.

For a customer with value base ``v`` (``allocation.response.value_base``: revenue = monetary,
net revenue in the RFM window; clv = predicted_clv_12m of customer_clv; at least 0)
the config's segments ``[(u1, r1), (u2, r2), ...]`` (``allocation.response.segments``,
``u`` increasing, ``r`` not increasing) give breakpoints ``b_k = u_k x v`` (in cents, rounded
down): every cent spent up to ``b_1`` returns ``r1`` cents of contribution, every cent from
``b_1`` to ``b_2`` returns ``r2``, and so on; spend above the last breakpoint returns nothing.
One account-manager hour returns ``account_manager_hour_return x v``. All of a customer's
returns are multiplied by its action's ``action_multipliers`` entry (how strongly that kind
of customer responds).

The curve is piecewise linear and concave, which is what lets the optimizer solve the plan
exactly as a linear program; and because any plan (policy or optimized) is scored by these
same functions, the two modes' expected returns are comparable.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from fractions import Fraction

from tierflow.allocation.model import CustomerInput, exact, to_hundredths
from tierflow.config import ResponseConfig


@dataclass(frozen=True)
class Curve:
    """One customer's response curve (amounts in cents, hours in hundredths)."""

    lengths: tuple[int, ...]  # cents in each segment
    rates: tuple[Fraction, ...]  # return per cent spent in each segment (multiplier applied)
    hour_rate: Fraction  # return in cents per hundredth of an account-manager hour

    def budget_return(self, cents: int | Fraction) -> Fraction:
        left, total = Fraction(cents), Fraction(0)
        for length, rate in zip(self.lengths, self.rates, strict=True):
            used = min(left, length)
            if used <= 0:
                break
            total += used * rate
            left -= used
        return total

    def hours_return(self, hundredths: int) -> Fraction:
        return self.hour_rate * hundredths

    def expected_return(self, cents: int, hundredths: int) -> Fraction:
        return self.budget_return(cents) + self.hours_return(hundredths)


def uses_clv(customers: list[CustomerInput], response: ResponseConfig) -> bool:
    """value_base clv, on a night with predicted values (else the curves scale by revenue)."""
    return response.value_base == "clv" and any(c.predicted_clv_12m is not None for c in customers)


def value_base_cents(customer: CustomerInput, use_clv: bool = False) -> int:
    """The value the curve's breakpoints are shares of: predicted CLV (0 for a customer without
    one: it never purchased) or revenue in the window."""
    if use_clv:
        return max(to_hundredths(customer.predicted_clv_12m or 0), 0)
    return max(to_hundredths(customer.monetary), 0)


def curve_for(customer: CustomerInput, action: str, response: ResponseConfig, use_clv: bool = False) -> Curve:
    value = value_base_cents(customer, use_clv)
    shares, rates, hour_factor = _curve_terms(
        response.action_multipliers[action],
        tuple((seg.up_to_share_of_value, seg.return_per_unit) for seg in response.segments),
        response.account_manager_hour_return,
    )
    lengths, previous = [], 0
    for share in shares:
        breakpoint_ = share.numerator * value // share.denominator  # floor(share x value)
        lengths.append(breakpoint_ - previous)
        previous = breakpoint_
    # hour_return x value (in cents) per hour = that / 100 per hundredth of an hour
    return Curve(tuple(lengths), rates, hour_factor * value / 100)


@functools.lru_cache(maxsize=64)
def _curve_terms(
    multiplier: float, segments: tuple[tuple[float, float], ...], hour_return: float
) -> tuple[tuple[Fraction, ...], tuple[Fraction, ...], Fraction]:
    """The exact shares and rates of one action's curves, the same for every customer: worked
    out once per night, not once per customer."""
    m = exact(multiplier)
    shares = tuple(exact(share) for share, _ in segments)
    rates = tuple(m * exact(rate) for _, rate in segments)
    return shares, rates, m * exact(hour_return)
