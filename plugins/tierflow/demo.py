"""Deterministic demo extracts: a realistic company's CRM/ERP/service deltas, with known flaws.

Why this exists: the nightly pipeline (ingest -> quality -> dbt -> tiers -> publish) must be
runnable and demonstrable without a customer's data, and its tests need input whose shape is
known. :func:`generate` writes two years of daily extracts in the landing layout of SPEC
"The extract contract" with the effects the tiering must see (Pareto-shaped spend, seasonality,
growing / fading / churning customers, late payers, re-delivered rows that supersede older
ones) plus a small, documented sprinkle of bad rows. Every bad row is listed in the manifest
(file + line), so tests can check that each one ends up in the rejects table.

Determinism: all randomness comes from generators seeded with ``seed``; the same arguments
give byte-identical files. The manifest holds no timings for the same reason.
"""

from __future__ import annotations

import csv
import json
import math
import random
import shutil
from bisect import bisect
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np

from tierflow.extracts import BY_PATH

BASE_CURRENCY = "CNY"
MANIFEST_NAME = "_demo_manifest.json"

# Entities the generator owns, in the order their files are written each day.
ENTITY_PATHS: tuple[str, ...] = (
    "erp/fx_rates",
    "erp/products",
    "crm/customers",
    "erp/orders",
    "erp/order_lines",
    "erp/invoices",
    "service/tickets",
    "crm/activities",
)

BAD_KINDS: dict[str, str] = {
    "duplicate_key": "erp/order_lines",
    "unparsable_date": "erp/orders",
    "negative_quantity": "erp/order_lines",
    "unknown_customer": "erp/orders",
    "unknown_product": "erp/order_lines",
    "missing_required": "erp/orders",
}
BAD_PER_KIND = 3

NOTES: tuple[str, ...] = (
    "Each file holds the delta of its date folder; re-delivered rows (customers, products, "
    "orders, invoices, tickets) carry a newer updated_at and supersede the older version.",
    "Initial customers and products arrive in the first date folder (customers keep their "
    "historic created_at); later customers arrive in the folder of their created_at.",
    "unit_cost is empty only on CNY order lines (falls back to standard_cost); lines of USD/EUR "
    "orders carry unit_cost in the order currency. Invoice amount = net lines + shipping_cost.",
    "Bad rows sit in otherwise normal files and are listed under bad_rows (line 1 = header); "
    "no bad row is ever the target of a re-delivery.",
    "duplicate_key: an erp/order_lines row repeated exactly on the next line (first_line is "
    "the valid original, line is the repeat).",
    "unparsable_date: an erp/orders row whose order_date is not a date (e.g. 2025-13-45); "
    "the order has no lines.",
    "negative_quantity: an extra erp/order_lines row with quantity < 0 on a valid order.",
    "unknown_customer: an erp/orders row for a customer id in no crm/customers file "
    "(C-UNKNOWN-n); the order has no lines.",
    "unknown_product: an extra erp/order_lines row whose product_id is in no erp/products "
    "file (P-UNKNOWN-n).",
    "missing_required: an erp/orders row with an empty customer_id; the order has no lines.",
)

# --- reference data -----------------------------------------------------------------------

