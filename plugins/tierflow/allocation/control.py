"""Control groups: which customers the plan holds out, so its effect can be measured.

A customer is in the control group of a plan period when the hash of the period and its
customer_id, read as a number in [0, 1), is below ``allocation.control_share``:

    u = first 8 bytes of sha256('<plan_period>:<customer_id>') / 2**64;  is_control = u < share

This is a Bernoulli draw that looks random but is fixed by its inputs: every night of the
period (and every rerun of any of them) puts the same customers in control, also when a
customer changes tier during the period, and a new period draws anew. The draw ignores the
tier, so each tier's control share is ``control_share`` in expectation (a small tier may have
none, and then its uplift has no control to compare with). Control customers get no budget,
no account-manager hours and the action ``control group``; the budget is planned over the
treated customers only and still adds up to the cent. Their account alerts go out as usual:
holding back the plan's extra effort is the experiment, ignoring a customer at risk is not.
"""

from __future__ import annotations

import hashlib

from tierflow.allocation.model import CustomerPlan, exact

CONTROL_ACTION = "control group"


def control_draw(plan_period: str, customer_id: str) -> float:
    """The customer's number u in [0, 1) for the plan period (see the module docstring)."""
    digest = hashlib.sha256(f"{plan_period}:{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def is_control(plan_period: str, customer_id: str, share: float) -> bool:
    if share <= 0:
        return False
    # compare exactly: u = n / 2**64 < share  <=>  n < share x 2**64 (share as written: 0.05 = 1/20)
    digest = hashlib.sha256(f"{plan_period}:{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") < exact(share) * 2**64


def hold_out(plan: CustomerPlan) -> None:
    """Turn a planned customer into a control customer: nothing spent, the action kept aside."""
    plan.is_control = True
    plan.assigned_action = plan.primary_action
    plan.primary_action = CONTROL_ACTION
    plan.floor_cents = plan.cap_cents = plan.allocated_cents = 0
    plan.am_requested = plan.am_hundredths = 0
    plan.is_credit_capped = False


def control_reason(plan_period: str, share: float, assigned_action: str, rule_reason: str) -> str:
    """The action_reason of a control customer: why nothing is done, and what would have been."""
    return (
        f"Control group of {plan_period} (allocation.control_share {share:g}): no budget, hours or "
        f"action this plan period, so that the plan's effect can be measured. By the rules: "
        f"{assigned_action}: {rule_reason}"
    )
