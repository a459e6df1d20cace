"""The ``tierflow`` command.

    tierflow warehouse start | stop | status | url | remove
    tierflow demo [--customers N] [--days D] [--seed S] [--end-date YYYY-MM-DD] [--if-absent]
    tierflow run --date D | --from D1 --to D2 | --last N
    tierflow clv validate --date D
    tierflow airflow start [--executor celery|local] [--workers N] | stop | status | manifest
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

from tierflow.settings import Settings, load_settings


def _die(message: str, code: int = 1) -> None:
    print(f"tierflow: error: {message}", file=sys.stderr)
    raise SystemExit(code)


# -- warehouse -------------------------------------------------------------------------------
def _embedded(settings: Settings):
    from tierflow.warehouse import EmbeddedWarehouse

    return EmbeddedWarehouse(settings.warehouse_dir)


def cmd_warehouse(args: argparse.Namespace, settings: Settings) -> None:
    from tierflow.warehouse import WarehouseError

    if not settings.uses_embedded_warehouse:
        if args.action == "url":
            print(settings.warehouse_url())
            return
        print(f"TIERFLOW_WAREHOUSE_URL is set: tierflow uses that server; nothing to {args.action}.")
        return
    wh = _embedded(settings)
    try:
        if args.action == "start":
            st = wh.start()
            print(f"warehouse {st.describe()}; data in {wh.pgdata}")
        elif args.action == "stop":
            print(f"warehouse {wh.stop().describe()}")
        elif args.action == "status":
            st = wh.status()
            print(f"warehouse {st.describe()}")
            if not st.running:
                raise SystemExit(3)
        elif args.action == "url":
            print(wh.url())
        elif args.action == "remove":
            where = wh.pgdata
            wh.remove()
            print(f"warehouse stopped and its data deleted ({where})")
    except WarehouseError as exc:
        _die(str(exc))


def _ensure_warehouse(settings: Settings) -> str:
    if settings.uses_embedded_warehouse:
        st = _embedded(settings).start()
        print(f"warehouse: embedded, {st.describe()}")
    url = settings.warehouse_url()
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=10).close()
    except psycopg.OperationalError as exc:
        _die(f"cannot connect to the warehouse: {str(exc).strip()}")
    return url


# -- demo --------------------------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace, settings: Settings) -> None:
    from tierflow import demo

    landing = Path(args.landing).resolve() if args.landing else settings.landing
    if args.if_absent and (landing / "_demo_manifest.json").exists():
        print(f"demo: extracts already in {landing} (delete the folder to regenerate)")
        return
    started = time.monotonic()
    manifest = demo.generate(
        landing, customers=args.customers, days=args.days, seed=args.seed, end_date=args.end_date
    )
    print(
        f"demo: wrote {manifest['files']:,} files to {landing} in "
        f"{time.monotonic() - started:.1f}s; {len(manifest.get('bad_rows', []))} deliberate bad rows "
        f"listed in {landing / '_demo_manifest.json'}"
    )


# -- run ---------------------------------------------------------------------------------------
def _latest_date_folder(landing: Path) -> date:
    latest: date | None = None
    for d in landing.glob("*/*/*"):
        try:
            day = date.fromisoformat(d.name)
        except ValueError:
            continue
        latest = day if latest is None or day > latest else latest
    if latest is None:
        _die(f"no extracts under {landing} (run `tierflow demo` or set TIERFLOW_LANDING)")
    return latest


def _dates(args: argparse.Namespace, settings: Settings) -> list[date]:
    if args.date:
        return [args.date]
    if args.from_date or args.to_date:
        if not (args.from_date and args.to_date):
            _die("--from and --to go together")
        if args.to_date < args.from_date:
            _die(f"--to {args.to_date} is before --from {args.from_date}")
        return [args.from_date + timedelta(days=i) for i in range((args.to_date - args.from_date).days + 1)]
    end = _latest_date_folder(settings.landing)
    return [end - timedelta(days=i) for i in range(args.last - 1, -1, -1)]


def prepare_airflow(settings: Settings, url: str) -> None:
    """Point Airflow at our home, migrate its metadata DB once, and parse dbt's manifest."""
    from tierflow.settings import apply_airflow_env
    from tierflow.transform import ensure_manifest

    apply_airflow_env(settings, url)
    home = settings.airflow_home
    home.mkdir(parents=True, exist_ok=True)
    import airflow  # noqa: F401  (version for the stamp below)

    stamp = home / f".migrated-{airflow.__version__}"
    if not stamp.exists():
        print("airflow: migrating the metadata database (first run only)...", flush=True)
        res = subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True, env=os.environ
        )
        if res.returncode != 0:
            _die(f"airflow db migrate failed:\n{res.stderr[-3000:]}")
        stamp.touch()
    ensure_manifest(url)


