"""What every part of the demo generator shares: the seeded random draws, the calendar, the
id sequences, today's output and the rows that later days will re-deliver.

Determinism: every draw comes from the two generators here, seeded with ``seed``, and the
parts draw in a fixed order (the order :class:`tierflow.demo.generator.DemoCompany` calls
them), so the same arguments give byte-identical files.
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Any

import numpy as np

from tierflow.demo.writer import Entry


class Simulation:
    """The state of one demo run, day by day."""

    def __init__(self, customers: int, days: int, seed: int, end: date) -> None:
        self.n = customers
        self.days = days
        self.start = end - timedelta(days=days - 1)
        self.dates = [self.start + timedelta(days=i) for i in range(days)]
        self.np = np.random.default_rng([seed, 1])  # vectorised draws over all customers
        self.rnd = random.Random(seed * 7919 + 1)  # per-row scalar draws (fast, deterministic)
        self.seq = {"SO": 1000000, "INV": 500000, "TK": 200000, "ACT": 300000}
        # rows due on a later day (re-deliveries: paid invoices, returned orders, closed tickets)
        self.later: dict[int, list[tuple[str, dict[str, str]]]] = {}
        # customers (by index) who open a ticket on a later day, after an order
        self.ticket_queue: dict[int, list[int]] = {}
        self.today = 0
        # today's rows per entity, written at the end of the day
        self.buf: dict[str, list[Entry]] = {}
        # today's completed orders with their line entries: where bad rows can be planted
        self.hosts: list[tuple[dict[str, str], list[Entry]]] = []

    def start_day(self, i: int) -> None:
        self.today, self.buf, self.hosts = i, {}, []

    def next_id(self, prefix: str) -> str:
        self.seq[prefix] += 1
        return f"{prefix}{self.seq[prefix]}"

    def day(self, i: int) -> date:
        if 0 <= i < self.days:
            return self.dates[i]
        return self.start + timedelta(days=i)

    def schedule(self, i: int, path: str, row: dict[str, str]) -> None:
        """Write a row on day ``i``: now if that is today, else queue it for that day.

        Rows beyond the range are never delivered (the state stays as last delivered).
        """
        if i == self.today:
            self.emit(path, row)
        elif i < self.days:
            self.later.setdefault(i, []).append((path, row))

    def emit(self, path: str, row: dict[str, str], bad: dict[str, Any] | None = None) -> Entry:
        """Add a row to today's file of ``path``."""
        e = Entry(row, bad)
        self.buf.setdefault(path, []).append(e)
        return e
