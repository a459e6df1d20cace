"""The demo company's customers: who they are (crm/customers, account groups included), how
they behave (order rate, growth, decline, churn) and how their records change over time.

The behaviour is hidden from the extracts, as it is in a real company: the tiering has to
find the valuable, growing, fading and lost customers from their orders alone.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from tierflow.demo.reference import (
    ABROAD,
    BASE_CURRENCY,
    BRANDS_CN,
    BRANDS_EN,
    CONSUMER_INDUSTRY,
    GIVEN,
    INDUSTRIES,
    INTERNATIONAL,
    MANAGERS_CN,
    MANAGERS_INTL,
    REGIONS,
    SUFFIX_EN,
    SURNAMES,
    WESTERN,
)
from tierflow.demo.simulation import Simulation
from tierflow.demo.values import money

# Behaviour calibration (defaults give ~45k orders for 3000 customers over 730 days).
_VALUE_SIGMA = 0.95
_RATE_B2B = 0.034  # orders per active day for a median B2B customer
_RATE_B2C = 0.016
_PATTERNS = ("stable", "growing", "declining", "churning", "never")
_PATTERN_P = (0.55, 0.12, 0.15, 0.14, 0.04)


@dataclass
class Customer:
    """One customer's attributes (written to crm/customers) and its hidden behaviour."""

    idx: int
    customer_id: str
    name: str
    brand: str
    b2b: bool
    industry: str
    region: str
    country: str
    city: str
    channel: str
    account_manager: str
    credit_limit: float | None
    terms: int
    created_at: date
    created_idx: int
    currency: str
    value: float
    payer: str  # prompt | slow | bad
    return_p: float
    ticket_factor: float
    parent_id: str = ""
    is_active: bool = True

    def row(self, updated_at: str) -> dict[str, str]:
        return {
            "customer_id": self.customer_id,
            "customer_name": self.name,
            "parent_customer_id": self.parent_id,
            "customer_type": "b2b" if self.b2b else "b2c",
            "industry": self.industry,
            "region": self.region,
            "country": self.country,
            "city": self.city,
            "channel": self.channel,
            "account_manager": self.account_manager,
            "credit_limit": "" if self.credit_limit is None else money(self.credit_limit),
            "payment_terms_days": str(self.terms),
            "created_at": self.created_at.isoformat(),
            "updated_at": updated_at,
            "is_active": "true" if self.is_active else "false",
        }


# ---- who the customers are


def make_customers(sim: Simulation) -> list[Customer]:
    """Half the customers exist before the first day (with a historic created_at); the rest
    join on random days of the range. Values are lognormal: a few customers carry the revenue."""
    n, rnd = sim.n, sim.rnd
    n_initial = max(1, round(n * 0.5)) if sim.days > 1 else n
    later = sorted(sim.np.integers(1, max(2, sim.days), n - n_initial).tolist())
    values = sim.np.lognormal(0.0, _VALUE_SIGMA, n)
    out = []
    for k in range(n):
        created_idx = 0 if k < n_initial else int(later[k - n_initial])
        if k < n_initial:
            created_at = sim.start - timedelta(days=rnd.randint(20, 3000))
        else:
            created_at = sim.day(created_idx)
        out.append(_new_customer(rnd, k, created_idx, created_at, float(values[k])))
    return out