def load_dag():
    from airflow.dag_processing.dagbag import DagBag

    from tierflow.settings import DAGS_DIR

    bag = DagBag(dag_folder=str(DAGS_DIR))
    if bag.import_errors:
        _die("DAG import errors:\n" + "\n".join(f"{k}: {v}" for k, v in bag.import_errors.items()))
    return bag.dags["customer_tiering"]


class RunIncomplete(RuntimeError):
    """A DAG run ended without running every task (Airflow may call such a run a success)."""


def run_one(dag, as_of: date, url: str) -> tuple[bool, str]:
    """Run the DAG for one date; return (ok, run_id).

    ``ok`` needs every task of the DAG to have succeeded in this run: a run that executed
    nothing (Airflow ends a run before the DAG's start date as "success" without running a
    task) or skipped a task is a failure, never "ok".
    """
    import pendulum

    from tierflow import dbt_group_build
    from tierflow.settings import load_settings

    # one process runs the whole night: each group of marts can be one dbt build
    dbt_group_build.enable(load_settings().dbt_group_build)
    try:
        dr = dag.test(logical_date=pendulum.datetime(as_of.year, as_of.month, as_of.day, tz="UTC"))
    finally:
        dbt_group_build.enable(False)
    ok = str(dr.state) in ("success", "DagRunState.SUCCESS")
    if ok:
        not_run = _tasks_not_succeeded(dag, dr.run_id)
        if not_run:
            raise RunIncomplete(
                f"the DAG run for {as_of} ended without running {len(not_run)} of {len(dag.task_ids)} "
                f"task(s) ({', '.join(not_run[:8])}{', ...' if len(not_run) > 8 else ''}); "
                "nothing was published for it"
            )
    return ok, dr.run_id


