"""The one business config file (``config/tierflow.yml``), validated on load.

A bad value fails fast with a message that names the key and what is allowed, before any
data is touched. The validated config is also what dbt sees, as vars (:func:`dbt_vars`).
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tierflow.extracts import BY_PATH

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class ConfigError(ValueError):
    """The business config file is missing or invalid; the message names the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IngestConfig(_Strict):
    encodings: dict[str, str] = Field(default_factory=dict)
    max_future_days: int = Field(1, ge=0)
    missing_required_entity: Literal["fail", "warn", "wait"] = "warn"
    expected_daily: list[str] = Field(default_factory=lambda: ["erp/orders", "erp/order_lines"])
    # missing_required_entity: wait -- how long to wait for the as-of date folder of each
    # expected entity, and how often to look (fractions allowed: 0.5 minutes, 0.2 seconds)
    wait_timeout_minutes: float = Field(60.0, gt=0)
    wait_poll_seconds: float = Field(30.0, gt=0)
    # CSV files at least this big take the binary path (vectorised checks, binary COPY);
    # smaller ones row by row in Python, which costs less for a file of a few dozen rows.
    bulk_min_bytes: int = Field(8_192, ge=0)
    # A path under the landing root that is not loaded but may hold data (an unknown system or
    # entity folder, a date folder that is not a date, a directory where a file was expected,
    # a file in a landing format outside a date folder, a file of another type in a date
    # folder): fail the night (data is missing), or warn and load the rest. Either way it is
    # reported in the run summary, the report and tierflow_meta.ignored_paths.
    on_unknown_path: Literal["fail", "warn"] = "fail"

    @model_validator(mode="after")
    def _known_entities(self) -> IngestConfig:
        unknown = [e for e in self.expected_daily if e not in BY_PATH]
        if unknown:
            raise ValueError(f"expected_daily: unknown entities {unknown}; known: {sorted(BY_PATH)}")
        return self

    @model_validator(mode="after")
    def _known_encodings(self) -> IngestConfig:
        import codecs

        for system, enc in self.encodings.items():
            try:
                codecs.lookup(enc)
            except LookupError as exc:
                raise ValueError(f"encodings.{system}: unknown encoding {enc!r}") from exc
        return self


class Segment(_Strict):
    name: str = Field(min_length=1)
    r: tuple[int, int]
    f: tuple[int, int]


class RfmConfig(_Strict):
    window_days: int = Field(365, gt=0)
    segments: list[Segment]
    no_purchase_segment: str = "Lost"

    @model_validator(mode="after")
    def _grid_covered_once(self) -> RfmConfig:
        cells: dict[tuple[int, int], str] = {}
        for seg in self.segments:
            for lo_hi, axis in ((seg.r, "r"), (seg.f, "f")):
                lo, hi = lo_hi
                if not (1 <= lo <= hi <= 5):
                    raise ValueError(
                        f"segments[{seg.name}].{axis}: need [low, high] with 1 <= low <= high <= 5, "
                        f"got {list(lo_hi)}"
                    )
            for r in range(seg.r[0], seg.r[1] + 1):
                for f in range(seg.f[0], seg.f[1] + 1):
                    if (r, f) in cells:
                        raise ValueError(
                            f"segments: cell r{r} f{f} is covered by both "
                            f"{cells[(r, f)]!r} and {seg.name!r}"
                        )
                    cells[(r, f)] = seg.name
        missing = [f"r{r} f{f}" for r in range(1, 6) for f in range(1, 6) if (r, f) not in cells]
        if missing:
            raise ValueError(f"segments: cells not covered by any segment: {', '.join(missing)}")
        return self


