"""How the demo extracts spell their values: money, dates and China-time timestamps."""

from __future__ import annotations

import random
from datetime import date
from functools import cache


def money(x: float) -> str:
    return f"{x:.2f}"


@cache
def iso(day: date) -> str:
    return day.isoformat()


@cache
def _clock(seconds: int) -> str:
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h:02d}:{m:02d}:{s:02d}"


def ts(day: date, seconds: int) -> str:
    """A China-time timestamp on ``day``; seconds are clipped to the day so no row is future."""
    return f"{iso(day)} {_clock(max(0, min(86399, int(seconds))))}+08:00"


def work_seconds(rnd: random.Random, start_h: float = 8.5, end_h: float = 18.5) -> int:
    """A time of day (seconds) within working hours, by default 08:30-18:30."""
    return int(rnd.uniform(start_h, end_h) * 3600)