# region -> cities (Chinese name); international customers use _ABROAD.
_REGIONS: tuple[tuple[str, tuple[str, ...], float], ...] = (
    ("华东 / East China", ("上海", "杭州", "南京", "苏州", "宁波", "合肥", "青岛"), 0.30),
    ("华南 / South China", ("广州", "深圳", "东莞", "厦门", "南宁"), 0.20),
    ("华北 / North China", ("北京", "天津", "石家庄", "太原"), 0.17),
    ("华中 / Central China", ("武汉", "长沙", "郑州", "南昌"), 0.11),
    ("西南 / Southwest China", ("成都", "重庆", "昆明", "贵阳"), 0.09),
    ("西北 / Northwest China", ("西安", "兰州", "乌鲁木齐"), 0.05),
    ("东北 / Northeast China", ("沈阳", "大连", "哈尔滨", "长春"), 0.08),
)
_INTERNATIONAL = "海外 / International"
_ABROAD: tuple[tuple[str, str, str], ...] = (
    ("United States", "Los Angeles", "USD"),
    ("United States", "Chicago", "USD"),
    ("Singapore", "Singapore", "USD"),
    ("Vietnam", "Ho Chi Minh City", "USD"),
    ("United Arab Emirates", "Dubai", "USD"),
    ("Germany", "Hamburg", "EUR"),
    ("Germany", "Munich", "EUR"),
    ("France", "Lyon", "EUR"),
    ("Netherlands", "Rotterdam", "EUR"),
)
_INDUSTRIES: tuple[tuple[str, str, str], ...] = (  # label, Chinese name part, English part
    ("制造业 / Manufacturing", "制造", "Manufacturing"),
    ("批发零售 / Wholesale & Retail", "贸易", "Trading"),
    ("电子科技 / Electronics & Tech", "科技", "Technologies"),
    ("医疗健康 / Healthcare", "医疗器械", "Medical"),
    ("物流运输 / Logistics", "物流", "Logistics"),
    ("建筑建材 / Construction", "建材", "Building Materials"),
    ("食品饮料 / Food & Beverage", "食品", "Foods"),
    ("化工能源 / Chemicals & Energy", "化工", "Chemicals"),
)
_CONSUMER_INDUSTRY = "个人消费者 / Consumer"
_BRANDS_CN = (
    "恒达", "华信", "鑫源", "博远", "中联", "宏图", "瑞丰", "天成", "金桥", "永盛", "海纳", "东方",
    "新锐", "合力", "星辰", "德润", "嘉禾", "远航", "汇通", "盛世", "明辉", "安泰", "锦程", "振华",
)
_BRANDS_EN = (
    "Apex", "Northwind", "Bluestone", "Evergreen", "Summit", "Harbor", "Vertex", "Pioneer",
    "Crescent", "Meridian", "Silverline", "Orion", "Keystone", "Redwood", "Atlas", "Lumen",
)
_SUFFIX_EN = {
    "United States": "Inc.", "Singapore": "Pte. Ltd.", "Vietnam": "Co., Ltd.",
    "United Arab Emirates": "LLC", "Germany": "GmbH", "France": "S.A.S.", "Netherlands": "B.V.",
    "China": "Co., Ltd.",
}
_SURNAMES = ("王", "李", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴", "徐", "孙", "马", "朱")
_GIVEN = ("伟", "芳", "娜", "敏", "静", "磊", "洋", "艳", "勇", "军", "杰", "婷", "强", "丽", "涛",
          "明", "超", "秀英", "晓东", "子涵", "浩然", "欣怡")
_WESTERN = ("Anna Schmidt", "James Miller", "Laura Rossi", "Tom Becker", "Sophie Martin",
            "Daniel Kim", "Olivia Brown", "Lucas Weber")
_MANAGERS_CN = ("张伟 Zhang Wei", "李娜 Li Na", "王磊 Wang Lei", "刘洋 Liu Yang", "陈静 Chen Jing",
                "杨帆 Yang Fan", "赵敏 Zhao Min", "黄晓东 Huang Xiaodong", "周婷 Zhou Ting",
                "吴强 Wu Qiang")
_MANAGERS_INTL = ("Emily Chen", "David Müller", "Sarah Johnson", "Kenji Sato")
_INSIDE_SALES = "内销组 Inside Sales"
_STORE_STAFF = "门店 Store Staff"

# category, (Chinese, English) items, price range CNY, for b2b, for b2c, cost ratio range
_CATEGORIES: tuple[tuple[str, tuple[tuple[str, str], ...], tuple[float, float], bool, bool,
                         tuple[float, float]], ...] = (
    ("Sensors", (("温度传感器", "Temperature Sensor"), ("压力传感器", "Pressure Sensor"),
                 ("光电开关", "Photoelectric Switch")), (80, 1500), True, False, (0.5, 0.75)),
    ("Controllers", (("可编程控制器", "PLC Controller"), ("变频器", "Frequency Inverter"),
                     ("伺服驱动器", "Servo Drive")), (800, 12000), True, False, (0.55, 0.8)),
    ("Cables & Connectors", (("工业网线", "Industrial Ethernet Cable"),
                             ("航空插头", "Circular Connector"), ("电源线", "Power Cord")),
     (10, 300), True, True, (0.4, 0.7)),
    ("Tools", (("电钻", "Power Drill"), ("扭力扳手", "Torque Wrench"),
               ("数字万用表", "Digital Multimeter")), (60, 2000), True, True, (0.5, 0.75)),
    ("Safety Equipment", (("安全帽", "Safety Helmet"), ("防护手套", "Protective Gloves"),
                          ("护目镜", "Safety Goggles")), (15, 400), True, False, (0.45, 0.7)),
    ("Packaging", (("瓦楞纸箱", "Corrugated Box"), ("缠绕膜", "Stretch Film"),
                   ("气泡袋", "Bubble Bag")), (5, 120), True, False, (0.6, 0.85)),
    ("Home Appliances", (("空气净化器", "Air Purifier"), ("电饭煲", "Rice Cooker"),
                         ("扫地机器人", "Robot Vacuum")), (200, 4000), False, True, (0.55, 0.8)),
    ("Personal Care", (("电动牙刷", "Electric Toothbrush"), ("吹风机", "Hair Dryer"),
                       ("剃须刀", "Shaver")), (80, 1200), False, True, (0.4, 0.65)),
    ("Smart Devices", (("智能手表", "Smart Watch"), ("蓝牙耳机", "Bluetooth Earbuds"),
                       ("智能音箱", "Smart Speaker")), (150, 3000), False, True, (0.55, 0.8)),
    ("Software Licenses", (("MES 软件许可", "MES Software License"),
                           ("设计软件年费", "CAD Annual Subscription")),
     (2000, 30000), True, False, (0.1, 0.3)),
)
N_PRODUCTS = 200

# Chinese New Year (first day); drives the pre-holiday peak and the holiday dip.
_CNY = {2019: date(2019, 2, 5), 2020: date(2020, 1, 25), 2021: date(2021, 2, 12),
        2022: date(2022, 2, 1), 2023: date(2023, 1, 22), 2024: date(2024, 2, 10),
        2025: date(2025, 1, 29), 2026: date(2026, 2, 17), 2027: date(2027, 2, 6),
        2028: date(2028, 1, 26), 2029: date(2029, 2, 13), 2030: date(2030, 2, 3),
        2031: date(2031, 1, 23)}

# Behaviour calibration (defaults give ~45k orders for 3000 customers over 730 days).
_VALUE_SIGMA = 0.95
_RATE_B2B = 0.034  # orders per active day for a median B2B customer
_RATE_B2C = 0.016
_PATTERNS = ("stable", "growing", "declining", "churning", "never")
_PATTERN_P = (0.55, 0.12, 0.15, 0.14, 0.04)
_STATUS_PENDING_FIRST = 0.06
_STATUS_CANCELLED = 0.03
# P(lines <= k) for k = 1..4: B2B baskets are bigger (mean ~2.6) than B2C ones (~2.1).
_LINES_CUM_B2B = (0.2, 0.5, 0.75, 0.9)
_LINES_CUM_B2C = (0.4, 0.7, 0.87, 0.95)

# --- small helpers ------------------------------------------------------------------------


def _money(x: float) -> str:
    return f"{x:.2f}"


@cache
def _iso(day: date) -> str:
    return day.isoformat()


@cache
def _clock(seconds: int) -> str:
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h:02d}:{m:02d}:{s:02d}"


def _ts(day: date, seconds: int) -> str:
    """A China-time timestamp on ``day``; seconds are clipped to the day so no row is future."""
    return f"{_iso(day)} {_clock(max(0, min(86399, int(seconds))))}+08:00"


def _work_seconds(rnd: random.Random, start_h: float = 8.5, end_h: float = 18.5) -> int:
    return int(rnd.uniform(start_h, end_h) * 3600)


