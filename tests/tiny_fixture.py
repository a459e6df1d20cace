"""A ten-customer landing folder small enough to compute every expected value by hand.

As-of date A = 2026-03-31, RFM window (2025-03-31, 2026-03-31]. All money in CNY.
P1: standard cost 6, sold at 10 (margin 4 a unit). P2: standard cost 30, sold at 50
(margin 20 a unit). Completed orders, one line each, unless stated:

| customer | completed orders in window            | line       | monetary | margin | last order |
|----------|---------------------------------------|------------|---------:|-------:|------------|
| C01      | 2025-12-01, 2026-01-01, -02-01, -03-01, -03-30 | P2 10 x 50 | 2500 | 1000 | 2026-03-30 |
| C02      | 2025-10-15, 2025-12-15, 2026-02-15, -03-25     | P2 8 x 50  | 1600 |  640 | 2026-03-25 |
| C03      | 2026-03-20 (unit_cost 45)             | P2 60 x 50 |     3000 |    300 | 2026-03-20 |
| C04      | 2025-11-10, 2026-01-10, 2026-03-10    | P1 30 x 10 |      900 |    360 | 2026-03-10 |
| C05      | 28th of 2025-09 .. 2026-02 (6 orders) | P1 20 x 10 |     1200 |    480 | 2026-02-28 |
| C06      | 2025-11-30, 2026-01-31                | P1 20 x 10 |      400 |    160 | 2026-01-31 |
| C07      | 2025-12-31                            | P1 10 x 10 |      100 |     40 | 2025-12-31 |
| C08      | 2025-05-31, 2025-06-30                | P2 7 x 50  |      700 |    280 | 2025-06-30 |
| C09      | none (one order 2024-12-01, P1 10 x 10, before the window) | | 0 | 0 | 2024-12-01 |
| C10      | none, never ordered                   |            |        0 |      0 |            |

Orders that must not count: C01 cancelled 2026-03-15 (P2 100 x 50), C04 returned
2026-02-10 (P1 50 x 10), C02 pending 2026-03-31 (P2 1 x 50).

Bad rows (each must land in rejects with its reason): an order for unknown customer
C99, an order line with quantity -5, and an exact duplicate order line.

The sales team's view (write_sales_team_extracts, delivered on 2026-03-31 on top of the
above; no amount changes): account managers, order channels and sales reps, and two more
product categories.

| customer | account manager | order channels (in date order)        | orders' sales_rep            |
|----------|-----------------|---------------------------------------|------------------------------|
| C01      | Wang Fang       | online x 5                            | Wang Fang                    |
| C02      | Wang Fang       | offline, online, offline, online      | Wang Fang                    |
| C03      | Wang Fang       | offline                               | Zhou Qiang (no book of his own) |
| C04      | Li Lei          | distributor x 3                       | Li Lei                       |
| C05      | Li Lei          | online x 6                            | Li Lei; C05-6 (02-28) Wang Fang |
| C06      | Li Lei          | offline, online                       | Li Lei                       |
| C07      | Li Lei          | online                                | Li Lei                       |
| C08      | Wang Fang       | none delivered x 2                    | none                         |
| C09      | Li Lei          | online                                | Li Lei                       |
| C10      | none            |                                       |                              |

Products P3 (services, as P2: cost 30, price 50) and P4 (tools, as P1: cost 6, price 10)
replace the product of C01's last two orders (C01-4, C01-5: P2 -> P3) and of C04's last
order (C04-3: P1 -> P4), so revenue and margin stay as in the table above.
"""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

AS_OF = date(2026, 3, 31)

CUSTOMERS_HEADER = [
    "customer_id", "customer_name", "customer_type", "region", "channel",
    "account_manager", "created_at", "updated_at", "is_active",
]
PRODUCTS_HEADER = ["product_id", "product_name", "category", "list_price", "standard_cost",
                   "currency", "updated_at"]
ORDERS_HEADER = ["order_id", "customer_id", "order_date", "status", "currency", "channel",
                 "updated_at"]
LINES_HEADER = ["order_id", "line_number", "product_id", "quantity", "unit_price",
                "discount_amount", "unit_cost", "updated_at"]

