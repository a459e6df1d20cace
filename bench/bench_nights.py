"""Issue 11 item 2 over time: does a night cost the night's delta, or every night before it?

The pipeline benchmark (bench_pipeline.py) measures one incremental night after a full one.
A warehouse in production meets night 300: the BI tables keep every published date, the
tier history, the allocation plans and the quality results grow by a population a night,
and whatever reads them whole gets slower every night. In one run:

1. a fresh warehouse (its own TIERFLOW_HOME) and ``tierflow demo --customers N --days 730``;
2. the first, full night: ``tierflow run --date D-K`` (D the newest date folder);
3. K nights, each ``tierflow run --date`` of the next date folder in a process of its own,
   as a scheduler runs them: one day of new files each.

Printed: each night's wall time and its slowest tasks, then, over the K incremental nights,
the least-squares growth of the wall time per night (``growth_s_per_night X``), the last
nights against the first (``ratio last_vs_first X``: the mean of the last three over the mean
of the first three) and the tasks whose time grew most. A night whose cost is its delta has
growth near 0 and a ratio near 1; a read of the whole history shows as a task that grows
night by night.

    make bench-nights BENCH_CUSTOMERS=10000 BENCH_NIGHTS=20
    .venv/bin/python bench/bench_nights.py --customers 3000 --nights 10 --keep /tmp/nights
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pipeline import (  # noqa: E402
    fresh_bench,
    load_line,
    newest_date_folder,
    remove_bench,
    task_times,
    tierflow,
)


def slope(ys: list[float]) -> float:
    """Least-squares slope of ys against 0, 1, 2, ..."""
    n = len(ys)
    if n < 2:
        return 0.0
    mx, my = (n - 1) / 2, sum(ys) / n
    return sum((x - mx) * (y - my) for x, y in enumerate(ys)) / sum((x - mx) ** 2 for x in range(n))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, default=int(os.environ.get("BENCH_CUSTOMERS", 10000)))
    ap.add_argument("--nights", type=int, default=int(os.environ.get("BENCH_NIGHTS", 20)))
    ap.add_argument("--days", type=int, default=730)
    ap.add_argument("--keep", help="folder for the benchmark's warehouse and data, kept afterwards")
    args = ap.parse_args()
    if args.nights < 6:
        raise SystemExit("--nights must be at least 6 (the first and last three are compared)")

    root, home, env = fresh_bench(args.keep, "tierflow-bench-nights-")
    print(f"bench-nights: {args.customers:,} customers, a full night then {args.nights} nights, in {root};"
          f" {load_line()}", flush=True)
    walls: list[float] = []
    tasks: list[dict[str, float]] = []
    try:
        secs, _ = tierflow(env, "demo", "--customers", str(args.customers), "--days", str(args.days))
        print(f"demo extracts written in {secs:.0f}s", flush=True)
        first = newest_date_folder(root) - timedelta(days=args.nights)
        home.mkdir(parents=True, exist_ok=True)
        wall, _ = tierflow(env, "run", "--date", first.isoformat(), log=home / "night0.log")
        print(f"full night {first}: {wall:.1f}s", flush=True)
        for i in range(1, args.nights + 1):
            as_of = first + timedelta(days=i)
            wall, _ = tierflow(env, "run", "--date", as_of.isoformat(), log=home / f"night{i}.log")
            times = {t: d for t, _, _, d in task_times(home / "airflow" / "airflow.db")}
            walls.append(wall)
            tasks.append(times)
            top = ", ".join(f"{t} {d:.1f}" for t, d in sorted(times.items(), key=lambda x: -x[1])[:4])
            print(f"night {i:3d} {as_of}: {wall:6.1f}s   {top}", flush=True)
    finally:
        if not args.keep:
            remove_bench(root)

    names = sorted({t for n in tasks for t in n})
    growth = {t: slope([n.get(t, 0.0) for n in tasks]) for t in names}
    print("\ntasks whose time grew most (seconds per night, least squares over the nights):")
    for t, g in sorted(growth.items(), key=lambda x: -x[1])[:8]:
        print(f"  {t:50s} {g:+.3f}   first {tasks[0].get(t, 0.0):6.2f}s  last {tasks[-1].get(t, 0.0):6.2f}s")
    print(f"growth_s_per_night {slope(walls):.3f}")
    print(f"ratio last_vs_first {sum(walls[-3:]) / sum(walls[:3]):.3f}")


if __name__ == "__main__":
    main()
