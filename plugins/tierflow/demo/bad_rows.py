"""The demo's planted bad rows: a small, documented sprinkle of each kind the loader must
reject, placed inside otherwise normal files (the writer records each one's file and line in
the manifest). Every bad row hangs off one of today's completed orders that is never
re-delivered, so no bad row is ever the target of a re-delivery."""

from __future__ import annotations

from tierflow.demo.simulation import Simulation
from tierflow.demo.writer import Entry

# kind -> the entity whose file holds it
BAD_KINDS: dict[str, str] = {
    "duplicate_key": "erp/order_lines",
    "unparsable_date": "erp/orders",
    "negative_quantity": "erp/order_lines",
    "unknown_customer": "erp/orders",
    "unknown_product": "erp/order_lines",
    "missing_required": "erp/orders",
}
BAD_PER_KIND = 3


class BadRows:
    """Plans the bad rows when created (a draw in the generator's fixed order) and plants
    each day's share into that day's buffered files."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.plan = self._plan()
        self.pending: list[str] = []
        self.counter = {k: 0 for k in BAD_KINDS}

    def _plan(self) -> dict[int, list[str]]:
        """Each kind on BAD_PER_KIND distinct days in the first 85% of the range."""
        plan: dict[int, list[str]] = {}
        last = max(1, int(self.sim.days * 0.85))
        candidates = list(range(min(1, last - 1), last))
        for kind in BAD_KINDS:
            for i in sorted(self.sim.rnd.sample(candidates, min(BAD_PER_KIND, len(candidates)))):
                plan.setdefault(i, []).append(kind)
        return plan

    def inject(self, i: int) -> None:
        """Inject today's planned bad rows; a kind that cannot be placed waits for a later day."""
        todo, self.pending = self.pending + self.plan.get(i, []), []
        done: set[str] = set()
        for kind in todo:
            placed = kind not in done and (
                self._bad_line(kind) if BAD_KINDS[kind] == "erp/order_lines"
                else self._bad_order(i, kind))
            if placed:
                done.add(kind)
            else:
                self.pending.append(kind)

    def _bad_order(self, i: int, kind: str) -> bool:
        """A copy of one of today's orders under a new id, with the bad value; it has no lines."""
        sim = self.sim
        orders = sim.buf.get("erp/orders", [])
        if not orders or not sim.hosts:
            return False
        self.counter[kind] += 1
        n = self.counter[kind]
        template = dict(sim.hosts[0][0])
        oid = sim.next_id("SO")
        row = {**template, "order_id": oid, "status": "completed"}
        if kind == "unparsable_date":
            y = sim.day(i).year
            value = (f"{y}-13-45", f"{y}-02-30", f"{y}-00-15")[(n - 1) % 3]
            row["order_date"], column = value, "order_date"
        elif kind == "unknown_customer":
            value = f"C-UNKNOWN-{n}"
            row["customer_id"], column = value, "customer_id"
        else:
            value = ""
            row["customer_id"], column = value, "customer_id"
        bad = {"kind": kind, "key": {"order_id": oid}, "column": column, "value": value}
        orders.insert(sim.rnd.randint(0, len(orders)), Entry(row, bad))
        return True

    def _bad_line(self, kind: str) -> bool:
        """A repeat of a line, or an extra line, on one of today's orders (used once)."""
        sim = self.sim
        if not sim.hosts:
            return False
        order, lines = sim.hosts.pop(sim.rnd.randrange(len(sim.hosts)))
        self.counter[kind] += 1
        n = self.counter[kind]
        buf = sim.buf["erp/order_lines"]
        oid = order["order_id"]
        if kind == "duplicate_key":
            original = lines[sim.rnd.randrange(len(lines))]
            row = dict(original.values)
            bad = {"kind": kind, "key": {"order_id": oid, "line_number": int(row["line_number"])},
                   "column": "line_number", "value": row["line_number"], "original": original}
            buf.insert(buf.index(original) + 1, Entry(row, bad))
            return True
        row = dict(lines[-1].values)
        row["line_number"] = str(len(lines) + 1)
        if kind == "negative_quantity":
            row["quantity"], column = str(-sim.rnd.randint(1, 5)), "quantity"
        else:
            row["product_id"], column = f"P-UNKNOWN-{n}", "product_id"
        bad = {"kind": kind, "key": {"order_id": oid, "line_number": len(lines) + 1},
               "column": column, "value": row[column]}
        buf.insert(buf.index(lines[-1]) + 1, Entry(row, bad))
        return True
