"""The demo's contacts besides orders: service tickets (service/tickets), a background rate
plus tickets after orders, and sales activities (crm/activities), mostly on large B2B
accounts, with win-back attempts after churn. They carry the cost-to-serve the tiering
weighs against revenue."""

from __future__ import annotations

import math

import numpy as np

from tierflow.demo.customers import Behaviour, Customer
from tierflow.demo.simulation import Simulation
from tierflow.demo.values import iso, money, ts, work_seconds


def open_tickets(sim: Simulation, i: int, trend: np.ndarray, customers: list[Customer],
                 behaviour: Behaviour) -> None:
    """Today's tickets: a background draw per active customer plus those queued after orders."""
    bg = np.where(behaviour.is_b2b, 0.002, 0.0004) * (trend > 0)
    hits = np.nonzero(sim.np.random(sim.n) < bg)[0].tolist()
    for idx in sorted(hits + sim.ticket_queue.pop(i, [])):
        _open_ticket(sim, customers[idx], i)


def _open_ticket(sim: Simulation, c: Customer, i: int) -> None:
    """A ticket closed the same day, or opened now and re-delivered closed 1-14 days later."""
    rnd = sim.rnd
    day = sim.day(i)
    cats = ("delivery", "billing", "product_quality", "technical", "returns", "account")
    cat = rnd.choices(cats, (0.25, 0.15, 0.2, 0.2, 0.1, 0.1))[0]
    prio = rnd.choices(("low", "medium", "high", "urgent"), (0.35, 0.4, 0.2, 0.05))[0]
    minutes = rnd.lognormvariate(math.log(30), 0.8) * {
        "low": 0.7, "medium": 1.0, "high": 1.6, "urgent": 2.5}[prio]
    opened_s = work_seconds(rnd, 8, 20)
    row = {
        "ticket_id": sim.next_id("TK"), "customer_id": c.customer_id,
        "opened_at": ts(day, opened_s), "closed_at": "", "category": cat, "priority": prio,
        "handling_minutes": str(round(minutes)), "updated_at": ts(day, opened_s),
    }
    if rnd.random() < 0.55:
        close_s = min(86399, opened_s + int(minutes * 60) + rnd.randint(600, 4 * 3600))
        row["closed_at"] = row["updated_at"] = ts(day, close_s)
        sim.emit("service/tickets", row)
        return
    row["handling_minutes"] = str(round(minutes * 0.4))
    sim.emit("service/tickets", row)
    lag = rnd.randint(1, 14)
    closed = ts(sim.day(i + lag), work_seconds(rnd, 9, 19))
    sim.schedule(i + lag, "service/tickets", {
        **row, "closed_at": closed, "handling_minutes": str(round(minutes)),
        "updated_at": closed})


def log_activities(sim: Simulation, i: int, trend: np.ndarray, customers: list[Customer],
                   behaviour: Behaviour) -> None:
    """Sales touches, mostly on large B2B accounts; win-back attempts after churn."""
    day = sim.day(i)
    created = i >= behaviour.start_idx
    factor = np.where(trend > 0, 1.0, 0.3) * created * (1.0 if day.weekday() < 5 else 0.15)
    hits = np.nonzero(sim.np.random(sim.n) < behaviour.activity_rate * factor)[0]
    rnd = sim.rnd
    for idx in hits.tolist():
        c = customers[idx]
        if c.b2b:
            kind = rnd.choices(("visit", "call", "email", "event", "gift"),
                               (0.25, 0.35, 0.3, 0.05, 0.05))[0]
        else:
            kind = rnd.choices(("email", "event", "gift"), (0.7, 0.1, 0.2))[0]
        lo, hi = {"visit": (200, 3000), "call": (10, 50), "email": (0, 5),
                  "event": (800, 8000), "gift": (100, 2000)}[kind]
        cost = math.exp(rnd.uniform(math.log(lo + 1), math.log(hi)))
        stamp = ts(day, work_seconds(rnd))
        sim.emit("crm/activities", {
            "activity_id": sim.next_id("ACT"), "customer_id": c.customer_id,
            "activity_date": iso(day), "activity_type": kind, "cost": money(cost),
            "owner": c.account_manager or "市场部 Marketing", "updated_at": stamp,
        })
