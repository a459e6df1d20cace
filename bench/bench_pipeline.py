"""Issue 11 item 1: what a night costs, against hand-written SQL on the same data and server.

In one run: a fresh warehouse (its own TIERFLOW_HOME), ``tierflow demo --customers N --days
730``, then night 1 (the day before the newest date folder: every file but one day's, the
first, full night) and night 2 (the newest date folder: one day of new files), each through the
real DAG as ``tierflow run --date`` runs it. Then the core of the night written by hand
(``bench/core.sql``: order facts -> customer RFM/BTYD -> quintile scores -> three tiers) on the
same order lines (night 1's ``int_order_lines_converted``, copied untimed into schema
``bench_core``) in the same server.

Printed: per-task seconds of both nights and the largest RSS sampled while each task ran
(what grows with the data), each night's wall time, and

    ratio core_vs_sql X          night 1's fct_order_lines + fct_orders + customer_rfm +
                                 customer_tiers seconds / core.sql seconds: each mart's share
                                 of its group's one dbt build (XCom dbt_node_seconds: the
                                 build's wall apportioned by dbt's timing of each node,
                                 tierflow.dbt_group_build), or its task's seconds when it had
                                 a dbt build of its own
    ratio night2_vs_night1 X     wall time of night 2 / night 1 (`tierflow run` process)
    ratio orchestration_share X  night 2: share of its wall time spent outside every database
                                 statement (the server logs each with its duration), the GX
                                 gates' tasks and the allocation task
    peak_rss_mb N                the largest RSS of any process of either night's `tierflow
                                 run` (dbt and GX run in-process; the PostgreSQL server is not
                                 counted, it is sized by its own settings)

    make bench-pipeline BENCH_CUSTOMERS=10000
    .venv/bin/python bench/bench_pipeline.py --customers 3000 --keep /tmp/bench

The warehouse is stopped and the folder removed at the end unless ``--keep`` names it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CORE_MARTS = ("fct_order_lines", "fct_orders", "customer_rfm", "customer_tiers")
# tasks whose whole time is quality checking or the allocation solver, not orchestration
WORK_TASKS = ("validate_raw", "validate_marts", "allocate")
LOG_LINE = re.compile(r"^(\d+\.\d+) \[\d+\] LOG:  duration: ([0-9.]+) ms(.*)")
NODE_ID = re.compile(r'"node_id": "([^"]+)"')


def _tree_rss_mb(root: int) -> float:
    """The largest RSS (MB) of one process among ``root`` and its descendants, from /proc."""
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat[stat.rindex(")") + 2:].split()[1])
    tree, grew = {root}, True
    while grew:
        more = {pid for pid, ppid in parents.items() if ppid in tree} - tree
        tree |= more
        grew = bool(more)
    largest = 0.0
    for pid in tree:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    largest = max(largest, int(line.split()[1]) / 1024)
        except OSError:
            continue
    return largest


def tierflow(env: dict, *args: str, log: Path | None = None,
             rss_samples: list | None = None) -> tuple[float, int]:
    """Run a tierflow command; return (wall seconds, peak RSS in MB of its process tree).
    With ``rss_samples``, append (epoch, MB) twice a second: the largest process's RSS."""
    started = time.monotonic()
    out = open(log, "w") if log else subprocess.DEVNULL
    proc = subprocess.Popen([str(BIN / "tierflow"), *args], env=env, cwd=ROOT, stdout=out,
                            stderr=subprocess.STDOUT)
    if rss_samples is not None:
        def sample() -> None:
            while proc.returncode is None:
                rss_samples.append((time.time(), _tree_rss_mb(proc.pid)))
                time.sleep(0.5)
        threading.Thread(target=sample, daemon=True).start()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - started
    if os.waitstatus_to_exitcode(status) != 0:
        tail = log.read_text()[-3000:] if log else ""
        raise SystemExit(f"tierflow {' '.join(args)} failed:\n{tail}")
    return wall, usage.ru_maxrss // 1024


def task_times(airflow_db: Path) -> list[tuple[str, float, float, float]]:
    """(task, start epoch, end epoch, seconds) of the newest DAG run, in start order."""
    def epoch(text: str) -> float:
        return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()

    with sqlite3.connect(airflow_db) as db:
        (run_id,) = db.execute("select run_id from dag_run order by id desc limit 1").fetchone()
        rows = db.execute(
            "select task_id, start_date, end_date, duration from task_instance where run_id = ?"
            " order by start_date", (run_id,)
        ).fetchall()
    return [(t, epoch(s), epoch(e), d or 0.0) for t, s, e, d in rows]