def _cny_date(year: int) -> date:
    return _CNY.get(year, date(year, 2, 5))


def _season(day: date, b2b: bool) -> float:
    """Demand multiplier for a day: why: tiers must see Q4 and pre-Chinese-New-Year peaks."""
    f = 1.0
    wd = day.weekday()
    if b2b:
        f *= (1.2, 1.2, 1.15, 1.15, 1.1, 0.45, 0.3)[wd]
    else:
        f *= (0.9, 0.9, 0.9, 0.95, 1.05, 1.25, 1.2)[wd]
    for year in (day.year, day.year + 1):
        to_cny = (_cny_date(year) - day).days
        if 3 < to_cny <= 28:
            f *= 1.35 if b2b else 1.5
        elif -7 <= to_cny <= 3:
            f *= 0.3
    m = day.month
    if m == 10:
        f *= 0.5 if (b2b and day.day <= 7) else 1.05
    elif m == 11:
        f *= 1.25 if b2b else (1.9 if day.day <= 11 else 1.3)
    elif m == 12:
        f *= 1.3
    elif m in (7, 8):
        f *= 0.9
    elif m == 6 and not b2b and day.day <= 18:
        f *= 1.3
    return f


# --- domain records -----------------------------------------------------------------------


@dataclass
class _Customer:
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
            "credit_limit": "" if self.credit_limit is None else _money(self.credit_limit),
            "payment_terms_days": str(self.terms),
            "created_at": self.created_at.isoformat(),
            "updated_at": updated_at,
            "is_active": "true" if self.is_active else "false",
        }


@dataclass
class _Product:
    product_id: str
    name: str
    category: str
    list_price: float
    standard_cost: float
    b2b: bool
    b2c: bool

    def row(self, updated_at: str) -> dict[str, str]:
        return {
            "product_id": self.product_id,
            "product_name": self.name,
            "category": self.category,
            "list_price": _money(self.list_price),
            "standard_cost": _money(self.standard_cost),
            "currency": BASE_CURRENCY,
            "updated_at": updated_at,
        }


class _Entry:
    """A buffered output row; identity equality so equal (duplicated) rows stay distinct."""

    __slots__ = ("values", "bad")

    def __init__(self, values: dict[str, str], bad: dict[str, Any] | None = None) -> None:
        self.values = values
        self.bad = bad


# --- output -------------------------------------------------------------------------------


