"""Orders, their lines and invoices (erp/orders, erp/order_lines, erp/invoices): what the
demo's customers buy each day, and how each order lives on (pending -> completed or
cancelled, returned, paid late or written off), re-delivered on the day it changes."""

from __future__ import annotations

import math
from bisect import bisect
from datetime import date, timedelta

import numpy as np

from tierflow.demo.customers import Behaviour, Customer
from tierflow.demo.reference import BASE_CURRENCY, INSIDE_SALES, INTERNATIONAL, STORE_STAFF, Product, season
from tierflow.demo.simulation import Simulation
from tierflow.demo.values import iso, money, ts, work_seconds

_STATUS_PENDING_FIRST = 0.06
_STATUS_CANCELLED = 0.03
# P(lines <= k) for k = 1..4: B2B baskets are bigger (mean ~2.6) than B2C ones (~2.1).
_LINES_CUM_B2B = (0.2, 0.5, 0.75, 0.9)
_LINES_CUM_B2C = (0.4, 0.7, 0.87, 0.95)

# per segment (True: B2B): product indexes by popularity, and their cumulative weights
ProductPools = dict[bool, tuple[list[int], list[float]]]


def product_pools(products: list[Product], sim: Simulation) -> ProductPools:
    """Zipf-like popularity per segment, as cumulative weights for fast sampling."""
    pools = {}
    for b2b in (True, False):
        idx = [k for k, p in enumerate(products) if (p.b2b if b2b else p.b2c)]
        order = sim.rnd.sample(idx, len(idx))
        cum, total = [], 0.0
        for rank in range(len(order)):
            total += 1.0 / (rank + 1) ** 0.8
            cum.append(total)
        pools[b2b] = (order, cum)
    return pools