# (customer, [order dates], product, quantity, unit_price, unit_cost or "")
COMPLETED = [
    ("C01", ["2025-12-01", "2026-01-01", "2026-02-01", "2026-03-01", "2026-03-30"], "P2", 10, 50, ""),
    ("C02", ["2025-10-15", "2025-12-15", "2026-02-15", "2026-03-25"], "P2", 8, 50, ""),
    ("C03", ["2026-03-20"], "P2", 60, 50, "45"),
    ("C04", ["2025-11-10", "2026-01-10", "2026-03-10"], "P1", 30, 10, ""),
    ("C05", ["2025-09-28", "2025-10-28", "2025-11-28", "2025-12-28", "2026-01-28", "2026-02-28"],
     "P1", 20, 10, ""),
    ("C06", ["2025-11-30", "2026-01-31"], "P1", 20, 10, ""),
    ("C07", ["2025-12-31"], "P1", 10, 10, ""),
    ("C08", ["2025-05-31", "2025-06-30"], "P2", 7, 50, ""),
    ("C09", ["2024-12-01"], "P1", 10, 10, ""),
]
NOT_COUNTED = [  # (order_id, customer, date, status, product, qty, price)
    ("X-CANCEL", "C01", "2026-03-15", "cancelled", "P2", 100, 50),
    ("X-RETURN", "C04", "2026-02-10", "returned", "P1", 50, 10),
    ("X-PENDING", "C02", "2026-03-31", "pending", "P2", 1, 50),
]