class _Landing:
    """Writes one CSV per entity and day, and records row counts and bad-row positions."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files = 0
        self.rows: dict[str, int] = {p: 0 for p in ENTITY_PATHS}
        self.bad_rows: list[dict[str, Any]] = []

    def write(self, path: str, day: date, entries: list[_Entry]) -> None:
        if not entries:
            return
        entity = BY_PATH[path]
        rel = f"{path}/{_iso(day)}/{entity.name}_{day:%Y%m%d}.csv"
        target = self.root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        cols = entity.column_names
        values = itemgetter(*cols)  # every row carries every column: a typo fails loudly
        with target.open("w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(cols)
            w.writerows(values(e.values) for e in entries)
        if any(e.bad is not None for e in entries):
            line_of = {id(e): n for n, e in enumerate(entries, start=2)}
            for e in entries:
                if e.bad is not None:
                    self.bad_rows.append(self._bad_record(rel, path, line_of, e))
        self.files += 1
        self.rows[path] += len(entries)

    @staticmethod
    def _bad_record(rel: str, path: str, line_of: dict[int, int], e: _Entry) -> dict[str, Any]:
        bad = dict(e.bad or {})
        original = bad.pop("original", None)
        rec: dict[str, Any] = {"file": rel, "line": line_of[id(e)], "entity": path}
        rec.update(bad)
        if original is not None:
            rec["first_line"] = line_of[id(original)]
        return rec


# --- the generator ------------------------------------------------------------------------


class _Demo:
    """Holds the simulation state; :meth:`run` walks the days and writes each day's deltas."""

    def __init__(self, out: _Landing, customers: int, days: int, seed: int, end: date) -> None:
        self.out = out
        self.n = customers
        self.days = days
        self.start = end - timedelta(days=days - 1)
        self.dates = [self.start + timedelta(days=i) for i in range(days)]
        self.np = np.random.default_rng([seed, 1])
        self.rnd = random.Random(seed * 7919 + 1)  # per-row scalar draws (fast, deterministic)
        self.seq = {"SO": 1000000, "INV": 500000, "TK": 200000, "ACT": 300000}
        self.later: dict[int, list[tuple[str, dict[str, str]]]] = {}
        self.customer_events: dict[int, list[tuple[int, str]]] = {}
        self.ticket_queue: dict[int, list[int]] = {}
        self.buf: dict[str, list[_Entry]] = {}
        self.today = 0
        self.hosts: list[tuple[dict[str, str], list[_Entry]]] = []
        self.fx = self._fx_series()
        self.products = self._make_products()
        self.product_updates = self._plan_product_updates()
        self.customers = self._make_customers()
        self._assign_groups()
        self.created_on: dict[int, list[int]] = {}
        for c in self.customers:
            self.created_on.setdefault(c.created_idx, []).append(c.idx)
        self._behaviour_arrays()
        self._plan_customer_events()
        self.pools = self._product_pools()
        self.bad_plan = self._plan_bad_rows()
        self.bad_pending: list[str] = []
        self.bad_counter = {k: 0 for k in BAD_KINDS}

    # ---- sequences and dates
    def _next(self, prefix: str) -> str:
        self.seq[prefix] += 1
        return f"{prefix}{self.seq[prefix]}"

    def _day(self, i: int) -> date:
        if 0 <= i < self.days:
            return self.dates[i]
        return self.start + timedelta(days=i)

    def _schedule(self, i: int, path: str, row: dict[str, str]) -> None:
        """Write a row on day ``i``: now if that is today, else queue it for that day.

        Rows beyond the range are never delivered (the state stays as last delivered).
        """
        if i == self.today:
            self._emit(path, row)
        elif i < self.days:
            self.later.setdefault(i, []).append((path, row))

    def _emit(self, path: str, row: dict[str, str], bad: dict[str, Any] | None = None) -> _Entry:
        e = _Entry(row, bad)
        self.buf.setdefault(path, []).append(e)
        return e

    # ---- reference series
    def _fx_series(self) -> dict[str, list[float]]:
        """Mean-reverting random walks around 7.1 (USD) and 7.8 (EUR) CNY."""
        out: dict[str, list[float]] = {}
        for cur, mid, vol in (("USD", 7.10, 0.0025), ("EUR", 7.80, 0.004)):
            x, series = mid, []
            for z in self.np.normal(0.0, vol, self.days):
                x = x * math.exp(z) + 0.02 * (mid - x)
                series.append(round(x, 4))
            out[cur] = series
        return out

    def _make_products(self) -> list[_Product]:
        rnd = self.rnd
        products = []
        for k in range(N_PRODUCTS):
            cat, items, (lo, hi), b2b, b2c, (clo, chi) = _CATEGORIES[k % len(_CATEGORIES)]
            cn, en = items[rnd.randrange(len(items))]
            price = math.exp(rnd.uniform(math.log(lo), math.log(hi)))
            price = round(price) - 0.1 if price > 50 else round(price, 1)
            cost = round(price * rnd.uniform(clo, chi), 2)
            model = f"{en.split()[0][:2].upper()}-{100 + k * 7 % 900}"
            products.append(_Product(f"P{10001 + k}", f"{cn} {en} {model}", cat, price, cost,
                                     b2b, b2c))
        return products

    def _plan_product_updates(self) -> dict[int, list[int]]:
        """A few price/cost revisions on a few days, so products are re-delivered too."""
        plan: dict[int, list[int]] = {}
        for frac in (0.3, 0.55, 0.8):
            i = int(self.days * frac)
            if 0 < i < self.days:
                picks = plan.setdefault(i, [])
                picks.extend(k for k in self.rnd.sample(range(N_PRODUCTS), 8) if k not in picks)
        return plan

    # ---- customers
    def _make_customers(self) -> list[_Customer]:
        n, rnd = self.n, self.rnd
        n_initial = max(1, round(n * 0.5)) if self.days > 1 else n
        later = sorted(self.np.integers(1, max(2, self.days), n - n_initial).tolist())
        values = self.np.lognormal(0.0, _VALUE_SIGMA, n)
        out = []
        for k in range(n):
            created_idx = 0 if k < n_initial else int(later[k - n_initial])
            if k < n_initial:
                created_at = self.start - timedelta(days=rnd.randint(20, 3000))
            else:
                created_at = self._day(created_idx)
            out.append(self._new_customer(k, created_idx, created_at, float(values[k])))
        return out

    def _new_customer(self, k: int, created_idx: int, created_at: date, value: float) -> _Customer:
        rnd = self.rnd
        b2b = rnd.random() < 0.45
        abroad = b2b and rnd.random() < 0.08
        if abroad:
            country, city, currency = _ABROAD[rnd.randrange(len(_ABROAD))]
            region = _INTERNATIONAL
            manager = rnd.choice(_MANAGERS_INTL)
        else:
            r = rnd.choices(_REGIONS, weights=[w for *_, w in _REGIONS])[0]
            region, city, country = r[0], rnd.choice(r[1]), "China"
            currency = "USD" if (b2b and rnd.random() < 0.04) else BASE_CURRENCY
            manager = _MANAGERS_CN[(_REGIONS.index(r) * 3 + rnd.randrange(3)) % len(_MANAGERS_CN)]
        if b2b:
            ind = rnd.choice(_INDUSTRIES)
            brand, name = self._company_name(abroad, country, city, ind, rnd)
            channel = rnd.choices(("offline", "distributor", "online"), (0.55, 0.3, 0.15))[0]
            terms = 60 if abroad else rnd.choices((30, 45, 60, 90), (0.4, 0.2, 0.3, 0.1))[0]
            credit = float(max(50_000, round(value * 200_000, -4)))
            payer = rnd.choices(("prompt", "slow", "bad"), (0.7, 0.25, 0.05))[0]
            industry = ind[0]
        else:
            brand = ""
            name = rnd.choice(_WESTERN) if rnd.random() < 0.06 else (
                rnd.choice(_SURNAMES) + rnd.choice(_GIVEN))
            channel = rnd.choices(("online", "offline"), (0.8, 0.2))[0]
            terms, credit, payer, industry, manager = 0, None, "prompt", _CONSUMER_INDUSTRY, ""
        return _Customer(
            idx=k, customer_id=f"C{100001 + k}", name=name, brand=brand, b2b=b2b,
            industry=industry, region=region, country=country, city=city, channel=channel,
            account_manager=manager, credit_limit=credit, terms=terms, created_at=created_at,
            created_idx=created_idx, currency=currency, value=value, payer=payer,
            return_p=0.035 * rnd.lognormvariate(0, 0.6) * (1.0 if b2b else 1.5),
            ticket_factor=rnd.lognormvariate(0, 0.7),
        )

    @staticmethod
    def _company_name(abroad: bool, country: str, city: str, ind: tuple[str, str, str],
                      rnd: random.Random) -> tuple[str, str]:
        """Chinese names (上海恒达贸易有限公司) at home, English ones abroad."""
        if not abroad and rnd.random() < 0.85:
            brand = rnd.choice(_BRANDS_CN)
            suffix = "股份有限公司" if rnd.random() < 0.2 else "有限公司"
            return brand, f"{city}{brand}{ind[1]}{suffix}"
        brand = rnd.choice(_BRANDS_EN)
        where = city if abroad else "Shanghai"
        return brand, f"{brand} {ind[2]} ({where}) {_SUFFIX_EN.get(country, 'Co., Ltd.')}"

    def _assign_groups(self) -> None:
        """Account groups: a few large initial B2B customers become parents of other B2B ones."""
        b2b = [c for c in self.customers if c.b2b]
        initial = sorted((c for c in b2b if c.created_idx == 0), key=lambda c: -c.value)
        n_parents = max(1, round(len(b2b) * 0.04)) if len(b2b) >= 4 else 0
        parents = initial[: n_parents * 3 : 3] if initial else []
        if not parents:
            return
        parent_ids = {p.customer_id for p in parents}
        for c in b2b:
            if c.customer_id in parent_ids or self.rnd.random() >= 0.12:
                continue
            p = self.rnd.choice(parents)
            c.parent_id, c.industry = p.customer_id, p.industry
            if p.brand in _BRANDS_CN and c.country == "China":
                cn_ind = next((i[1] for i in _INDUSTRIES if i[0] == p.industry), "贸易")
                c.name, c.brand = f"{c.city}{p.brand}{cn_ind}有限公司", p.brand
            elif p.brand:
                suffix = _SUFFIX_EN.get(c.country, "Ltd.")
                c.name, c.brand = f"{p.brand} Group ({c.city}) {suffix}", p.brand

    def _behaviour_arrays(self) -> None:
        """Per-customer order-rate parameters as arrays, so each day is one vectorised draw."""
        n, days = self.n, self.days
        cs = self.customers
        self.is_b2b = np.array([c.b2b for c in cs])
        value = np.array([c.value for c in cs])
        base = np.where(self.is_b2b, _RATE_B2B, _RATE_B2C)
        self.rate = np.minimum(base * value**0.55, 0.9)
        self.start_idx = np.array([c.created_idx for c in cs])
        pattern = self.np.choice(len(_PATTERNS), size=n, p=_PATTERN_P)
        self.pattern = pattern
        span = np.maximum(days - self.start_idx, 1)
        u = self.np.random(n)
        self.churn_idx = np.where(pattern == 3, self.start_idx + (0.1 + 0.8 * u) * span, np.inf)
        self.churn_idx = np.where(pattern == 4, -1, self.churn_idx)  # never purchases
        self.decline_start = self.start_idx + self.np.random(n) * 0.6 * span
        self.halflife = self.np.uniform(60, 300, n)
        self.growth_span = span.astype(float)
        self.size_mult = value**0.45
        self.first_order_now = (self.np.random(n) < 0.6) & (self.start_idx > 0) & (pattern != 4)
        self.activity_rate = np.where(
            self.is_b2b, np.minimum(0.01 * value**0.8, 0.25), 0.0015)

    def _trend(self, i: int) -> np.ndarray:
        """Today's per-customer demand factor: growing, fading and churned customers."""
        active = (i >= self.start_idx) & (i < self.churn_idx)
        t = np.ones(self.n)
        grow = self.pattern == 1
        t[grow] = 0.5 + np.clip((i - self.start_idx[grow]) / self.growth_span[grow], 0, 1)
        dec = self.pattern == 2
        since = np.maximum(i - self.decline_start[dec], 0)
        t[dec] = np.maximum(0.5 ** (since / self.halflife[dec]), 0.08)
        return np.where(active, t, 0.0)

    def _plan_customer_events(self) -> None:
        """Attribute changes and deactivations, re-delivered on later days."""
        for c in self.customers:
            if self.rnd.random() < 0.06 and c.created_idx < self.days - 2:
                i = self.rnd.randint(c.created_idx + 1, self.days - 1)
                kind = self.rnd.choice(("credit_limit", "account_manager", "channel", "city")
                                       if c.b2b else ("channel", "city"))
                self.customer_events.setdefault(i, []).append((c.idx, kind))
            churn = self.churn_idx[c.idx]
            if np.isfinite(churn) and churn >= 0 and self.rnd.random() < 0.5:
                i = int(churn) + self.rnd.randint(90, 240)
                if i < self.days:
                    self.customer_events.setdefault(i, []).append((c.idx, "deactivate"))

    def _apply_customer_event(self, c: _Customer, kind: str) -> None:
        rnd = self.rnd
        if kind == "credit_limit" and c.credit_limit is not None:
            c.credit_limit = float(max(50_000, round(c.credit_limit * rnd.uniform(0.6, 1.8), -4)))
        elif kind == "account_manager":
            pool = _MANAGERS_INTL if c.region == _INTERNATIONAL else _MANAGERS_CN
            c.account_manager = rnd.choice([m for m in pool if m != c.account_manager])
        elif kind == "channel":
            opts = ("online", "offline", "distributor") if c.b2b else ("online", "offline")
            c.channel = rnd.choice([o for o in opts if o != c.channel])
        elif kind == "city":
            for region, cities, _ in _REGIONS:
                if region == c.region and len(cities) > 1:
                    c.city = rnd.choice([x for x in cities if x != c.city])
        elif kind == "deactivate":
            c.is_active = False

    # ---- products per customer
    def _product_pools(self) -> dict[bool, tuple[list[int], list[float]]]:
        """Zipf-like popularity per segment, as cumulative weights for fast sampling."""
        pools = {}
        for b2b in (True, False):
            idx = [k for k, p in enumerate(self.products) if (p.b2b if b2b else p.b2c)]
            order = self.rnd.sample(idx, len(idx))
            cum, total = [], 0.0
            for rank in range(len(order)):
                total += 1.0 / (rank + 1) ** 0.8
                cum.append(total)
            pools[b2b] = (order, cum)
        return pools

    # ---- bad rows
    def _plan_bad_rows(self) -> dict[int, list[str]]:
        """Each kind on BAD_PER_KIND distinct days in the first 85% of the range."""
        plan: dict[int, list[str]] = {}
        last = max(1, int(self.days * 0.85))
        candidates = list(range(min(1, last - 1), last))
        for kind in BAD_KINDS:
            for i in sorted(self.rnd.sample(candidates, min(BAD_PER_KIND, len(candidates)))):
                plan.setdefault(i, []).append(kind)
        return plan

    def _inject_bad_rows(self, i: int) -> None:
        """Inject today's planned bad rows; a kind that cannot be placed waits for a later day."""
        todo, self.bad_pending = self.bad_pending + self.bad_plan.get(i, []), []
        done: set[str] = set()
        for kind in todo:
            placed = kind not in done and (
                self._bad_line(i, kind) if BAD_KINDS[kind] == "erp/order_lines"
                else self._bad_order(i, kind))
            if placed:
                done.add(kind)
            else:
                self.bad_pending.append(kind)

    def _bad_order(self, i: int, kind: str) -> bool:
        orders = self.buf.get("erp/orders", [])
        if not orders or not self.hosts:
            return False
        self.bad_counter[kind] += 1
        n = self.bad_counter[kind]
        template = dict(self.hosts[0][0])
        oid = self._next("SO")
        row = {**template, "order_id": oid, "status": "completed"}
        if kind == "unparsable_date":
            y = self._day(i).year
            value = (f"{y}-13-45", f"{y}-02-30", f"{y}-00-15")[(n - 1) % 3]
            row["order_date"], column = value, "order_date"
        elif kind == "unknown_customer":
            value = f"C-UNKNOWN-{n}"
            row["customer_id"], column = value, "customer_id"
        else:
            value = ""
            row["customer_id"], column = value, "customer_id"
        bad = {"kind": kind, "key": {"order_id": oid}, "column": column, "value": value}
        orders.insert(self.rnd.randint(0, len(orders)), _Entry(row, bad))
        return True

    def _bad_line(self, i: int, kind: str) -> bool:
        if not self.hosts:
            return False
        order, lines = self.hosts.pop(self.rnd.randrange(len(self.hosts)))
        self.bad_counter[kind] += 1
        n = self.bad_counter[kind]
        buf = self.buf["erp/order_lines"]
        oid = order["order_id"]
        if kind == "duplicate_key":
            original = lines[self.rnd.randrange(len(lines))]
            row = dict(original.values)
            bad = {"kind": kind, "key": {"order_id": oid, "line_number": int(row["line_number"])},
                   "column": "line_number", "value": row["line_number"], "original": original}
            buf.insert(buf.index(original) + 1, _Entry(row, bad))
            return True
        row = dict(lines[-1].values)
        row["line_number"] = str(len(lines) + 1)
        if kind == "negative_quantity":
            row["quantity"], column = str(-self.rnd.randint(1, 5)), "quantity"
        else:
            row["product_id"], column = f"P-UNKNOWN-{n}", "product_id"
        bad = {"kind": kind, "key": {"order_id": oid, "line_number": len(lines) + 1},
               "column": column, "value": row[column]}
        buf.insert(buf.index(lines[-1]) + 1, _Entry(row, bad))
        return True

    # ---- orders
    def _order_lines(self, c: _Customer, i: int, oid: str, ts: str) -> tuple[list[dict], float]:
        """1-5 distinct products; prices around list, some discounts, unit_cost sometimes empty."""
        rnd = self.rnd
        day = self._day(i)
        order, cum = self.pools[c.b2b]
        n_lines = 1 + bisect(_LINES_CUM_B2B if c.b2b else _LINES_CUM_B2C, rnd.random())
        picks: list[int] = []
        total = cum[-1]
        for _ in range(n_lines * 3):
            k = order[bisect(cum, rnd.random() * total)]
            if k not in picks:
                picks.append(k)
            if len(picks) == n_lines:
                break
        fx = 1.0 if c.currency == BASE_CURRENCY else self.fx[c.currency][i]
        promo = (not c.b2b and day.month == 11 and day.day <= 11) or rnd.random() < 0.12
        contract = min(0.15, 0.03 * max(0.0, math.log(c.value) + 1)) if c.b2b else 0.0
        rows, net = [], 0.0
        for ln, k in enumerate(picks, start=1):
            p = self.products[k]
            if c.b2b:
                base_q = min(max(3000.0 / p.list_price, 1.0), 400.0) * self.size_mult[c.idx]
                qty = max(1, round(rnd.lognormvariate(math.log(base_q), 0.6)))
            else:
                u = rnd.random()
                qty = 1 if u < 0.75 else (2 if u < 0.93 else 3)
            markup = 1.05 if fx != 1.0 else 1.0
            price = round(p.list_price * (1 - contract) * rnd.uniform(0.98, 1.02) * markup / fx, 2)
            gross = qty * price
            disc = round(gross * rnd.uniform(0.05, 0.2), 2) if promo and rnd.random() < 0.6 else 0.0
            if fx == 1.0 and rnd.random() < 0.3:
                cost = ""
            else:
                cost = _money(p.standard_cost * rnd.uniform(0.96, 1.04) / fx)
            net += gross - disc
            rows.append({
                "order_id": oid, "line_number": str(ln), "product_id": p.product_id,
                "quantity": str(qty), "unit_price": _money(price),
                "discount_amount": _money(disc), "unit_cost": cost, "updated_at": ts,
            })
        return rows, net

    def _shipping(self, c: _Customer, net: float, i: int) -> float:
        fx = 1.0 if c.currency == BASE_CURRENCY else self.fx[c.currency][i]
        if not c.b2b:
            free = net > 99 or self.rnd.random() < 0.5
            return 0.0 if free else self.rnd.choice((8.0, 12.0, 15.0))
        base = (400.0 if c.region == _INTERNATIONAL else 50.0) / fx
        return round(base + net * self.rnd.uniform(0.005, 0.02), 2)

    def _new_order(self, c: _Customer, i: int) -> None:
        rnd = self.rnd
        day = self._day(i)
        oid = self._next("SO")
        ts = _ts(day, _work_seconds(rnd) if c.b2b else rnd.randint(7 * 3600, 23 * 3600))
        lines, net = self._order_lines(c, i, oid, ts)
        shipping = self._shipping(c, net, i)
        if c.b2b:
            rep = c.account_manager if rnd.random() < 0.9 else _INSIDE_SALES
        else:
            rep = _STORE_STAFF if c.channel == "offline" else ""
        order = {
            "order_id": oid, "customer_id": c.customer_id, "order_date": _iso(day),
            "status": "completed", "currency": c.currency, "channel": c.channel,
            "sales_rep": rep, "shipping_cost": _money(shipping), "updated_at": ts,
        }
        p_pending = 0.5 if i >= self.days - 2 else _STATUS_PENDING_FIRST
        r = rnd.random()
        redelivered = False
        if r < p_pending:
            order["status"] = "pending"
            lag = rnd.randint(1, 5)
            final = "completed" if rnd.random() < 0.9 else "cancelled"
            later = {**order, "status": final, "updated_at": _ts(self._day(i) + timedelta(lag),
                                                                _work_seconds(rnd))}
            if i + lag < self.days:
                self._schedule(i + lag, "erp/orders", later)
                if final == "completed":
                    self._complete(c, later, i + lag, net + shipping)
            redelivered = True
        elif r < p_pending + _STATUS_CANCELLED:
            order["status"] = "cancelled"
        else:
            redelivered = self._complete(c, order, i, net + shipping)
        self._emit("erp/orders", order)
        entries = [self._emit("erp/order_lines", row) for row in lines]
        if order["status"] == "completed" and not redelivered:
            self.hosts.append((order, entries))

    def _complete(self, c: _Customer, order: dict[str, str], i: int, amount: float) -> bool:
        """A completed order: invoice it, maybe return it later. True if re-delivered later."""
        self._invoice(c, order, i, amount)
        if self.rnd.random() < c.return_p:
            lag = self.rnd.randint(3, 30)
            if i + lag < self.days:
                row = {**order, "status": "returned",
                       "updated_at": _ts(self._day(i + lag), _work_seconds(self.rnd))}
                self._schedule(i + lag, "erp/orders", row)
                return True
        if self.rnd.random() < 0.06 * c.ticket_factor:
            self.ticket_queue.setdefault(i + self.rnd.randint(0, 10), []).append(c.idx)
        return False

    # ---- invoices
    def _invoice(self, c: _Customer, order: dict[str, str], i: int, amount: float) -> None:
        """Invoice at completion; B2B invoices are re-delivered when paid or written off."""
        rnd = self.rnd
        day = self._day(i)
        due_i = i + c.terms
        row = {
            "invoice_id": self._next("INV"), "customer_id": c.customer_id,
            "order_id": order["order_id"], "invoice_date": _iso(day),
            "due_date": _iso(day + timedelta(c.terms)), "amount": _money(amount),
            "currency": c.currency, "paid_date": "", "paid_amount": "", "status": "open",
            "updated_at": _ts(day, _work_seconds(rnd, 17, 21)),
        }
        if c.terms == 0:
            row.update(status="paid", paid_date=_iso(day), paid_amount=_money(amount))
            self._schedule(i, "erp/invoices", row)
            return
        self._schedule(i, "erp/invoices", row)
        if c.payer == "bad" and rnd.random() < 0.06:
            w = due_i + rnd.randint(90, 150)
            self._schedule(w, "erp/invoices", {**row, "status": "written_off",
                                               "updated_at": _ts(self._day(w), 16 * 3600)})
            return
        if c.payer == "prompt":
            delay = min(5, int(rnd.gauss(-4, 5)))
        elif c.payer == "slow":
            delay = int(rnd.gammavariate(2.0, 12.0))
        else:
            delay = int(rnd.gammavariate(2.0, 35.0))
        paid_i = max(i + 1, due_i + delay)
        paid = self._day(paid_i)
        self._schedule(paid_i, "erp/invoices", {
            **row, "status": "paid", "paid_date": _iso(paid), "paid_amount": _money(amount),
            "updated_at": _ts(paid, _work_seconds(rnd, 9, 20)),
        })

    # ---- tickets and activities
    def _open_ticket(self, c: _Customer, i: int) -> None:
        rnd = self.rnd
        day = self._day(i)
        cats = ("delivery", "billing", "product_quality", "technical", "returns", "account")
        cat = rnd.choices(cats, (0.25, 0.15, 0.2, 0.2, 0.1, 0.1))[0]
        prio = rnd.choices(("low", "medium", "high", "urgent"), (0.35, 0.4, 0.2, 0.05))[0]
        minutes = rnd.lognormvariate(math.log(30), 0.8) * {
            "low": 0.7, "medium": 1.0, "high": 1.6, "urgent": 2.5}[prio]
        opened_s = _work_seconds(rnd, 8, 20)
        row = {
            "ticket_id": self._next("TK"), "customer_id": c.customer_id,
            "opened_at": _ts(day, opened_s), "closed_at": "", "category": cat, "priority": prio,
            "handling_minutes": str(round(minutes)), "updated_at": _ts(day, opened_s),
        }
        if rnd.random() < 0.55:
            close_s = min(86399, opened_s + int(minutes * 60) + rnd.randint(600, 4 * 3600))
            row["closed_at"] = row["updated_at"] = _ts(day, close_s)
            self._emit("service/tickets", row)
            return
        row["handling_minutes"] = str(round(minutes * 0.4))
        self._emit("service/tickets", row)
        lag = rnd.randint(1, 14)
        closed = _ts(self._day(i + lag), _work_seconds(rnd, 9, 19))
        self._schedule(i + lag, "service/tickets", {
            **row, "closed_at": closed, "handling_minutes": str(round(minutes)),
            "updated_at": closed})

    def _tickets(self, i: int, trend: np.ndarray) -> None:
        bg = np.where(self.is_b2b, 0.002, 0.0004) * (trend > 0)
        hits = np.nonzero(self.np.random(self.n) < bg)[0].tolist()
        for idx in sorted(hits + self.ticket_queue.pop(i, [])):
            self._open_ticket(self.customers[idx], i)

    def _activities(self, i: int, trend: np.ndarray) -> None:
        """Sales touches, mostly on large B2B accounts; win-back attempts after churn."""
        day = self._day(i)
        created = i >= self.start_idx
        factor = np.where(trend > 0, 1.0, 0.3) * created * (1.0 if day.weekday() < 5 else 0.15)
        hits = np.nonzero(self.np.random(self.n) < self.activity_rate * factor)[0]
        rnd = self.rnd
        for idx in hits.tolist():
            c = self.customers[idx]
            if c.b2b:
                kind = rnd.choices(("visit", "call", "email", "event", "gift"),
                                   (0.25, 0.35, 0.3, 0.05, 0.05))[0]
            else:
                kind = rnd.choices(("email", "event", "gift"), (0.7, 0.1, 0.2))[0]
            lo, hi = {"visit": (200, 3000), "call": (10, 50), "email": (0, 5),
                      "event": (800, 8000), "gift": (100, 2000)}[kind]
            cost = math.exp(rnd.uniform(math.log(lo + 1), math.log(hi)))
            ts = _ts(day, _work_seconds(rnd))
            self._emit("crm/activities", {
                "activity_id": self._next("ACT"), "customer_id": c.customer_id,
                "activity_date": _iso(day), "activity_type": kind, "cost": _money(cost),
                "owner": c.account_manager or "市场部 Marketing", "updated_at": ts,
            })

    # ---- the day loop
    def _day_reference(self, i: int, day: date) -> None:
        for cur in ("USD", "EUR"):
            self._emit("erp/fx_rates", {"rate_date": _iso(day), "currency": cur,
                                        "rate_to_base": f"{self.fx[cur][i]:.4f}"})
        if i == 0:
            ts = _ts(day, 6 * 3600)
            for p in self.products:
                self._emit("erp/products", p.row(ts))
        for k in self.product_updates.get(i, []):
            p = self.products[k]
            p.list_price = round(p.list_price * self.rnd.uniform(1.02, 1.1), 2)
            p.standard_cost = round(min(p.standard_cost * self.rnd.uniform(1.0, 1.08),
                                        p.list_price * 0.9), 2)
            self._emit("erp/products", p.row(_ts(day, _work_seconds(self.rnd))))

    def _day_customers(self, i: int, day: date) -> None:
        for idx in self.created_on.get(i, []):
            c = self.customers[idx]
            self._emit("crm/customers", c.row(_ts(day, _work_seconds(self.rnd))))
        changed: dict[int, None] = {}  # one row per customer and file, even for two changes
        for idx, kind in self.customer_events.get(i, []):
            self._apply_customer_event(self.customers[idx], kind)
            changed[idx] = None
        for idx in changed:
            c = self.customers[idx]
            self._emit("crm/customers", c.row(_ts(day, _work_seconds(self.rnd, 19, 22))))

    def _day_orders(self, i: int, day: date, trend: np.ndarray) -> None:
        growth = 1.0 + 0.15 * i / 365.0
        season = np.where(self.is_b2b, _season(day, True), _season(day, False))
        counts = self.np.poisson(self.rate * trend * season * growth)
        counts += (self.first_order_now & (self.start_idx == i)).astype(counts.dtype)
        for idx in np.nonzero(counts)[0].tolist():
            for _ in range(int(counts[idx])):
                self._new_order(self.customers[idx], i)

    def run(self) -> None:
        for i in range(self.days):
            day = self._day(i)
            self.today, self.buf, self.hosts = i, {}, []
            trend = self._trend(i)
            self._day_reference(i, day)
            self._day_customers(i, day)
            for path, row in self.later.pop(i, []):
                self._emit(path, row)
            self._day_orders(i, day, trend)
            self._inject_bad_rows(i)
            self._tickets(i, trend)
            self._activities(i, trend)
            for path in ENTITY_PATHS:
                self.out.write(path, day, self.buf.get(path, []))


