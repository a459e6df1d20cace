"""Each customer's primary action and the sentence a sales team can read out.

The first rule that applies wins (config/tierflow.yml documents the same list):

1. credit review      credit_risk_band is 'high': check terms and overdue invoices before
                      spending; the budget is capped (allocation.credit_risk_cap).
   profile rules      allocation.profile_rules, in order: the first rule whose conditions on
                      the customer's profile (customer_profile: purchase rhythm, overdue by
                      its own rhythm, channel, category breadth, loyalty; and tiers) all hold
                      gives its action, e.g. a periodic buyer overdue by its rhythm -> win back.
2. win back           lifecycle_stage in allocation.win_back_stages (declining, churned) and
                      the customer is not in the lowest tier: worth a win-back effort.
3. convert potential  is_high_potential and not in the best tier: the "hidden gems".
4. retain             best tier.
5. develop            a middle tier.
6. serve at low cost  lowest tier.
"""

from __future__ import annotations

from tierflow.allocation.model import CustomerInput, from_hundredths
from tierflow.config import AllocationConfig, ProfileRule

HIGH_CREDIT_RISK = "high"

# ProfileRule condition -> the CustomerInput field it checks (a list: the value must be in it)
_PROFILE_CONDITIONS = {
    "purchase_rhythm": "purchase_rhythm",
    "channel_preference": "channel_preference",
    "breadth_trend": "breadth_trend",
    "loyalty_band": "loyalty_band",
    "tiers": "value_tier",
}


def profile_rule(customer: CustomerInput, cfg: AllocationConfig) -> ProfileRule | None:
    """The first of allocation.profile_rules whose every condition holds for the customer."""
    for rule in cfg.profile_rules:
        if rule.overdue_by_rhythm is not None and rule.overdue_by_rhythm != customer.is_overdue_by_rhythm:
            continue
        if all(getattr(customer, field) in allowed
               for key, field in _PROFILE_CONDITIONS.items()
               if (allowed := getattr(rule, key)) is not None):
            return rule
    return None


def primary_action(customer: CustomerInput, tier_rank: int, tier_count: int, cfg: AllocationConfig) -> str:
    if customer.credit_risk_band == HIGH_CREDIT_RISK:
        return "credit review"
    rule = profile_rule(customer, cfg)
    if rule is not None:
        return rule.action
    if customer.lifecycle_stage in cfg.win_back_stages and tier_rank < tier_count:
        return "win back"
    if customer.is_high_potential and tier_rank > 1:
        return "convert potential"
    if tier_rank == 1:
        return "retain"
    if tier_rank < tier_count:
        return "develop"
    return "serve at low cost"


def _money(cents: int) -> str:
    return f"{from_hundredths(cents):,.2f}"


def action_reason(
    action: str,
    customer: CustomerInput,
    service_level: str,
    better_tier: str | None,
    cap_cents: int,
    credit_risk_cap: float,
    rule: ProfileRule | None = None,
) -> str:
    """Plain words with the numbers behind the action (and whether the tier is a manual one);
    ``rule``: the profile rule that gave the action, if one did."""
    if rule is not None and rule.action == action and action != "credit review":
        reason = _profile_reason(rule, customer, service_level)
    else:
        reason = _reason(action, customer, service_level, better_tier, cap_cents, credit_risk_cap)
    if customer.is_override:
        return f"Tier {customer.value_tier} set by sales management (override). {reason}"
    return reason


def _reason(
    action: str,
    customer: CustomerInput,
    service_level: str,
    better_tier: str | None,
    cap_cents: int,
    credit_risk_cap: float,
) -> str:
    c = customer
    score = f"value score {float(c.value_score):.2f}"
    revenue = f"revenue {c.monetary:,.2f} in the window"
    if action == "credit review":
        return (
            f"High credit risk: review credit terms and overdue invoices before spending; "
            f"budget capped at {_money(cap_cents)} ({credit_risk_cap:g} x the {c.value_tier} tier's average)."
        )
    if action == "win back":
        last = f"last order {c.recency_days} days ago" if c.recency_days is not None else "no order yet"
        return (
            f"{(c.lifecycle_stage or '').capitalize()} {c.value_tier}-tier customer ({last}, {revenue}): "
            f"win back before the value is lost."
        )
    if action == "convert potential":
        why = c.high_potential_reason or "flagged as high potential"
        return f"High potential in the {c.value_tier} tier ({score}): {why}; convert with targeted offers."
    if action == "retain":
        return f"Top tier ({c.value_tier}, {score}, {revenue}): retain with {service_level}."
    if action == "develop":
        return f"{c.value_tier.capitalize()} tier ({score}, {revenue}): develop toward {better_tier}."
    if c.lifecycle_stage == "never_purchased" or c.monetary <= 0:
        tier = c.value_tier.capitalize()
        return f"{tier} tier, no revenue in the window: serve at low cost ({service_level})."
    return f"{c.value_tier.capitalize()} tier ({score}, {revenue}): serve at low cost ({service_level})."


def _profile_reason(rule: ProfileRule, customer: CustomerInput, service_level: str) -> str:
    c = customer
    facts = []
    if c.purchase_rhythm is not None:
        rhythm = f"{c.purchase_rhythm.replace('_', ' ')} buyer"
        if c.usual_gap_days is not None:
            rhythm += f", usual gap {float(c.usual_gap_days):g} days"
        if c.recency_days is not None:
            rhythm += f", last order {c.recency_days} days ago"
        if c.is_overdue_by_rhythm:
            rhythm += " (overdue by its own rhythm)"
        facts.append(rhythm)
    for label, value in (("channel", c.channel_preference), ("category breadth", c.breadth_trend),
                         ("loyalty", c.loyalty_band)):
        if value is not None:
            facts.append(f"{label} {value.replace('_', ' ')}")
    return (
        f"Profile rule '{rule.name}' ({'; '.join(facts)}), {c.value_tier} tier: "
        f"{rule.action} ({service_level})."
    )