class TierLevel(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    cumulative_share: float = Field(gt=0, le=1)


class TierWeights(_Strict):
    purchasing_power: float = Field(ge=0)
    frequency: float = Field(ge=0)
    profit: float = Field(ge=0)
    recency: float = Field(ge=0)
    # predicted 12-month CLV (customer_clv). It counts only on a night with an accepted CLV fit;
    # without one the component and its weight drop out and the other weights decide alone.
    predicted_value: float = Field(0.2, ge=0)

    @model_validator(mode="after")
    def _positive_total(self) -> TierWeights:
        # without a CLV fit the score is the other four components: they must weigh something
        if self.purchasing_power + self.frequency + self.profit + self.recency <= 0:
            raise ValueError(
                "weights: at least one of purchasing_power, frequency, profit, recency must be > 0"
            )
        return self


class TierPotential(_Strict):
    """High potential: below the top tier, growing fast, and among the fastest growers.

    Growth = customer_lifecycle.revenue_growth_rate (revenue of the last lifecycle.trend_days
    against the trend_days before). Predicted lifetime value joins here when it exists.
    """

    # the customer's growth must rank in this top share of all customers (0.2 = top 20%)
    top_share: float = Field(0.2, gt=0, le=1)
    # and be at least this relative growth (0.2 = +20%)
    min_growth: float = Field(0.2, ge=0)
    # or: its predicted 12-month CLV ranks in the top_share of all customers (on a night with an
    # accepted CLV fit; customer_clv.predicted_clv_12m)
    use_predicted_value: bool = True


class TierConfig(_Strict):
    method: Literal["percentile", "pareto"] = "percentile"
    levels: list[TierLevel] = Field(min_length=2)
    weights: TierWeights
    # Hysteresis, in value-score units (0 disables): a customer whose score tier differs from
    # its previous computed tier moves only when its score passes the cutoff between the two
    # tiers by this margin. Cutoff of a tier = the midpoint between the lowest value score that
    # reaches that tier (or a better one) on the as-of date and the highest score below it.
    hysteresis_margin: float = Field(0.02, ge=0, lt=1)
    potential: TierPotential = Field(default_factory=TierPotential)

    @model_validator(mode="after")
    def _levels_increase_to_one(self) -> TierConfig:
        shares = [lv.cumulative_share for lv in self.levels]
        if any(b <= a for a, b in zip(shares, shares[1:], strict=False)):
            raise ValueError(f"levels: cumulative_share must increase from best to worst tier, got {shares}")
        if shares[-1] != 1:
            raise ValueError(
                f"levels: the last (worst) tier must have cumulative_share 1.0, got {shares[-1]}"
            )
        names = [lv.name for lv in self.levels]
        if len(set(names)) != len(names):
            raise ValueError(f"levels: tier names must be unique, got {names}")
        return self


# The primary actions a customer can get, in the order their rules are checked
# (tierflow.allocation.actions documents each rule).
ACTIONS = ("credit review", "win back", "convert potential", "retain", "develop", "serve at low cost")
LIFECYCLE_STAGES = ("new", "growing", "mature", "declining", "churned", "never_purchased")


# ---- customer typing (customer_profile) and the sales team's view (issue 17) ----------------

PURCHASE_RHYTHMS = ("periodic", "concentrated", "irregular", "too_few_orders")
CHANNEL_PREFERENCES = ("online", "offline", "mixed", "unknown", "no_orders")
BREADTH_TRENDS = ("rising", "stable", "narrowing", "new", "no_orders")
LOYALTY_BANDS = ("loyal", "repeat", "one_time", "never_purchased")


class RhythmRules(_Strict):
    """Purchase rhythm from the gaps between the customer's purchase days in the RFM window."""

    # fewer purchase days than this in the window: too_few_orders (two gaps at least)
    min_purchase_days: int = Field(3, ge=3)
    # the busiest calendar month holds at least this share of the window's revenue: concentrated
    concentrated_min_month_share: float = Field(0.6, gt=0, le=1)
    # otherwise: coefficient of variation of the gaps (population sd / mean) at most this: periodic,
    # else irregular
    periodic_max_cv: float = Field(0.35, gt=0)
    # a periodic buyer is overdue when its days since the last purchase exceed this x its usual gap
    overdue_factor: float = Field(1.5, ge=1)


class ChannelRules(_Strict):
    """Channel preference from the revenue share by order channel (erp/orders.channel) in the window."""

    online_channels: list[str] = Field(default_factory=lambda: ["online"], min_length=1)
    offline_channels: list[str] = Field(default_factory=lambda: ["offline", "distributor"], min_length=1)
    # online (offline) when that share of the revenue of known channel reaches this; else mixed
    dominant_share: float = Field(0.8, gt=0.5, le=1)

    @model_validator(mode="after")
    def _lowercase_and_disjoint(self) -> ChannelRules:
        for key in ("online_channels", "offline_channels"):
            bad = [c for c in getattr(self, key) if c != c.strip().lower() or not c]
            if bad:
                raise ValueError(f"{key}: channel names are compared lower-case and trimmed, got {bad}")
        both = sorted(set(self.online_channels) & set(self.offline_channels))
        if both:
            raise ValueError(f"online_channels and offline_channels overlap: {both}")
        return self


class CategoryRules(_Strict):
    """Category breadth: product categories bought in the window against the window before."""

    # breadth is rising (narrowing) when the window has at least this many categories more (fewer)
    min_change: int = Field(1, ge=1)


class LoyaltyRules(_Strict):
    """Loyalty from all purchase days up to A: repeat-purchase rate and tenure."""

    # loyal: repeat purchase days / purchase days at least this and tenure at least min_tenure_days
    loyal_min_repeat_rate: float = Field(0.75, gt=0, lt=1)
    loyal_min_tenure_days: int = Field(365, ge=0)


class ProfileConfig(_Strict):
    """Customer typing beside the grading (customer_profile; docs/typing.md)."""

    rhythm: RhythmRules = Field(default_factory=RhythmRules)
    channel: ChannelRules = Field(default_factory=ChannelRules)
    categories: CategoryRules = Field(default_factory=CategoryRules)
    loyalty: LoyaltyRules = Field(default_factory=LoyaltyRules)


class PotentialWeights(_Strict):
    """Weights of region_potential.potential_index (each component is 0..1)."""

    headroom: float = Field(0.35, ge=0)  # 1 - penetration
    wallet: float = Field(0.25, ge=0)  # revenue per active customer against the company median
    high_tier_share: float = Field(0.2, ge=0)
    growth: float = Field(0.2, ge=0)

    @model_validator(mode="after")
    def _sum_to_one(self) -> PotentialWeights:
        total = self.headroom + self.wallet + self.high_tier_share + self.growth
        if abs(total - 1) > 1e-9:
            raise ValueError(f"weights: must add up to 1.0, they add up to {total:g}")
        return self


class RegionPotentialConfig(_Strict):
    """region_potential: a documented index ranking regions for sales coverage."""

    # penetration, revenue per active customer and growth are measured over the last window_months
    # months up to the month's end (growth: against the window_months months before)
    window_months: int = Field(3, ge=1, le=12)
    # the wallet component is min(revenue per active / company median, wallet_cap) / wallet_cap
    wallet_cap: float = Field(2.0, gt=0)
    weights: PotentialWeights = Field(default_factory=PotentialWeights)


class ProfileRule(_Strict):
    """A primary-action rule on the customer's profile (allocation.profile_rules).

    Checked in order after 'credit review' and before the built-in rules; the first rule whose
    every condition holds gives the action. A condition left out is not checked.
    """

    name: str = Field(min_length=1)
    action: str
    purchase_rhythm: list[str] | None = Field(None, min_length=1)
    overdue_by_rhythm: bool | None = None
    channel_preference: list[str] | None = Field(None, min_length=1)
    breadth_trend: list[str] | None = Field(None, min_length=1)
    loyalty_band: list[str] | None = Field(None, min_length=1)
    tiers: list[str] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _known_values(self) -> ProfileRule:
        if self.action not in ACTIONS:
            raise ValueError(f"action: unknown action {self.action!r}; known: {list(ACTIONS)}")
        for key, known in (("purchase_rhythm", PURCHASE_RHYTHMS), ("channel_preference", CHANNEL_PREFERENCES),
                           ("breadth_trend", BREADTH_TRENDS), ("loyalty_band", LOYALTY_BANDS)):
            unknown = [v for v in getattr(self, key) or [] if v not in known]
            if unknown:
                raise ValueError(f"{key}: unknown value(s) {unknown}; known: {list(known)}")
        conditions = (self.purchase_rhythm, self.overdue_by_rhythm, self.channel_preference,
                      self.breadth_trend, self.loyalty_band)
        if all(c is None for c in conditions):
            raise ValueError(f"rule {self.name!r}: needs at least one profile condition")
        return self


def _at_most_cents(value: float, what: str) -> float:
    """Amounts and hours are planned in hundredths; a finer value cannot add up exactly."""
    if Decimal(str(value)).as_tuple().exponent < -2:
        raise ValueError(f"{what}: at most 2 decimals, got {value!r}")
    return value


class TierPolicy(_Strict):
    """How one value tier is served and funded."""

    budget_share: float = Field(ge=0, le=1)
    service_level: str = Field(min_length=1)
    # per-customer floor and cap, as multiples of the tier's average budget per customer
    # (budget x budget_share / customers): floor <= 1 <= cap, so the tier's budget always fits
    customer_floor: float = Field(0.25, ge=0, le=1)
    customer_cap: float = Field(3.0, ge=1)
    # account-manager hours per customer and plan period (given highest value first)
    account_manager_hours: float = Field(0, ge=0)
    # optimized mode: the tier keeps at least this share of its policy budget
    optimized_min_share: float = Field(0.5, ge=0, le=1)

    @model_validator(mode="after")
    def _hours_in_hundredths(self) -> TierPolicy:
        _at_most_cents(self.account_manager_hours, "account_manager_hours")
        return self


class ResponseSegment(_Strict):
    up_to_share_of_value: float = Field(gt=0)
    return_per_unit: float = Field(ge=0)


def _default_segments() -> list[ResponseSegment]:
    return [
        ResponseSegment(up_to_share_of_value=0.02, return_per_unit=3.0),
        ResponseSegment(up_to_share_of_value=0.05, return_per_unit=1.5),
        ResponseSegment(up_to_share_of_value=0.10, return_per_unit=0.5),
    ]


class ResponseConfig(_Strict):
    """Diminishing-return response curves (tierflow.allocation.curves)."""

    segments: list[ResponseSegment] = Field(default_factory=_default_segments, min_length=1)
    # the customer value the breakpoints are shares of: revenue (monetary, net revenue in the
    # RFM window) or clv (predicted_clv_12m of customer_clv; a night without an accepted CLV
    # fit falls back to revenue and says so)
    value_base: Literal["revenue", "clv"] = "revenue"
    account_manager_hour_return: float = Field(0.002, ge=0)
    action_multipliers: dict[str, float] = Field(
        default_factory=lambda: {
            "credit review": 0.3,
            "win back": 0.8,
            "convert potential": 1.5,
            "retain": 1.0,
            "develop": 1.2,
            "serve at low cost": 0.5,
        }
    )

    @model_validator(mode="after")
    def _concave_and_complete(self) -> ResponseConfig:
        ups = [s.up_to_share_of_value for s in self.segments]
        if any(b <= a for a, b in zip(ups, ups[1:], strict=False)):
            raise ValueError(f"segments: up_to_share_of_value must increase, got {ups}")
        rets = [s.return_per_unit for s in self.segments]
        if any(b > a for a, b in zip(rets, rets[1:], strict=False)):
            raise ValueError(
                f"segments: return_per_unit must not increase from one segment to the next "
                f"(diminishing returns keep the curve concave), got {rets}"
            )
        keys = set(self.action_multipliers)
        if keys != set(ACTIONS):
            raise ValueError(
                f"action_multipliers: needs exactly the actions {list(ACTIONS)}; "
                f"missing {sorted(set(ACTIONS) - keys)}, unknown {sorted(keys - set(ACTIONS))}"
            )
        negative = {k: v for k, v in self.action_multipliers.items() if v < 0}
        if negative:
            raise ValueError(f"action_multipliers: must be >= 0, got {negative}")
        return self


class AllocationConfig(_Strict):
    plan_period: Literal["month", "quarter", "year"] = "month"
    mode: Literal["policy", "optimized"] = "policy"
    budget: float = Field(gt=0)
    account_manager_capacity_hours: float = Field(0, ge=0)
    # a high-credit-risk customer gets at most this multiple of its tier's average budget
    credit_risk_cap: float = Field(0.5, ge=0)
    win_back_stages: list[str] = Field(default_factory=lambda: ["declining", "churned"])
    tiers: dict[str, TierPolicy]
    response: ResponseConfig = Field(default_factory=ResponseConfig)
    # rules on the customer's profile, checked after 'credit review' (ProfileRule)
    profile_rules: list[ProfileRule] = Field(default_factory=list)
    # control group: this share of customers per plan period gets no budget, hours or action
    # (a hash of plan period and customer_id decides; 0 disables it), so that the plan's
    # effect can be measured (plan_performance)
    control_share: float = Field(0.05, ge=0, le=0.5)

    @model_validator(mode="after")
    def _shares_sum_to_one(self) -> AllocationConfig:
        total = sum(p.budget_share for p in self.tiers.values())
        if abs(total - 1) > 1e-9:
            raise ValueError(f"tiers: budget_share values must add up to 1.0, they add up to {total:g}")
        return self

    @model_validator(mode="after")
    def _cents_and_stages(self) -> AllocationConfig:
        _at_most_cents(self.budget, "budget")
        _at_most_cents(self.account_manager_capacity_hours, "account_manager_capacity_hours")
        unknown = [s for s in self.win_back_stages if s not in LIFECYCLE_STAGES]
        if unknown:
            raise ValueError(f"win_back_stages: unknown stages {unknown}; known: {list(LIFECYCLE_STAGES)}")
        return self


class NotificationsConfig(_Strict):
    """Who receives the account-alert e-mails (the SMTP server is an environment setting)."""

    # account manager name (the alert's owner) -> e-mail address
    recipients: dict[str, str] = Field(default_factory=dict)
    # owners without an address, and 'unassigned', go here; none: they are not e-mailed
    fallback_recipient: str | None = None

    @model_validator(mode="after")
    def _addresses(self) -> NotificationsConfig:
        for key, addr in [*(("recipients." + o, a) for o, a in self.recipients.items()),
                          ("fallback_recipient", self.fallback_recipient)]:
            if addr is not None and not _EMAIL.match(addr):
                raise ValueError(f"{key}: not an e-mail address: {addr!r}")
        return self


class CostToServeConfig(_Strict):
    """Rates that turn service, activities, orders and receivables into cost to serve."""

    support_cost_per_minute: float = Field(1.0, ge=0)
    handling_cost_per_order: float = Field(0.0, ge=0)
    annual_cost_of_capital: float = Field(0.05, ge=0, le=1)


class CreditBandThresholds(_Strict):
    """A band applies when any one threshold is reached (null = not used)."""

    overdue_share: float | None = Field(None, ge=0, le=1)
    avg_days_late: float | None = Field(None, ge=0)
    write_off_count: int | None = Field(None, ge=1)


class CreditRiskConfig(_Strict):
    window_days: int = Field(365, gt=0)
    high: CreditBandThresholds = Field(
        default_factory=lambda: CreditBandThresholds(overdue_share=0.5, avg_days_late=30, write_off_count=1)
    )
    medium: CreditBandThresholds = Field(
        default_factory=lambda: CreditBandThresholds(overdue_share=0.2, avg_days_late=10)
    )

    @model_validator(mode="after")
    def _medium_below_high(self) -> CreditRiskConfig:
        for key in ("overdue_share", "avg_days_late", "write_off_count"):
            medium, high = getattr(self.medium, key), getattr(self.high, key)
            if medium is not None and high is not None and medium > high:
                raise ValueError(f"medium.{key} ({medium:g}) must not exceed high.{key} ({high:g})")
        return self


class LifecycleConfig(_Strict):
    new_days: int = Field(90, gt=0)
    churn_days: int = Field(180, gt=0)
    trend_days: int = Field(180, gt=0)
    growth_threshold: float = Field(0.2, ge=0)
    decline_threshold: float = Field(0.2, ge=0, le=1)


class ChurnRiskAlert(_Strict):
    """Churn risk: no order for much longer than the customer's own usual gap between orders."""

    # alert when recency_days > gap_factor x the average gap between purchase days (BTYD:
    # recency_btyd_days / frequency_repeat)
    gap_factor: float = Field(2.0, ge=1)
    # a usual gap needs at least this many repeat purchase days (BTYD frequency_repeat)
    min_repeat_purchases: int = Field(1, ge=1)
    # and never before this many days without an order
    min_recency_days: int = Field(30, ge=0)


class RevenueDropAlert(_Strict):
    """Revenue drop: revenue of the last lifecycle.trend_days against the trend_days before."""

    # alert when revenue fell by at least this share (0.5 = halved or worse)
    min_drop: float = Field(0.5, gt=0, le=1)


class AlertsConfig(_Strict):
    """Thresholds of account_alerts (churn risk, revenue drop, top-tier downgrade, credit)."""

    # tiers whose customers get churn-risk, revenue-drop and credit alerts; null = every
    # tier but the worst. Top-tier downgrades are alerted whatever this says.
    tiers: list[str] | None = Field(None, min_length=1)
    churn_risk: ChurnRiskAlert = Field(default_factory=ChurnRiskAlert)
    revenue_drop: RevenueDropAlert = Field(default_factory=RevenueDropAlert)


class HealthBand(_Strict):
    name: str = Field(min_length=1)
    min_score: float = Field(ge=0, le=100)


class HealthConfig(_Strict):
    """customer_health: three components, each 0..1 (1 = healthy), weighted to a 0..100 score.

    Each metric's part is 1 at 0 and falls linearly to 0 at its ``*_bad_at`` value; a
    component is the mean of its metrics' parts (engagement: the order gap against the
    customer's own usual gap, and sales activities, which count fully from activities_good_at).
    """

    window_days: int = Field(90, gt=0)
    weights: dict[Literal["support", "payment", "engagement"], float] = Field(
        default_factory=lambda: {"support": 0.3, "payment": 0.3, "engagement": 0.4}
    )
    tickets_bad_at: float = Field(5, gt=0)
    open_ticket_age_bad_at: float = Field(30, gt=0)
    resolution_days_bad_at: float = Field(10, gt=0)
    overdue_share_bad_at: float = Field(0.5, gt=0, le=1)
    days_late_bad_at: float = Field(30, gt=0)
    gap_ratio_bad_at: float = Field(3, gt=1)
    activities_good_at: float = Field(2, gt=0)
    bands: list[HealthBand] = Field(
        default_factory=lambda: [
            HealthBand(name="healthy", min_score=70),
            HealthBand(name="watch", min_score=40),
            HealthBand(name="at risk", min_score=0),
        ]
    )

    @model_validator(mode="after")
    def _weights_and_bands(self) -> HealthConfig:
        parts = {"support", "payment", "engagement"}
        if set(self.weights) != parts or any(w < 0 for w in self.weights.values()):
            raise ValueError(f"weights: need support, payment and engagement, each >= 0, got {self.weights}")
        if sum(self.weights.values()) <= 0:
            raise ValueError("weights: must not all be 0")
        scores = [b.min_score for b in self.bands]
        if not scores or scores != sorted(scores, reverse=True) or len(set(scores)) != len(scores):
            raise ValueError(
                f"bands: min_score must fall strictly from the first band to the last, got {scores}"
            )
        if scores[-1] != 0:
            raise ValueError(f"bands: the last band must start at min_score 0 (got {scores[-1]:g})")
        return self


class OutcomesConfig(_Strict):
    """Closing the loop: plan_performance, revenue_bridge, cohort_retention, customer_health."""

    # two-sided confidence level of the uplift intervals (normal approximation)
    confidence: float = Field(0.95, gt=0.5, lt=1)
    health: HealthConfig = Field(default_factory=HealthConfig)
class ClvConfig(_Strict):
    """Predicted lifetime value (tierflow.clv; docs/clv.md): BG/NBD + Gamma-Gamma on the BTYD
    summary of customer_rfm, refitted every ``refit_days`` and accepted only after a holdout check.
    """

    # refit when the fit in use was made this many days before the as-of date or more
    # (1 = every night); nights in between score with the last accepted fit
    refit_days: int = Field(7, ge=1)
    # the holdout check: a model fitted on the history up to A - holdout_days predicts each
    # customer's purchases in (A - holdout_days, A]; compared per calibration-frequency bucket
    holdout_days: int = Field(90, ge=7)
    # a fit is accepted only if the holdout error (sum over buckets of |predicted - actual|
    # purchases / actual purchases) is at most this
    max_holdout_error: float = Field(0.35, gt=0)
    # no fit with fewer customers with a purchase than this (the model would not be identified);
    # the night then has no predicted value and says so
    min_customers: int = Field(50, ge=10)
    # fit on a deterministic sample of at most this many customers (everyone is scored)
    fit_sample_size: int = Field(50_000, ge=100)
    # predicted_clv_12m: months ahead (30-day months) and the monthly discount rate
    horizon_months: int = Field(12, ge=1, le=120)
    monthly_discount_rate: float = Field(0.01, ge=0, lt=1)


class TierflowConfig(_Strict):
    base_currency: str = Field(pattern=r"^[A-Z]{3}$")
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    rfm: RfmConfig
    tiers: TierConfig
    allocation: AllocationConfig
    cost_to_serve: CostToServeConfig = Field(default_factory=CostToServeConfig)
    credit_risk: CreditRiskConfig = Field(default_factory=CreditRiskConfig)
    lifecycle: LifecycleConfig = Field(default_factory=LifecycleConfig)
    notifications: NotificationsConfig = Field(default_factory=NotificationsConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    profile: ProfileConfig = Field(default_factory=ProfileConfig)
    region_potential: RegionPotentialConfig = Field(default_factory=RegionPotentialConfig)
    outcomes: OutcomesConfig = Field(default_factory=OutcomesConfig)
    clv: ClvConfig = Field(default_factory=ClvConfig)

    @model_validator(mode="after")
    def _alert_tiers_are_levels(self) -> TierflowConfig:
        names = [lv.name for lv in self.tiers.levels]
        unknown = [t for t in self.alerts.tiers or [] if t not in names]
        if unknown:
            raise ValueError(f"alerts.tiers: unknown tier(s) {unknown}; tiers.levels has {names}")
        return self

    @model_validator(mode="after")
    def _profile_rule_tiers_are_levels(self) -> TierflowConfig:
        names = [lv.name for lv in self.tiers.levels]
        for i, rule in enumerate(self.allocation.profile_rules):
            unknown = [t for t in rule.tiers or [] if t not in names]
            if unknown:
                raise ValueError(
                    f"allocation.profile_rules.{i}.tiers: unknown tier(s) {unknown}; tiers.levels has {names}"
                )
        return self

    @model_validator(mode="after")
    def _policies_match_tiers(self) -> TierflowConfig:
        names = [lv.name for lv in self.tiers.levels]
        if sorted(names) != sorted(self.allocation.tiers):
            raise ValueError(
                f"allocation.tiers: needs exactly one policy per tier in tiers.levels {names}, "
                f"got {sorted(self.allocation.tiers)}"
            )
        return self


def _format_errors(path: Path, exc: ValidationError) -> str:
    lines = [f"{path}: invalid configuration"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        given = err.get("input")
        given_txt = "" if isinstance(given, dict | list) else f" (got {given!r})"
        lines.append(f"  - {key}: {msg}{given_txt}")
    return "\n".join(lines)


def load_config(path: Path) -> TierflowConfig:
    """Read and validate the business config; raise :class:`ConfigError` naming the bad key."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: config file not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    try:
        return TierflowConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(path, exc)) from None


def alert_vars(cfg: TierflowConfig) -> dict:
    """The alerts block for dbt, with the default tier list (every tier but the worst) resolved."""
    names = [lv.name for lv in cfg.tiers.levels]
    return {
        "tiers": list(cfg.alerts.tiers) if cfg.alerts.tiers is not None else names[:-1],
        "churn_risk": cfg.alerts.churn_risk.model_dump(mode="json"),
        "revenue_drop": cfg.alerts.revenue_drop.model_dump(mode="json"),
    }


def dbt_vars(cfg: TierflowConfig) -> dict:
    """The business rules as dbt vars (the as-of date is added per run)."""
    return {
        "base_currency": cfg.base_currency,
        "rfm_window_days": cfg.rfm.window_days,
        "rfm_segments": [s.model_dump(mode="json") for s in cfg.rfm.segments],
        "rfm_no_purchase_segment": cfg.rfm.no_purchase_segment,
        "tier_method": cfg.tiers.method,
        "tier_levels": [lv.model_dump(mode="json") for lv in cfg.tiers.levels],
        "tier_weights": cfg.tiers.weights.model_dump(mode="json"),
        "tier_hysteresis_margin": cfg.tiers.hysteresis_margin,
        "tier_potential": cfg.tiers.potential.model_dump(mode="json"),
        "alerts": alert_vars(cfg),
        "cost_to_serve": cfg.cost_to_serve.model_dump(mode="json"),
        "credit_risk": cfg.credit_risk.model_dump(mode="json"),
        "lifecycle": cfg.lifecycle.model_dump(mode="json"),
        "profile": cfg.profile.model_dump(mode="json"),
        "region_potential": cfg.region_potential.model_dump(mode="json"),
        **outcome_vars(cfg),
    }


def outcome_vars(cfg: TierflowConfig) -> dict:
    """What the closing-the-loop marts read: the plan period, the interval's z, health rules."""
    from statistics import NormalDist

    return {
        "plan_period": cfg.allocation.plan_period,
        "uplift_z": round(NormalDist().inv_cdf((1 + cfg.outcomes.confidence) / 2), 6),
        "health": cfg.outcomes.health.model_dump(mode="json"),
    }
