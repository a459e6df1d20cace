"""Reference data of the demo company: where customers are, what they are called and what
they buy (the product catalogue, erp/products), the exchange rates (erp/fx_rates), and the
calendar that shapes demand (Chinese New Year, Double Eleven, Q4)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import date

import numpy as np

from tierflow.demo.values import money

BASE_CURRENCY = "CNY"

# region -> cities (Chinese name); international customers use ABROAD.
REGIONS: tuple[tuple[str, tuple[str, ...], float], ...] = (
    ("华东 / East China", ("上海", "杭州", "南京", "苏州", "宁波", "合肥", "青岛"), 0.30),
    ("华南 / South China", ("广州", "深圳", "东莞", "厦门", "南宁"), 0.20),
    ("华北 / North China", ("北京", "天津", "石家庄", "太原"), 0.17),
    ("华中 / Central China", ("武汉", "长沙", "郑州", "南昌"), 0.11),
    ("西南 / Southwest China", ("成都", "重庆", "昆明", "贵阳"), 0.09),
    ("西北 / Northwest China", ("西安", "兰州", "乌鲁木齐"), 0.05),
    ("东北 / Northeast China", ("沈阳", "大连", "哈尔滨", "长春"), 0.08),
)
INTERNATIONAL = "海外 / International"
ABROAD: tuple[tuple[str, str, str], ...] = (
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
INDUSTRIES: tuple[tuple[str, str, str], ...] = (  # label, Chinese name part, English part
    ("制造业 / Manufacturing", "制造", "Manufacturing"),
    ("批发零售 / Wholesale & Retail", "贸易", "Trading"),
    ("电子科技 / Electronics & Tech", "科技", "Technologies"),
    ("医疗健康 / Healthcare", "医疗器械", "Medical"),
    ("物流运输 / Logistics", "物流", "Logistics"),
    ("建筑建材 / Construction", "建材", "Building Materials"),
    ("食品饮料 / Food & Beverage", "食品", "Foods"),
    ("化工能源 / Chemicals & Energy", "化工", "Chemicals"),
)
CONSUMER_INDUSTRY = "个人消费者 / Consumer"
BRANDS_CN = (
    "恒达", "华信", "鑫源", "博远", "中联", "宏图", "瑞丰", "天成", "金桥", "永盛", "海纳", "东方",
    "新锐", "合力", "星辰", "德润", "嘉禾", "远航", "汇通", "盛世", "明辉", "安泰", "锦程", "振华",
)
BRANDS_EN = (
    "Apex", "Northwind", "Bluestone", "Evergreen", "Summit", "Harbor", "Vertex", "Pioneer",
    "Crescent", "Meridian", "Silverline", "Orion", "Keystone", "Redwood", "Atlas", "Lumen",
)
SUFFIX_EN = {
    "United States": "Inc.", "Singapore": "Pte. Ltd.", "Vietnam": "Co., Ltd.",
    "United Arab Emirates": "LLC", "Germany": "GmbH", "France": "S.A.S.", "Netherlands": "B.V.",
    "China": "Co., Ltd.",
}
SURNAMES = ("王", "李", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴", "徐", "孙", "马", "朱")
GIVEN = ("伟", "芳", "娜", "敏", "静", "磊", "洋", "艳", "勇", "军", "杰", "婷", "强", "丽", "涛",
         "明", "超", "秀英", "晓东", "子涵", "浩然", "欣怡")
WESTERN = ("Anna Schmidt", "James Miller", "Laura Rossi", "Tom Becker", "Sophie Martin",
           "Daniel Kim", "Olivia Brown", "Lucas Weber")
MANAGERS_CN = ("张伟 Zhang Wei", "李娜 Li Na", "王磊 Wang Lei", "刘洋 Liu Yang", "陈静 Chen Jing",
               "杨帆 Yang Fan", "赵敏 Zhao Min", "黄晓东 Huang Xiaodong", "周婷 Zhou Ting",
               "吴强 Wu Qiang")
MANAGERS_INTL = ("Emily Chen", "David Müller", "Sarah Johnson", "Kenji Sato")
INSIDE_SALES = "内销组 Inside Sales"
STORE_STAFF = "门店 Store Staff"

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


def _cny_date(year: int) -> date:
    return _CNY.get(year, date(year, 2, 5))


def season(day: date, b2b: bool) -> float:
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


@dataclass
class Product:
    """One product of the catalogue, as written to erp/products."""

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
            "list_price": money(self.list_price),
            "standard_cost": money(self.standard_cost),
            "currency": BASE_CURRENCY,
            "updated_at": updated_at,
        }

    def revise(self, rnd: random.Random) -> None:
        """A price rise of 2-10%, and a cost rise that stays below 90% of the new price."""
        self.list_price = round(self.list_price * rnd.uniform(1.02, 1.1), 2)
        self.standard_cost = round(min(self.standard_cost * rnd.uniform(1.0, 1.08),
                                       self.list_price * 0.9), 2)


def fx_series(days: int, draws: np.random.Generator) -> dict[str, list[float]]:
    """Daily CNY rates: mean-reverting random walks around 7.1 (USD) and 7.8 (EUR)."""
    out: dict[str, list[float]] = {}
    for cur, mid, vol in (("USD", 7.10, 0.0025), ("EUR", 7.80, 0.004)):
        x, series = mid, []
        for z in draws.normal(0.0, vol, days):
            x = x * math.exp(z) + 0.02 * (mid - x)
            series.append(round(x, 4))
        out[cur] = series
    return out


def make_products(rnd: random.Random) -> list[Product]:
    """The catalogue: N_PRODUCTS products cycling through the categories."""
    products = []
    for k in range(N_PRODUCTS):
        cat, items, (lo, hi), b2b, b2c, (clo, chi) = _CATEGORIES[k % len(_CATEGORIES)]
        cn, en = items[rnd.randrange(len(items))]
        price = math.exp(rnd.uniform(math.log(lo), math.log(hi)))
        price = round(price) - 0.1 if price > 50 else round(price, 1)
        cost = round(price * rnd.uniform(clo, chi), 2)
        model = f"{en.split()[0][:2].upper()}-{100 + k * 7 % 900}"
        products.append(Product(f"P{10001 + k}", f"{cn} {en} {model}", cat, price, cost,
                                b2b, b2c))
    return products


def plan_product_updates(days: int, rnd: random.Random) -> dict[int, list[int]]:
    """A few price/cost revisions on a few days, so products are re-delivered too."""
    plan: dict[int, list[int]] = {}
    for frac in (0.3, 0.55, 0.8):
        i = int(days * frac)
        if 0 < i < days:
            picks = plan.setdefault(i, [])
            picks.extend(k for k in rnd.sample(range(N_PRODUCTS), 8) if k not in picks)
    return plan
