"""Issue 12 item 4: wall time per night under the real deployment, Cosmos LOCAL vs WATCHER.

For each execution mode in turn: fresh warehouse and Airflow metadata databases on a
PostgreSQL server, a fresh TIERFLOW_HOME, ``tierflow airflow start`` (Celery, N workers) with
TIERFLOW_DBT_EXECUTION_MODE set, then the given dates triggered one after the other through the
REST API, each waited for. Reported per night: wall time (trigger to end), the transform
group's span (first dbt task start to last end) and the number of task instances; at the end,
whether both modes published identical bi tables. The deployment is stopped and the databases
dropped afterwards.

    .venv/bin/tierflow demo --landing /tmp/demo            # 3,000 customers, 730 days
    .venv/bin/python bench/bench_executors.py --landing /tmp/demo --dates 2026-11-19 2026-11-20
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

from tierflow.publish import PUBLISHED_TABLES  # noqa: E402


def _ts(text: str | None) -> float | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() if text else None


class Api:
    def __init__(self, local: Path) -> None:
        self.base = json.loads((local / "state.json").read_text())["url"]
        password = json.loads((local / "admin-password.json").read_text())["admin"]
        login = {"username": "admin", "password": password}
        self.token = self.call("POST", "/auth/token", login, auth=False)["access_token"]

    def call(self, method: str, path: str, body: dict | None = None, auth: bool = True):
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.base + path, method=method, headers=headers,
                                     data=json.dumps(body).encode() if body is not None else None)
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.loads(resp.read() or b"null")


def night(api: Api, as_of: str, timeout: float) -> dict:
    started = time.monotonic()
    run = api.call("POST", "/api/v2/dags/customer_tiering/dagRuns",
                   {"logical_date": f"{as_of}T00:00:00Z", "conf": {}})
    path = f"/api/v2/dags/customer_tiering/dagRuns/{run['dag_run_id']}"
    while (state := api.call("GET", path)["state"]) in ("queued", "running"):
        if time.monotonic() - started > timeout:
            raise SystemExit(f"{as_of}: still {state} after {timeout:.0f}s")
        time.sleep(2)
    wall = time.monotonic() - started
    tis = api.call("GET", path + "/taskInstances?limit=500")["task_instances"]
    transform = [t for t in tis if t["task_id"].startswith("transform.") and t["start_date"]]
    span = (max(_ts(t["end_date"]) for t in transform) - min(_ts(t["start_date"]) for t in transform)
            if transform else None)
    return {"date": as_of, "state": state, "wall_s": round(wall, 1),
            "transform_span_s": round(span, 1) if span else None, "task_instances": len(tis),
            "failed": sorted(t["task_id"] for t in tis if t["state"] not in ("success", "skipped"))}


def published(url: str) -> dict:
    """Every published table's rows, sorted, without the columns that are run metadata
    (compare_published.RUN_METADATA: e.g. clv_model_fits.fit_seconds, the fit's wall time)."""
    from compare_published import snapshot

    tables = snapshot(url, "bi")
    return {t: tables[t] for t in PUBLISHED_TABLES if t in tables}


def _exit_on_sigterm(signum: int, frame) -> None:
    raise SystemExit(f"stopped by signal {signum}")  # so `finally` stops the deployment


def main() -> None:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--landing", required=True, type=Path)
    p.add_argument("--dates", nargs="+", required=True)
    p.add_argument("--modes", nargs="+", default=["local", "watcher"], choices=["local", "watcher"])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--timeout", type=float, default=3600)
    args = p.parse_args()

    results, warehouses = {}, {}
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "TIERFLOW"))}
    for mode in args.modes:
        dbs = {role: f"bench_{role}_{uuid.uuid4().hex[:8]}" for role in ("wh", "meta")}
        with psycopg.connect(args.postgres, autocommit=True) as admin:
            for name in dbs.values():
                admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        server = urlsplit(args.postgres)
        urls = {role: server._replace(path=f"/{name}").geturl() for role, name in dbs.items()}
        home = Path(tempfile.mkdtemp(prefix=f"bench-{mode}-"))
        env = {**base_env, "TIERFLOW_HOME": str(home), "TIERFLOW_LANDING": str(args.landing.resolve()),
               "TIERFLOW_WAREHOUSE_URL": urls["wh"], "TIERFLOW_AIRFLOW_DB_URL": urls["meta"],
               "TIERFLOW_DBT_EXECUTION_MODE": mode, "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False"}
        cli = [sys.executable, "-m", "tierflow.cli", "airflow"]
        start = subprocess.run([*cli, "start", "--workers", str(args.workers), "--concurrency",
                                str(args.concurrency), "--port", "0"], env=env, cwd=ROOT, text=True,
                               capture_output=True)
        print(start.stdout, start.stderr, flush=True)
        try:
            if start.returncode != 0:
                raise SystemExit(f"{mode}: start failed")
            api = Api(home / "airflow-local")
            deadline = time.monotonic() + 300
            while True:
                try:
                    api.call("PATCH", "/api/v2/dags/customer_tiering", {"is_paused": False})
                    break
                except urllib.error.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(3)
            results[mode] = []
            for as_of in args.dates:
                results[mode].append(night(api, as_of, args.timeout))
                print(mode, json.dumps(results[mode][-1]), f"load {os.getloadavg()[0]:.1f}", flush=True)
            warehouses[mode] = published(urls["wh"])
        finally:
            subprocess.run([*cli, "stop"], env=env, cwd=ROOT)
            with psycopg.connect(args.postgres, autocommit=True) as admin:
                for name in dbs.values():
                    drop = sql.SQL("drop database if exists {} with (force)")
                    admin.execute(drop.format(sql.Identifier(name)))
    print(json.dumps(results, indent=2))
    if len(warehouses) > 1:
        from compare_published import compare

        (first_mode, first), *rest = warehouses.items()
        for mode, tables in rest:
            problems = compare(first, tables)
            ignored = sorted(f"{t}.{c}" for t in first for c in first[t]["ignored"])
            print(f"bi identical, {first_mode} vs {mode}: {not problems}"
                  f" ({len(first)} tables; run metadata left out: {', '.join(ignored) or 'none'})")
            for problem in problems:
                print("  -", problem[:2000])


if __name__ == "__main__":
    main()
