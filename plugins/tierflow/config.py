"""The one business config file (``config/tierflow.yml``), validated on load.

A bad value fails fast with a message that names the key and what is allowed, before any
data is touched. The validated config is also what dbt sees, as vars (:func:`dbt_vars`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


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
    # CSV files at least this big are checked set-based in SQL after a plain COPY; smaller
    # ones row by row in Python, which costs less per file (thousands of small daily deltas).
    bulk_min_bytes: int = Field(262_144, ge=0)

    @model_validator(mode="after")
    def _known_entities(self) -> IngestConfig:
        from tierflow.ingest.entities import BY_PATH

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

    @model_validator(mode="after")
    def _positive_total(self) -> TierWeights:
        if self.purchasing_power + self.frequency + self.profit + self.recency <= 0:
            raise ValueError("weights: at least one weight must be > 0")
        return self


class TierConfig(_Strict):
    method: Literal["percentile", "pareto"] = "percentile"
    levels: list[TierLevel] = Field(min_length=2)
    weights: TierWeights

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


class TierPolicy(_Strict):
    budget_share: float = Field(ge=0, le=1)
    service_level: str = Field(min_length=1)


class AllocationConfig(_Strict):
    plan_period: Literal["month", "quarter", "year"] = "month"
    budget: float = Field(gt=0)
    tiers: dict[str, TierPolicy]

    @model_validator(mode="after")
    def _shares_sum_to_one(self) -> AllocationConfig:
        total = sum(p.budget_share for p in self.tiers.values())
        if abs(total - 1) > 1e-9:
            raise ValueError(f"tiers: budget_share values must add up to 1.0, they add up to {total:g}")
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


class TierflowConfig(_Strict):
    base_currency: str = Field(pattern=r"^[A-Z]{3}$")
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    rfm: RfmConfig
    tiers: TierConfig
    allocation: AllocationConfig
    cost_to_serve: CostToServeConfig = Field(default_factory=CostToServeConfig)
    credit_risk: CreditRiskConfig = Field(default_factory=CreditRiskConfig)
    lifecycle: LifecycleConfig = Field(default_factory=LifecycleConfig)

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
        "allocation_plan_period": cfg.allocation.plan_period,
        "allocation_budget": cfg.allocation.budget,
        "allocation_tiers": {k: v.model_dump(mode="json") for k, v in cfg.allocation.tiers.items()},
        "cost_to_serve": cfg.cost_to_serve.model_dump(mode="json"),
        "credit_risk": cfg.credit_risk.model_dump(mode="json"),
        "lifecycle": cfg.lifecycle.model_dump(mode="json"),
    }