def _tasks_not_succeeded(dag, run_id: str) -> list[str]:
    """Tasks of the DAG without a successful task instance in the run (with their state)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        states = {
            ti.task_id: str(ti.state.value if hasattr(ti.state, "value") else ti.state)
            for ti in session.query(TaskInstance).filter(
                TaskInstance.dag_id == dag.dag_id, TaskInstance.run_id == run_id
            )
        }
    return [f"{t}: {states.get(t) or 'not run'}" for t in sorted(dag.task_ids) if states.get(t) != "success"]


def _failure_reason(run_id: str, url: str) -> tuple[str, bool]:
    """The one-sentence reason a step recorded in tierflow_meta.runs ('' if none was), and
    whether the run had published to bi before it failed (a report or notify step)."""
    import psycopg
    from psycopg import sql

    from tierflow.settings import META_SCHEMA

    try:
        with psycopg.connect(url) as conn:
            row = conn.execute(
                sql.SQL("select error, published_at is not null from {}.runs where run_id = %s").format(
                    sql.Identifier(META_SCHEMA)
                ),
                (run_id,),
            ).fetchone()
    except psycopg.Error:  # the warehouse itself may be what failed
        return "", False
    return ((row[0] or ""), bool(row[1])) if row else ("", False)


def _failed_tasks(dag, run_id: str) -> list[str]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter(
            TaskInstance.dag_id == dag.dag_id, TaskInstance.run_id == run_id
        ).all()
        failed = sorted(ti.task_id for ti in tis if str(ti.state) == "failed")
        skipped = sum(str(ti.state) == "upstream_failed" for ti in tis)
        return failed + ([f"and {skipped} downstream task(s) not run"] if skipped else [])


def cmd_run(args: argparse.Namespace, settings: Settings) -> None:
    from tierflow.config import ConfigError, load_config

    try:
        load_config(settings.config_path)  # fail fast, before anything is touched
    except ConfigError as exc:
        _die(str(exc), 2)
    dates = _dates(args, settings)
    # what the start-up imports and parses lives as long as the process: no collector passes
    # over it while it grows (8 of them, 0.9 s), one before it is frozen for the night
    gc.disable()
    try:
        url = _ensure_warehouse(settings)
        prepare_airflow(settings, url)
        if not args.verbose:
            logging.disable(logging.WARNING)
        dag = load_dag()
    finally:
        gc.enable()
    _check_dates_against_dag(dag, dates)
    from tierflow.pipeline import freeze_for_the_night, thaw_between_nights
    from tierflow.report.summary import format_summary, load_summary

    freeze_for_the_night()

    total_started = time.monotonic()
    run_ids: list[str] = []
    tiers_changed: list[date] = []  # dates whose published tiers this command changed
    for i, as_of in enumerate(dates, start=1):
        if i > 1:
            thaw_between_nights()
        print(f"[{i}/{len(dates)}] customer_tiering for {as_of} ...", flush=True)
        started = time.monotonic()
        tiers_before = _published_tiers_digest(url, settings.publish_schema, as_of)
        try:
            ok, run_id = run_one(dag, as_of, url)
        except RunIncomplete as exc:
            _die(f"run for {as_of} FAILED: {exc}")
        elapsed = time.monotonic() - started
        if _published_tiers_digest(url, settings.publish_schema, as_of) != tiers_before:
            tiers_changed.append(as_of)
        if not ok:
            failed = _failed_tasks(dag, run_id)
            reason, published = _failure_reason(run_id, url)
            print(f"[{i}/{len(dates)}] {as_of} FAILED after {elapsed:.0f}s", flush=True)
            outcome = (
                "its tables were published to bi, then a later step failed"
                if published
                else "nothing was published for it (bi keeps the last good run)"
            )
            _die(
                f"run for {as_of} failed; {outcome}.\n"
                f"  failed tasks: {', '.join(failed) or 'unknown'}\n"
                + (f"  reason: {reason}\n" if reason else "  (see the task log above)\n")
            )
        print(f"[{i}/{len(dates)}] {as_of} ok in {elapsed:.0f}s", flush=True)
        run_ids.append(run_id)
        if args.summary == "each" or i == len(dates):
            summary = load_summary(url, run_id)
            if summary:
                print(format_summary(summary), flush=True)
    if len(run_ids) > 1:
        print(_ingest_totals(url, run_ids), flush=True)
    stale = later_dates_that_differ(url, settings.publish_schema, dates[-1], tiers_changed)
    if stale:
        print(
            f"note: {len(stale)} later published date(s) now differ from what this run's data would give:",
            flush=True,
        )
        for day, reason in stale:
            print(f"    {day}: {reason}", flush=True)
        print(f"  recompute them in order: tierflow run --from {stale[0][0]} --to {stale[-1][0]}", flush=True)
    print(f"done: {len(dates)} date(s) in {time.monotonic() - total_started:.0f}s; "
          f"published to schema {settings.publish_schema!r} at {settings.warehouse_url().split('@')[-1]}")


def _check_dates_against_dag(dag, dates: list[date]) -> None:
    """Refuse, with the reason, a date Airflow would run as an empty "successful" DAG run."""
    start = dag.start_date.date() if dag.start_date else None
    early = [d for d in dates if start and d < start]
    if early:
        _die(
            f"{early[0]} is before the customer_tiering DAG's start date {start}: Airflow would run no "
            "task for it. Move the DAG's start_date earlier (dags/customer_tiering.py)."
        )


def _published_tiers_digest(url: str, publish_schema: str, as_of: date) -> str | None:
    """A fingerprint of the tiers BI holds for ``as_of`` (None when none are published)."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(url) as conn:
        table = f"{publish_schema}.customer_tiers"
        if conn.execute("select to_regclass(%s)", (table,)).fetchone()[0] is None:
            return None
        return conn.execute(
            sql.SQL(
                "select md5(string_agg(concat_ws(':', customer_id, value_tier, computed_tier),"
                " ',' order by customer_id)) from {}.customer_tiers where as_of_date = %s"
            ).format(sql.Identifier(publish_schema)),
            (as_of,),
        ).fetchone()[0]