def _new_customer(rnd: random.Random, k: int, created_idx: int, created_at: date, value: float) -> Customer:
    b2b = rnd.random() < 0.45
    abroad = b2b and rnd.random() < 0.08
    if abroad:
        country, city, currency = ABROAD[rnd.randrange(len(ABROAD))]
        region = INTERNATIONAL
        manager = rnd.choice(MANAGERS_INTL)
    else:
        r = rnd.choices(REGIONS, weights=[w for *_, w in REGIONS])[0]
        region, city, country = r[0], rnd.choice(r[1]), "China"
        currency = "USD" if (b2b and rnd.random() < 0.04) else BASE_CURRENCY
        manager = MANAGERS_CN[(REGIONS.index(r) * 3 + rnd.randrange(3)) % len(MANAGERS_CN)]
    if b2b:
        ind = rnd.choice(INDUSTRIES)
        brand, name = _company_name(abroad, country, city, ind, rnd)
        channel = rnd.choices(("offline", "distributor", "online"), (0.55, 0.3, 0.15))[0]
        terms = 60 if abroad else rnd.choices((30, 45, 60, 90), (0.4, 0.2, 0.3, 0.1))[0]
        credit = float(max(50_000, round(value * 200_000, -4)))
        payer = rnd.choices(("prompt", "slow", "bad"), (0.7, 0.25, 0.05))[0]
        industry = ind[0]
    else:
        brand = ""
        name = rnd.choice(WESTERN) if rnd.random() < 0.06 else (
            rnd.choice(SURNAMES) + rnd.choice(GIVEN))
        channel = rnd.choices(("online", "offline"), (0.8, 0.2))[0]
        terms, credit, payer, industry, manager = 0, None, "prompt", CONSUMER_INDUSTRY, ""
    return Customer(
        idx=k, customer_id=f"C{100001 + k}", name=name, brand=brand, b2b=b2b,
        industry=industry, region=region, country=country, city=city, channel=channel,
        account_manager=manager, credit_limit=credit, terms=terms, created_at=created_at,
        created_idx=created_idx, currency=currency, value=value, payer=payer,
        return_p=0.035 * rnd.lognormvariate(0, 0.6) * (1.0 if b2b else 1.5),
        ticket_factor=rnd.lognormvariate(0, 0.7),
    )


def _company_name(abroad: bool, country: str, city: str, ind: tuple[str, str, str],
                  rnd: random.Random) -> tuple[str, str]:
    """Chinese names (上海恒达贸易有限公司) at home, English ones abroad."""
    if not abroad and rnd.random() < 0.85:
        brand = rnd.choice(BRANDS_CN)
        suffix = "股份有限公司" if rnd.random() < 0.2 else "有限公司"
        return brand, f"{city}{brand}{ind[1]}{suffix}"
    brand = rnd.choice(BRANDS_EN)
    where = city if abroad else "Shanghai"
    return brand, f"{brand} {ind[2]} ({where}) {SUFFIX_EN.get(country, 'Co., Ltd.')}"


def assign_groups(customers: list[Customer], rnd: random.Random) -> None:
    """Account groups: a few large initial B2B customers become parents of other B2B ones."""
    b2b = [c for c in customers if c.b2b]
    initial = sorted((c for c in b2b if c.created_idx == 0), key=lambda c: -c.value)
    n_parents = max(1, round(len(b2b) * 0.04)) if len(b2b) >= 4 else 0
    parents = initial[: n_parents * 3 : 3] if initial else []
    if not parents:
        return
    parent_ids = {p.customer_id for p in parents}
    for c in b2b:
        if c.customer_id in parent_ids or rnd.random() >= 0.12:
            continue
        p = rnd.choice(parents)
        c.parent_id, c.industry = p.customer_id, p.industry
        if p.brand in BRANDS_CN and c.country == "China":
            cn_ind = next((i[1] for i in INDUSTRIES if i[0] == p.industry), "贸易")
            c.name, c.brand = f"{c.city}{p.brand}{cn_ind}有限公司", p.brand
        elif p.brand:
            suffix = SUFFIX_EN.get(c.country, "Ltd.")
            c.name, c.brand = f"{p.brand} Group ({c.city}) {suffix}", p.brand


# ---- how they behave


@dataclass
class Behaviour:
    """Per-customer order-rate parameters as arrays (index = customer idx), so each day is
    one vectorised draw over all customers."""

    is_b2b: np.ndarray
    rate: np.ndarray  # orders per active day before trend, season and growth
    start_idx: np.ndarray  # the day a customer exists from
    pattern: np.ndarray  # index into _PATTERNS
    churn_idx: np.ndarray  # the day a churning customer stops (inf: never; -1: never buys)
    decline_start: np.ndarray
    halflife: np.ndarray  # days, for declining customers
    growth_span: np.ndarray  # days over which a growing customer's demand grows
    size_mult: np.ndarray  # basket-size multiplier of B2B customers
    first_order_now: np.ndarray  # a customer who joins mid-range orders on its first day
    activity_rate: np.ndarray  # sales touches per day

    def trend(self, i: int) -> np.ndarray:
        """Today's per-customer demand factor: growing, fading and churned customers."""
        active = (i >= self.start_idx) & (i < self.churn_idx)
        t = np.ones(len(self.rate))
        grow = self.pattern == 1
        t[grow] = 0.5 + np.clip((i - self.start_idx[grow]) / self.growth_span[grow], 0, 1)
        dec = self.pattern == 2
        since = np.maximum(i - self.decline_start[dec], 0)
        t[dec] = np.maximum(0.5 ** (since / self.halflife[dec]), 0.08)
        return np.where(active, t, 0.0)