# --- entry point --------------------------------------------------------------------------


def _prepare_landing(landing: Path) -> None:
    """Refuse to mix demo data with real extracts; replace an earlier demo's entity folders."""
    landing.mkdir(parents=True, exist_ok=True)
    owned = [landing / p for p in ENTITY_PATHS]
    if (landing / MANIFEST_NAME).exists():
        for d in owned:
            if d.exists():
                shutil.rmtree(d)
        return
    if any(d.exists() and any(d.rglob("*")) for d in owned):
        raise FileExistsError(
            f"{landing} already holds extracts and no {MANIFEST_NAME}; "
            "generate demo data into an empty landing directory")


def generate(
    landing: Path,
    *,
    customers: int = 3000,
    days: int = 730,
    seed: int = 42,
    end_date: date = date(2026, 11, 20),
) -> dict:
    """Write deterministic demo extracts for ``[end_date - days + 1, end_date]`` to ``landing``.

    Layout: ``<landing>/<system>/<entity>/<YYYY-MM-DD>/<entity>_<YYYYMMDD>.csv`` (UTF-8, header).
    Returns the manifest (also written to ``<landing>/_demo_manifest.json``): parameters, date
    range, file and row counts, every bad row with file and line, and notes.

    An earlier demo in ``landing`` (recognised by its manifest) is replaced; a landing that
    holds other extracts is refused, so real data is never mixed with or overwritten by demo
    data.
    """
    if customers < 2 or days < 1:
        raise ValueError("need customers >= 2 and days >= 1")
    landing = Path(landing)
    _prepare_landing(landing)
    out = _Landing(landing)
    demo = _Demo(out, customers, days, seed, end_date)
    demo.run()
    manifest = {
        "generator": "tierflow.demo",
        "parameters": {"customers": customers, "days": days, "seed": seed,
                       "end_date": end_date.isoformat()},
        "base_currency": BASE_CURRENCY,
        "date_range": {"start": demo.start.isoformat(), "end": end_date.isoformat(),
                       "days": days},
        "files": out.files,
        "rows": dict(out.rows),
        "bad_rows": out.bad_rows,
        "notes": list(NOTES),
    }
    text = json.dumps(manifest, ensure_ascii=False, indent=2) + "\n"
    (landing / MANIFEST_NAME).write_text(text, encoding="utf-8")
    return manifest