def later_dates_that_differ(
    url: str, publish_schema: str, last: date, tiers_changed: list[date]
) -> list[tuple[date, str]]:
    """Published dates after ``last`` whose rows no longer follow from what is known now.

    A date after ``last`` differs when a run of this command changed the tiers of an earlier
    date (its previous tiers and hysteresis, and every later date's through it), or when
    files for its date folders were loaded after it was published.
    """
    import psycopg
    from psycopg import sql

    from tierflow.settings import META_SCHEMA

    meta = sql.Identifier(META_SCHEMA)
    with psycopg.connect(url) as conn:
        if conn.execute("select to_regclass(%s)", (f"{META_SCHEMA}.runs",)).fetchone()[0] is None:
            return []
        rows = conn.execute(
            sql.SQL(
                """
                select r.as_of_date,
                       (select count(*) from {m}.load_audit a
                        where a.business_date <= r.as_of_date and a.status = 'loaded'
                          and a.finished_at > r.published_at) as late_files
                from (select as_of_date, max(published_at) as published_at from {m}.runs
                      where published_at is not null and as_of_date > %s group by as_of_date) r
                order by r.as_of_date
                """
            ).format(m=meta),
            (last,),
        ).fetchall()
    stale: list[tuple[date, str]] = []
    for day, late_files in rows:
        reasons = []
        if tiers_changed:
            reasons.append(
                f"the tiers of {tiers_changed[-1]} changed, and later dates' previous tiers and "
                "hysteresis follow from them"
            )
        if late_files:
            reasons.append(
                f"{late_files} file(s) for date folders up to it were loaded after it was published"
            )
        if reasons:
            stale.append((day, "; ".join(reasons)))
    return stale


def _ingest_totals(url: str, run_ids: list[str]) -> str:
    """What the ingest of all these runs did, with the rejects by reason."""
    import psycopg
    from psycopg import sql

    from tierflow.settings import META_SCHEMA

    meta = sql.Identifier(META_SCHEMA)
    with psycopg.connect(url) as conn:
        files, rows_in, loaded, rejected = conn.execute(
            sql.SQL(
                "select count(*), coalesce(sum(rows_in), 0), coalesce(sum(rows_loaded), 0),"
                " coalesce(sum(rows_rejected), 0) from {}.load_audit where run_id = any(%s)"
            ).format(meta),
            (run_ids,),
        ).fetchone()
        reasons = conn.execute(
            sql.SQL(
                "select r.reason, count(*) from {m}.rejects r join {m}.load_audit a using (load_id)"
                " where a.run_id = any(%s) group by 1 order by 2 desc, 1 limit 10"
            ).format(m=meta),
            (run_ids,),
        ).fetchall()
    lines = [
        f"ingest over all {len(run_ids)} runs: {files:,} file(s), {rows_in:,} rows in = "
        f"{loaded:,} loaded + {rejected:,} rejected (details: tierflow_meta.rejects)"
    ]
    lines += [f"    rejected {n:>6,}  {reason}" for reason, n in reasons]
    return "\n".join(lines)