def node_seconds(airflow_db: Path) -> dict[str, float]:
    """Per mart task of the newest DAG run built in a group build (tierflow.dbt_group_build):
    its mart's share of the group's build wall time (XCom ``dbt_node_seconds``)."""
    with sqlite3.connect(airflow_db) as db:
        (run_id,) = db.execute("select run_id from dag_run order by id desc limit 1").fetchone()
        rows = db.execute("select task_id, value from xcom where run_id = ? and key = 'dbt_node_seconds'",
                          (run_id,)).fetchall()
    # SQLite hands a JSON number back as a number, other JSON as text
    return {t: float(v if isinstance(v, int | float) else json.loads(v)) for t, v in rows}


def statement_intervals(logfile: Path, offset: int) -> tuple[list, list]:
    """(start, end) epoch of every statement the server logged after byte ``offset``, and the
    slowest statements (seconds, dbt node or the statement's start)."""
    intervals, slow = [], []
    with open(logfile, "rb") as fh:
        fh.seek(offset)
        for raw in fh:
            m = LOG_LINE.match(raw.decode("utf-8", "replace"))
            if m:
                end, secs = float(m.group(1)), float(m.group(2)) / 1000
                intervals.append((end - secs, end))
                if secs >= 0.5:
                    node = NODE_ID.search(m.group(3))
                    slow.append((secs, node.group(1) if node else " ".join(m.group(3).split())[:100]))
    return intervals, sorted(slow, reverse=True)[:8]


def covered_seconds(intervals: list[tuple[float, float]], lo: float, hi: float) -> float:
    """Length of the union of the intervals, clipped to [lo, hi]."""
    total, cur_s, cur_e = 0.0, None, None
    for s, e in sorted((max(s, lo), min(e, hi)) for s, e in intervals if e > lo and s < hi):
        if cur_e is None or s > cur_e:
            total += (cur_e - cur_s) if cur_e is not None else 0.0
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    return total + ((cur_e - cur_s) if cur_e is not None else 0.0)


def night(env: dict, as_of: date, label: str, home: Path, logfile: Path) -> dict:
    offset = logfile.stat().st_size
    started = time.time()
    samples: list[tuple[float, float]] = []
    wall, rss = tierflow(env, "run", "--date", as_of.isoformat(), log=home / f"{label}.log",
                         rss_samples=samples)
    ended = time.time()
    tasks = task_times(home / "airflow" / "airflow.db")
    busy, slow = statement_intervals(logfile, offset)
    busy += [(s, e) for t, s, e, _ in tasks if t in WORK_TASKS]
    share = 1 - covered_seconds(busy, started, ended) / (ended - started)
    # the largest RSS sampled while each task ran (tasks overlap little under `tierflow run`)
    task_rss = {t: max((mb for at, mb in samples if s <= at <= e), default=0.0) for t, s, e, _ in tasks}
    return {"label": label, "as_of": as_of, "wall": wall, "rss": rss, "tasks": tasks, "orchestration": share,
            "slow": slow, "task_rss": task_rss, "dbt": node_seconds(home / "airflow" / "airflow.db")}


def core_sql(url: str, as_of: date) -> float:
    """Seconds of bench/core.sql on night 1's order lines (copied first, untimed); best of two."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("drop schema if exists bench_core cascade")
        conn.execute("create schema bench_core")
        conn.execute("create unlogged table bench_core.order_lines as"
                     " select * from build_intermediate.int_order_lines_converted")
        conn.execute("create unlogged table bench_core.customers as select * from build_marts.dim_customers")
        conn.execute("analyze bench_core.order_lines; analyze bench_core.customers")
        script = (ROOT / "bench" / "core.sql").read_text().replace(":as_of", f"date '{as_of.isoformat()}'")
        best = float("inf")
        for _ in range(2):
            started = time.monotonic()
            conn.execute(script)
            best = min(best, time.monotonic() - started)
        n = conn.execute("select count(*) from bench_core.customer_tiers").fetchone()[0]
        print(f"core.sql: {n:,} customers tiered in {best:.2f}s", flush=True)
        conn.execute("drop schema bench_core cascade")
    return best


def fresh_bench(keep: str | None, prefix: str) -> tuple[Path, Path, dict]:
    """A benchmark's folder (``keep``, which must be empty, or a new temporary one), its
    TIERFLOW_HOME, and the environment of its tierflow commands: this process's without
    tierflow's and Airflow's own settings, pointed at that home and the folder's landing."""
    root = Path(keep) if keep else Path(tempfile.mkdtemp(prefix=prefix))
    if root.exists() and any(root.iterdir()):
        raise SystemExit(f"{root} is not empty: the benchmark needs a fresh warehouse")
    home = root / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIERFLOW_", "AIRFLOW"))}
    env.update(TIERFLOW_HOME=str(home), TIERFLOW_LANDING=str(root / "landing"),
               GX_ANALYTICS_ENABLED="False", DO_NOT_TRACK="1")
    os.environ.update(TIERFLOW_HOME=env["TIERFLOW_HOME"])
    sys.path.insert(0, str(ROOT / "plugins"))
    return root, home, env