def draw_behaviour(customers: list[Customer], sim: Simulation) -> Behaviour:
    """Each customer's hidden pattern (stable, growing, declining, churning, never buys)."""
    n, days = sim.n, sim.days
    is_b2b = np.array([c.b2b for c in customers])
    value = np.array([c.value for c in customers])
    base = np.where(is_b2b, _RATE_B2B, _RATE_B2C)
    start_idx = np.array([c.created_idx for c in customers])
    pattern = sim.np.choice(len(_PATTERNS), size=n, p=_PATTERN_P)
    span = np.maximum(days - start_idx, 1)
    u = sim.np.random(n)
    churn_idx = np.where(pattern == 3, start_idx + (0.1 + 0.8 * u) * span, np.inf)
    churn_idx = np.where(pattern == 4, -1, churn_idx)  # never purchases
    decline_start = start_idx + sim.np.random(n) * 0.6 * span
    halflife = sim.np.uniform(60, 300, n)
    first_order_now = (sim.np.random(n) < 0.6) & (start_idx > 0) & (pattern != 4)
    return Behaviour(
        is_b2b=is_b2b,
        rate=np.minimum(base * value**0.55, 0.9),
        start_idx=start_idx,
        pattern=pattern,
        churn_idx=churn_idx,
        decline_start=decline_start,
        halflife=halflife,
        growth_span=span.astype(float),
        size_mult=value**0.45,
        first_order_now=first_order_now,
        activity_rate=np.where(is_b2b, np.minimum(0.01 * value**0.8, 0.25), 0.0015),
    )


# ---- how their records change


def plan_customer_events(
    customers: list[Customer], behaviour: Behaviour, sim: Simulation
) -> dict[int, list[tuple[int, str]]]:
    """Attribute changes and deactivations, re-delivered on later days: day -> (idx, kind)."""
    events: dict[int, list[tuple[int, str]]] = {}
    rnd, days = sim.rnd, sim.days
    for c in customers:
        if rnd.random() < 0.06 and c.created_idx < days - 2:
            i = rnd.randint(c.created_idx + 1, days - 1)
            kind = rnd.choice(("credit_limit", "account_manager", "channel", "city")
                              if c.b2b else ("channel", "city"))
            events.setdefault(i, []).append((c.idx, kind))
        churn = behaviour.churn_idx[c.idx]
        if np.isfinite(churn) and churn >= 0 and rnd.random() < 0.5:
            i = int(churn) + rnd.randint(90, 240)
            if i < days:
                events.setdefault(i, []).append((c.idx, "deactivate"))
    return events


def apply_customer_event(c: Customer, kind: str, rnd: random.Random) -> None:
    if kind == "credit_limit" and c.credit_limit is not None:
        c.credit_limit = float(max(50_000, round(c.credit_limit * rnd.uniform(0.6, 1.8), -4)))
    elif kind == "account_manager":
        pool = MANAGERS_INTL if c.region == INTERNATIONAL else MANAGERS_CN
        c.account_manager = rnd.choice([m for m in pool if m != c.account_manager])
    elif kind == "channel":
        opts = ("online", "offline", "distributor") if c.b2b else ("online", "offline")
        c.channel = rnd.choice([o for o in opts if o != c.channel])
    elif kind == "city":
        for region, cities, _ in REGIONS:
            if region == c.region and len(cities) > 1:
                c.city = rnd.choice([x for x in cities if x != c.city])
    elif kind == "deactivate":
        c.is_active = False