# -- airflow (the real services on this machine) -----------------------------------------------
def cmd_clv(args: argparse.Namespace, settings: Settings) -> None:
    """The CLV model's holdout check for one as-of date, on the published order facts."""
    import psycopg

    from tierflow.clv import validate_date
    from tierflow.clv.store import read_fits
    from tierflow.config import load_config

    cfg = load_config(settings.config_path).clv
    url = settings.warehouse_url()
    with psycopg.connect(url) as conn:
        orders = f"{settings.publish_schema}.fct_orders"
        if conn.execute("select to_regclass(%s)", (orders,)).fetchone()[0] is None:
            _die(f"{settings.publish_schema}.fct_orders does not exist: publish a night first (tierflow run)")
    check = validate_date(url, cfg, args.date, settings.publish_schema)
    cutoff = args.date - timedelta(days=cfg.holdout_days)
    print(f"CLV holdout check for {args.date}: BG/NBD fitted on purchases up to {cutoff}, "
          f"predicting each customer's purchase days in ({cutoff}, {args.date}] "
          f"({settings.publish_schema}.fct_orders)")
    print(f"customers with a purchase before the holdout: {check.customers:,}")
    if check.buckets:
        print(f"{'repeat purchases':>17}  {'customers':>9}  {'predicted':>10}  {'actual':>7}")
        for b in check.buckets:
            print(f"{b['bucket']:>17}  {b['customers']:>9,}  {b['predicted']:>10,.1f}  {b['actual']:>7,}")
    if check.error is None:
        _die(f"no holdout error: {check.note}")
    verdict = "passes" if check.error <= cfg.max_holdout_error else "FAILS"
    print(f"holdout error {check.error:.4f} (sum |predicted - actual| / actual): {verdict} "
          f"clv.max_holdout_error {cfg.max_holdout_error:g}")
    with psycopg.connect(url) as conn:
        for fit in read_fits(conn, settings.publish_schema, args.date):
            print(f"published fit {fit['fit_id']} {fit['model']} ({fit['status']}): {fit['note']}")
    if check.error > cfg.max_holdout_error:
        raise SystemExit(1)


