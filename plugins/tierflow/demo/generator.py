"""The demo's day loop and its entry point, :func:`generate`.

The parts are set up, and each day's rows drawn, in one fixed order (the order below): every
part draws from the same two seeded generators, so changing the order changes every file.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from tierflow.demo.bad_rows import BadRows
from tierflow.demo.customers import (
    apply_customer_event,
    assign_groups,
    draw_behaviour,
    make_customers,
    plan_customer_events,
)
from tierflow.demo.orders import Orders, product_pools
from tierflow.demo.reference import BASE_CURRENCY, fx_series, make_products, plan_product_updates
from tierflow.demo.simulation import Simulation
from tierflow.demo.touches import log_activities, open_tickets
from tierflow.demo.values import iso, ts, work_seconds
from tierflow.demo.writer import ENTITY_PATHS, NOTES, Landing, prepare_landing, write_manifest


class DemoCompany:
    """The simulated company; :meth:`run` walks the days and writes each day's deltas."""

    def __init__(self, out: Landing, customers: int, days: int, seed: int, end: date) -> None:
        self.out = out
        self.sim = sim = Simulation(customers, days, seed, end)
        self.fx = fx_series(days, sim.np)
        self.products = make_products(sim.rnd)
        self.product_updates = plan_product_updates(days, sim.rnd)
        self.customers = make_customers(sim)
        assign_groups(self.customers, sim.rnd)
        self.created_on: dict[int, list[int]] = {}
        for c in self.customers:
            self.created_on.setdefault(c.created_idx, []).append(c.idx)
        self.behaviour = draw_behaviour(self.customers, sim)
        self.customer_events = plan_customer_events(self.customers, self.behaviour, sim)
        pools = product_pools(self.products, sim)
        self.orders = Orders(sim, self.products, self.fx, pools, self.behaviour)
        self.bad_rows = BadRows(sim)

    def _reference(self, i: int, day: date) -> None:
        """Today's exchange rates; the catalogue on the first day, revised products later."""
        sim = self.sim
        for cur in ("USD", "EUR"):
            sim.emit("erp/fx_rates", {"rate_date": iso(day), "currency": cur,
                                      "rate_to_base": f"{self.fx[cur][i]:.4f}"})
        if i == 0:
            stamp = ts(day, 6 * 3600)
            for p in self.products:
                sim.emit("erp/products", p.row(stamp))
        for k in self.product_updates.get(i, []):
            p = self.products[k]
            p.revise(sim.rnd)
            sim.emit("erp/products", p.row(ts(day, work_seconds(sim.rnd))))

    def _customers(self, i: int, day: date) -> None:
        """Customers who join today, and today's changes to existing ones."""
        sim = self.sim
        for idx in self.created_on.get(i, []):
            c = self.customers[idx]
            sim.emit("crm/customers", c.row(ts(day, work_seconds(sim.rnd))))
        changed: dict[int, None] = {}  # one row per customer and file, even for two changes
        for idx, kind in self.customer_events.get(i, []):
            apply_customer_event(self.customers[idx], kind, sim.rnd)
            changed[idx] = None
        for idx in changed:
            c = self.customers[idx]
            sim.emit("crm/customers", c.row(ts(day, work_seconds(sim.rnd, 19, 22))))

    def run(self) -> None:
        sim = self.sim
        for i in range(sim.days):
            day = sim.day(i)
            sim.start_day(i)
            trend = self.behaviour.trend(i)
            self._reference(i, day)
            self._customers(i, day)
            for path, row in sim.later.pop(i, []):
                sim.emit(path, row)
            self.orders.place_day(i, day, trend, self.customers)
            self.bad_rows.inject(i)
            open_tickets(sim, i, trend, self.customers, self.behaviour)
            log_activities(sim, i, trend, self.customers, self.behaviour)
            for path in ENTITY_PATHS:
                self.out.write(path, day, sim.buf.get(path, []))


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
    prepare_landing(landing)
    out = Landing(landing)
    demo = DemoCompany(out, customers, days, seed, end_date)
    demo.run()
    manifest = {
        "generator": "tierflow.demo",
        "parameters": {"customers": customers, "days": days, "seed": seed,
                       "end_date": end_date.isoformat()},
        "base_currency": BASE_CURRENCY,
        "date_range": {"start": demo.sim.start.isoformat(), "end": end_date.isoformat(),
                       "days": days},
        "files": out.files,
        "rows": dict(out.rows),
        "bad_rows": out.bad_rows,
        "notes": list(NOTES),
    }
    write_manifest(landing, manifest)
    return manifest