def newest_date_folder(root: Path) -> date:
    return max(date.fromisoformat(p.name) for p in (root / "landing").glob("*/*/*")
               if re.fullmatch(r"\d{4}-\d{2}-\d{2}", p.name))


def remove_bench(root: Path) -> None:
    """The benchmark's warehouse (its data too, also where it lives outside the folder: as root,
    under the service root) and its folder."""
    from tierflow.settings import load_settings
    from tierflow.warehouse import EmbeddedWarehouse

    try:
        EmbeddedWarehouse(load_settings().warehouse_dir).remove()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def load_line() -> str:
    load = os.getloadavg()
    return f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, default=int(os.environ.get("BENCH_CUSTOMERS", 50000)))
    ap.add_argument("--days", type=int, default=730)
    ap.add_argument("--keep", help="folder for the benchmark's warehouse and data, kept afterwards")
    args = ap.parse_args()

    root, home, env = fresh_bench(args.keep, "tierflow-bench-")
    from tierflow.settings import load_settings
    from tierflow.warehouse import EmbeddedWarehouse

    print(f"bench-pipeline: {args.customers:,} customers, {args.days} days in {root}; {load_line()}",
          flush=True)
    try:
        secs, _ = tierflow(env, "demo", "--customers", str(args.customers), "--days", str(args.days))
        print(f"demo extracts written in {secs:.0f}s", flush=True)
        warehouse = EmbeddedWarehouse(load_settings().warehouse_dir)
        warehouse.start()
        url = warehouse.url()
        with psycopg.connect(url, autocommit=True) as conn:
            # every statement with its duration, stamped (epoch) when it ends
            conn.execute("alter system set log_min_duration_statement = 0")
            conn.execute("alter system set log_line_prefix = '%n [%p] '")
            conn.execute("select pg_reload_conf()")
        newest = newest_date_folder(root)
        nights = [night(env, newest - timedelta(days=1), "night1", home, warehouse.logfile)]
        with psycopg.connect(url, autocommit=True) as conn:
            order_lines = conn.execute("select count(*) from build_marts.fct_order_lines").fetchone()[0]
        sql_seconds = core_sql(url, newest - timedelta(days=1))
        nights.append(night(env, newest, "night2", home, warehouse.logfile))
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("alter system reset log_min_duration_statement")
            conn.execute("select pg_reload_conf()")
    finally:
        if not args.keep:
            remove_bench(root)

    n1, n2 = nights
    names = list(dict.fromkeys(t for n in nights for t, *_ in n["tasks"]))
    secs = [{t: d for t, _, _, d in n["tasks"]} for n in nights]
    rss = [n["task_rss"] for n in nights]
    dbt = [n["dbt"] for n in nights]
    print(f"\n{'task':50s} {'night 1':>9s} {'night 2':>9s} {'dbt 1':>7s} {'dbt 2':>7s}"
          f" {'MB 1':>6s} {'MB 2':>6s}")
    for name in names:
        print(f"{name:50s} {secs[0].get(name, 0):9.2f} {secs[1].get(name, 0):9.2f}"
              f" {dbt[0].get(name, 0):7.2f} {dbt[1].get(name, 0):7.2f}"
              f" {rss[0].get(name, 0):6.0f} {rss[1].get(name, 0):6.0f}")
    print("(dbt: a mart's share of its group's one dbt build, the build's wall apportioned by dbt's"
          " timing of each node; the group's first task carries the whole build. MB: the largest RSS of"
          " one tierflow process sampled while the task ran, twice a second)")
    for n, s in zip(nights, secs, strict=True):
        print(f"{n['label']} ({n['as_of']}): wall {n['wall']:.1f}s, tasks {sum(s.values()):.1f}s, "
              f"orchestration share {n['orchestration']:.2f}, peak RSS {n['rss']} MB; slowest statements:")
        for took, what in n["slow"]:
            print(f"    {took:8.2f}s  {what}")
    # a core mart's cost: its share of its group's build, or its task's seconds (a build of its own)
    core = sum(dbt[0].get(t, d) for t, d in secs[0].items()
               if t.split(".")[-1].rsplit("_model", 1)[0] in CORE_MARTS)
    print(f"core marts (night 1, {order_lines:,} order lines): {core:.2f}s; "
          f"hand-written SQL {sql_seconds:.2f}s")
    load = os.getloadavg()
    print(f"load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"ratio core_vs_sql {core / sql_seconds:.2f}")
    print(f"ratio night2_vs_night1 {n2['wall'] / n1['wall']:.3f}")
    print(f"ratio orchestration_share {n2['orchestration']:.2f}")
    print(f"peak_rss_mb {max(n1['rss'], n2['rss'])}")


if __name__ == "__main__":
    main()