def cmd_airflow(args: argparse.Namespace, settings: Settings) -> None:
    from tierflow.deploy import local

    try:
        if args.action == "start":
            state = local.start(settings, args.executor, args.workers, args.concurrency, args.port)
            verb = "already running" if state.get("already_running") else "started"
            n = state['workers']
            workers = f", {n} Celery worker(s) on {state['broker']}" if n else ""
            print(f"airflow {verb}: {state['executor']} executor{workers};"
                  f" metadata in {state['metadata_db']}")
            print(f"UI and REST API: {state['url']}  ({local.login_hint(settings)})")
            print(f"logs: {settings.local_airflow_dir / 'logs'}; stop with `tierflow airflow stop`")
            print("customer_tiering starts paused: unpause it in the UI to run it every night")
        elif args.action == "stop":
            stopped = local.stop(settings)
            print(f"airflow stopped: {', '.join(stopped)}" if stopped else "airflow: nothing was running")
        elif args.action == "status":
            state, services, health = local.status(settings)
            if state is None:
                print("airflow: not started (tierflow airflow start)")
                raise SystemExit(3)
            print(f"airflow {state['executor']} executor at {state['url']}, started {state['started_at']}")
            for st in services:
                # the API server reports itself healthy when it reaches the metadata database
                key = "metadatabase" if st.name == "api-server" else st.name.replace("-", "_")
                checked = health.get(key, {}).get("status")
                print(f"  {st.name:<14} {'running' if st.processes else 'EXITED':<8} pid {st.pid:<8}"
                      f"{st.processes:>3} process(es)  {checked or ''}")
            if not all(st.processes for st in services):
                raise SystemExit(3)
        elif args.action == "manifest":
            from tierflow.transform import ensure_manifest, manifest_state

            before = manifest_state()
            path = ensure_manifest()
            print(f"dbt manifest {path}: {'up to date' if before == 'fresh' else f'rebuilt (was {before})'}")
    except local.DeployError as exc:
        _die(str(exc))


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a YYYY-MM-DD date: {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tierflow", description="Nightly customer tiering and allocation.")
    sub = p.add_subparsers(dest="command", required=True)

    w = sub.add_parser("warehouse", help="manage the embedded PostgreSQL warehouse")
    w.add_argument("action", choices=["start", "stop", "status", "url", "remove"],
                   help="remove: stop the server and delete its data (what `make clean` does)")
    w.set_defaults(func=cmd_warehouse)

    d = sub.add_parser("demo", help="write deterministic demo extracts into the landing folder")
    d.add_argument("--customers", type=int, default=3000)
    d.add_argument("--days", type=int, default=730)
    d.add_argument("--seed", type=int, default=42)
    d.add_argument("--end-date", type=_date, default=date(2026, 11, 20))
    d.add_argument("--landing", help="landing folder (default: TIERFLOW_LANDING or data/landing)")
    d.add_argument("--if-absent", action="store_true", help="do nothing if demo extracts exist")
    d.set_defaults(func=cmd_demo)

    r = sub.add_parser("run", help="run the customer_tiering DAG for one or more as-of dates")
    g = r.add_mutually_exclusive_group(required=True)
    g.add_argument("--date", type=_date, help="one as-of date")
    g.add_argument("--from", dest="from_date", type=_date, help="first as-of date (with --to)")
    g.add_argument("--last", type=int, help="the last N dates up to the newest date folder")
    r.add_argument("--to", dest="to_date", type=_date, help="last as-of date (with --from)")
    r.add_argument("--summary", choices=["each", "last"], default="last",
                   help="print the summary after each date or only after the last (default)")
    r.add_argument("--verbose", action="store_true", help="show Airflow's and dbt's logs")
    r.set_defaults(func=cmd_run)

    c = sub.add_parser("clv", help="the CLV model (predicted lifetime value)")
    c_sub = c.add_subparsers(dest="action", required=True)
    c_validate = c_sub.add_parser(
        "validate", help="holdout check: predicted vs actual purchases per frequency bucket"
    )
    c_validate.add_argument("--date", type=date.fromisoformat, required=True, help="as-of date YYYY-MM-DD")
    c.set_defaults(func=cmd_clv)

    a = sub.add_parser("airflow", help="the real Airflow services on this machine (UI, scheduler, workers)")
    a_sub = a.add_subparsers(dest="action", required=True)
    a_start = a_sub.add_parser("start", help="api-server, scheduler, dag-processor, triggerer (+ workers)")
    a_start.add_argument("--executor", choices=["celery", "local"], default="celery",
                         help="celery: N workers on Redis (default); local: tasks run by the scheduler")
    a_start.add_argument("--workers", type=int, default=2, help="Celery workers (default 2)")
    a_start.add_argument("--concurrency", type=int, default=2, help="tasks at once per worker (default 2)")
    a_start.add_argument("--port", type=int, default=8080, help="UI / REST API port (8080; 0: any free)")
    a_sub.add_parser("stop", help="stop every process that start started")
    a_sub.add_parser("status", help="the services, their processes and health")
    a_sub.add_parser("manifest", help="build the dbt manifest the DAG renders from, if missing or stale")
    a.set_defaults(func=cmd_airflow)
    return p


def _exit_without_teardown(code: int | str | None) -> None:
    """End the process as Python's own exit does, minus the interpreter freeing every object
    one by one: after a night, ``tierflow run`` holds 1.3 million objects (Airflow, dbt's
    manifest, GX, pandas), and that teardown took 3.6 s after the summary was printed, every
    run (docs/performance.md, stop 33). What an exit does first still happens, in its order:
    the threads that are not daemons are waited for, then every ``atexit`` handler runs
    (logging's flush, ``weakref.finalize`` callbacks such as temporary folders'), then the
    standard streams are flushed; the exit status is the one ``SystemExit`` would give."""
    import atexit
    import threading

    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    from tierflow.settings import SettingsError

    try:
        settings = load_settings()
    except SettingsError as exc:
        _die(str(exc), 2)
    if argv is not None or args.func is not cmd_run:
        args.func(args, settings)
        return
    # the `tierflow run` command of a console: its process ends here
    try:
        args.func(args, settings)
    except SystemExit as exc:
        _exit_without_teardown(exc.code)
    except Exception:  # (a KeyboardInterrupt ends the process as Python ends it)
        import traceback

        traceback.print_exc()
        _exit_without_teardown(1)
    _exit_without_teardown(0)


if __name__ == "__main__":
    main()