def _write(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


# (name, customer_type, region) of C01 .. C10
CUSTOMER_ATTRIBUTES = [
    ("上海恒达贸易有限公司", "b2b", "华东 / East China"),
    ("Northwind Traders", "b2b", "华北 / North China"),
    ("李娜", "b2c", "华南 / South China"),
    ("Contoso Ltd", "b2b", "华东 / East China"),
    ("北京新材料科技", "b2b", "华北 / North China"),
    ("Zhang Wei", "b2c", "西南 / Southwest China"),
    ("Fabrikam", "b2b", "华南 / South China"),
    ("陈静", "b2c", "华东 / East China"),
    ("Adventure Works", "b2b", "华中 / Central China"),
    ("Tailspin Toys", "b2c", "华北 / North China"),
]


def write_tiny_landing(landing: Path) -> dict:
    """Write the fixture; return the expected ingest counts per file (rows, rejected)."""
    customers = [
        [f"C{i:02d}", name, kind, region, "online", "王芳 / Wang Fang", "2024-11-01",
         "2024-11-30T08:00:00", "true"]
        for i, (name, kind, region) in enumerate(CUSTOMER_ATTRIBUTES, start=1)
    ]
    _write(landing / "crm/customers/2024-11-30/customers.csv", CUSTOMERS_HEADER, customers)
    _write(
        landing / "erp/products/2024-11-30/products.csv",
        PRODUCTS_HEADER,
        [["P1", "Widget", "parts", "10", "6", "CNY", "2024-11-30T08:00:00"],
         ["P2", "Gadget", "devices", "50", "30", "CNY", "2024-11-30T08:00:00"]],
    )
    by_folder: dict[str, tuple[list, list]] = {}

    def folder_for(d: str) -> str:
        return "2025-12-31" if d <= "2025-12-31" else "2026-03-31"

    for cust, dates, product, qty, price, unit_cost in COMPLETED:
        for n, d in enumerate(dates, start=1):
            oid = f"{cust}-{n}"
            orders, lines = by_folder.setdefault(folder_for(d), ([], []))
            orders.append([oid, cust, d, "completed", "CNY", "online", f"{d}T12:00:00"])
            lines.append([oid, 1, product, qty, price, "", unit_cost, f"{d}T12:00:00"])
    for oid, cust, d, status, product, qty, price in NOT_COUNTED:
        orders, lines = by_folder.setdefault(folder_for(d), ([], []))
        orders.append([oid, cust, d, status, "CNY", "online", f"{d}T12:00:00"])
        lines.append([oid, 1, product, qty, price, "", "", f"{d}T12:00:00"])
    # bad rows, in the newest folder
    orders, lines = by_folder["2026-03-31"]
    orders.append(["X-UNKNOWN", "C99", "2026-03-30", "completed", "CNY", "online", "2026-03-30T12:00:00"])
    lines.append(["C03-1", 2, "P1", -5, 10, "", "", "2026-03-20T12:00:00"])
    lines.append(list(lines[0]))  # exact duplicate of the folder's first line
    expected = {}
    for folder, (orders, lines) in by_folder.items():
        _write(landing / f"erp/orders/{folder}/orders.csv", ORDERS_HEADER, orders)
        _write(landing / f"erp/order_lines/{folder}/order_lines.csv", LINES_HEADER, lines)
        expected[f"erp/orders/{folder}/orders.csv"] = len(orders)
        expected[f"erp/order_lines/{folder}/order_lines.csv"] = len(lines)
    expected["crm/customers/2024-11-30/customers.csv"] = 10
    expected["erp/products/2024-11-30/products.csv"] = 2
    return expected


WANG_FANG = "王芳 / Wang Fang"
LI_LEI = "李雷 / Li Lei"
ZHOU_QIANG = "周强 / Zhou Qiang"
ACCOUNT_MANAGERS = {
    "C01": WANG_FANG, "C02": WANG_FANG, "C03": WANG_FANG, "C08": WANG_FANG,
    "C04": LI_LEI, "C05": LI_LEI, "C06": LI_LEI, "C07": LI_LEI, "C09": LI_LEI, "C10": "",
}
# order id -> (channel, sales_rep); "" = not delivered
ORDER_CHANNELS = {
    **{f"C01-{n}": ("online", WANG_FANG) for n in range(1, 6)},
    "C02-1": ("offline", WANG_FANG), "C02-2": ("online", WANG_FANG),
    "C02-3": ("offline", WANG_FANG), "C02-4": ("online", WANG_FANG),
    "C03-1": ("offline", ZHOU_QIANG),
    **{f"C04-{n}": ("distributor", LI_LEI) for n in range(1, 4)},
    **{f"C05-{n}": ("online", LI_LEI) for n in range(1, 6)},
    "C05-6": ("online", WANG_FANG),
    "C06-1": ("offline", LI_LEI), "C06-2": ("online", LI_LEI),
    "C07-1": ("online", LI_LEI),
    "C08-1": ("", ""), "C08-2": ("", ""),
    "C09-1": ("online", LI_LEI),
}
RECATEGORISED = {"C01-4": "P3", "C01-5": "P3", "C04-3": "P4"}


def write_sales_team_extracts(landing: Path) -> None:
    """Account managers, order channels, sales reps and two more categories (module docstring),
    delivered on 2026-03-31 as corrections of the fixture's rows: no amount changes."""
    folder, updated = "2026-03-31", "2026-03-31T09:00:00"
    _write(
        landing / f"crm/customers/{folder}/customers_sales_team.csv",
        CUSTOMERS_HEADER,
        [[f"C{i:02d}", name, kind, region, "online", ACCOUNT_MANAGERS[f"C{i:02d}"], "2024-11-01", updated,
          "true"] for i, (name, kind, region) in enumerate(CUSTOMER_ATTRIBUTES, start=1)],
    )
    _write(
        landing / f"erp/products/{folder}/products_more.csv",
        PRODUCTS_HEADER,
        [["P3", "Gadget care", "services", "50", "30", "CNY", updated],
         ["P4", "Widget kit", "tools", "10", "6", "CNY", updated]],
    )
    orders, lines = [], []
    for cust, dates, _product, qty, price, unit_cost in COMPLETED:
        for n, d in enumerate(dates, start=1):
            oid = f"{cust}-{n}"
            channel, rep = ORDER_CHANNELS[oid]
            orders.append([oid, cust, d, "completed", "CNY", channel, rep, updated])
            if oid in RECATEGORISED:
                lines.append([oid, 1, RECATEGORISED[oid], qty, price, "", unit_cost, updated])
    _write(landing / f"erp/orders/{folder}/orders_sales_team.csv",
           [*ORDERS_HEADER[:-1], "sales_rep", "updated_at"], orders)
    _write(landing / f"erp/order_lines/{folder}/order_lines_categories.csv", LINES_HEADER, lines)