class Orders:
    """Places each day's orders and schedules what becomes of them."""

    def __init__(self, sim: Simulation, products: list[Product], fx: dict[str, list[float]],
                 pools: ProductPools, behaviour: Behaviour) -> None:
        self.sim = sim
        self.products = products
        self.fx = fx
        self.pools = pools
        self.behaviour = behaviour

    def place_day(self, i: int, day: date, trend: np.ndarray, customers: list[Customer]) -> None:
        """Today's orders: a Poisson draw per customer from rate, trend, season and growth."""
        b = self.behaviour
        growth = 1.0 + 0.15 * i / 365.0
        seasonal = np.where(b.is_b2b, season(day, True), season(day, False))
        counts = self.sim.np.poisson(b.rate * trend * seasonal * growth)
        counts += (b.first_order_now & (b.start_idx == i)).astype(counts.dtype)
        for idx in np.nonzero(counts)[0].tolist():
            for _ in range(int(counts[idx])):
                self._new_order(customers[idx], i)

    def _order_lines(self, c: Customer, i: int, oid: str, stamp: str) -> tuple[list[dict], float]:
        """1-5 distinct products; prices around list, some discounts, unit_cost sometimes empty."""
        rnd = self.sim.rnd
        day = self.sim.day(i)
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
                base_q = min(max(3000.0 / p.list_price, 1.0), 400.0) * self.behaviour.size_mult[c.idx]
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
                cost = money(p.standard_cost * rnd.uniform(0.96, 1.04) / fx)
            net += gross - disc
            rows.append({
                "order_id": oid, "line_number": str(ln), "product_id": p.product_id,
                "quantity": str(qty), "unit_price": money(price),
                "discount_amount": money(disc), "unit_cost": cost, "updated_at": stamp,
            })
        return rows, net

    def _shipping(self, c: Customer, net: float, i: int) -> float:
        rnd = self.sim.rnd
        fx = 1.0 if c.currency == BASE_CURRENCY else self.fx[c.currency][i]
        if not c.b2b:
            free = net > 99 or rnd.random() < 0.5
            return 0.0 if free else rnd.choice((8.0, 12.0, 15.0))
        base = (400.0 if c.region == INTERNATIONAL else 50.0) / fx
        return round(base + net * rnd.uniform(0.005, 0.02), 2)

    def _new_order(self, c: Customer, i: int) -> None:
        sim = self.sim
        rnd = sim.rnd
        day = sim.day(i)
        oid = sim.next_id("SO")
        stamp = ts(day, work_seconds(rnd) if c.b2b else rnd.randint(7 * 3600, 23 * 3600))
        lines, net = self._order_lines(c, i, oid, stamp)
        shipping = self._shipping(c, net, i)
        if c.b2b:
            rep = c.account_manager if rnd.random() < 0.9 else INSIDE_SALES
        else:
            rep = STORE_STAFF if c.channel == "offline" else ""
        order = {
            "order_id": oid, "customer_id": c.customer_id, "order_date": iso(day),
            "status": "completed", "currency": c.currency, "channel": c.channel,
            "sales_rep": rep, "shipping_cost": money(shipping), "updated_at": stamp,
        }
        p_pending = 0.5 if i >= sim.days - 2 else _STATUS_PENDING_FIRST
        r = rnd.random()
        redelivered = False
        if r < p_pending:
            order["status"] = "pending"
            lag = rnd.randint(1, 5)
            final = "completed" if rnd.random() < 0.9 else "cancelled"
            later = {**order, "status": final, "updated_at": ts(sim.day(i) + timedelta(lag),
                                                               work_seconds(rnd))}
            if i + lag < sim.days:
                sim.schedule(i + lag, "erp/orders", later)
                if final == "completed":
                    self._complete(c, later, i + lag, net + shipping)
            redelivered = True
        elif r < p_pending + _STATUS_CANCELLED:
            order["status"] = "cancelled"
        else:
            redelivered = self._complete(c, order, i, net + shipping)
        sim.emit("erp/orders", order)
        entries = [sim.emit("erp/order_lines", row) for row in lines]
        if order["status"] == "completed" and not redelivered:
            sim.hosts.append((order, entries))

    def _complete(self, c: Customer, order: dict[str, str], i: int, amount: float) -> bool:
        """A completed order: invoice it, maybe return it later. True if re-delivered later."""
        sim = self.sim
        self._invoice(c, order, i, amount)
        if sim.rnd.random() < c.return_p:
            lag = sim.rnd.randint(3, 30)
            if i + lag < sim.days:
                row = {**order, "status": "returned",
                       "updated_at": ts(sim.day(i + lag), work_seconds(sim.rnd))}
                sim.schedule(i + lag, "erp/orders", row)
                return True
        if sim.rnd.random() < 0.06 * c.ticket_factor:
            sim.ticket_queue.setdefault(i + sim.rnd.randint(0, 10), []).append(c.idx)
        return False

    def _invoice(self, c: Customer, order: dict[str, str], i: int, amount: float) -> None:
        """Invoice at completion; B2B invoices are re-delivered when paid or written off."""
        sim = self.sim
        rnd = sim.rnd
        day = sim.day(i)
        due_i = i + c.terms
        row = {
            "invoice_id": sim.next_id("INV"), "customer_id": c.customer_id,
            "order_id": order["order_id"], "invoice_date": iso(day),
            "due_date": iso(day + timedelta(c.terms)), "amount": money(amount),
            "currency": c.currency, "paid_date": "", "paid_amount": "", "status": "open",
            "updated_at": ts(day, work_seconds(rnd, 17, 21)),
        }
        if c.terms == 0:
            row.update(status="paid", paid_date=iso(day), paid_amount=money(amount))
            sim.schedule(i, "erp/invoices", row)
            return
        sim.schedule(i, "erp/invoices", row)
        if c.payer == "bad" and rnd.random() < 0.06:
            w = due_i + rnd.randint(90, 150)
            sim.schedule(w, "erp/invoices", {**row, "status": "written_off",
                                             "updated_at": ts(sim.day(w), 16 * 3600)})
            return
        if c.payer == "prompt":
            delay = min(5, int(rnd.gauss(-4, 5)))
        elif c.payer == "slow":
            delay = int(rnd.gammavariate(2.0, 12.0))
        else:
            delay = int(rnd.gammavariate(2.0, 35.0))
        paid_i = max(i + 1, due_i + delay)
        paid = sim.day(paid_i)
        sim.schedule(paid_i, "erp/invoices", {
            **row, "status": "paid", "paid_date": iso(paid), "paid_amount": money(amount),
            "updated_at": ts(paid, work_seconds(rnd, 9, 20)),
        })
