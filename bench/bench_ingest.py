"""Benchmark of the ingest step (issue 3, item 8): our loader against psql's plain ``\\copy``.

Generates a large ``erp/order_lines`` CSV (5 million lines by default) with ~0.1% bad lines
(negative quantity, a number that is not one, an unknown product), plus the customers,
products and orders it refers to. Then, in one run:

1. loads the referenced entities with ``run_ingest`` (not timed: set-up);
2. loads the order lines with ``run_ingest`` in a child process, timed, and reads the child's
   peak RSS (``ru_maxrss``): the loader's peak memory;
3. runs ``psql -c "\\copy ..."`` of the same file into a plain table with the same columns
   and types (``on_error ignore`` skips the lines whose numbers do not parse, as a plain COPY
   has no other way to get past them);

and prints rows/s of each, their ratio and the peak memory, against the targets
(ratio >= 0.8, peak < 500 MB). Steps 1-3 run ``--repeat`` times (3 by default), each round in
a fresh database, alternating the two sides; the verdict compares the medians, because on
a 2-core machine either side's time moves by 10-20% from run to run.

The warehouse is ``TIERFLOW_WAREHOUSE_URL`` when set (a fresh database is created next to
the one it names and dropped afterwards), else an embedded server in ``.tierflow/bench``.

    python bench/bench_ingest.py --rows 5000000 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
SETUP_DAY = date(2026, 3, 1)
LINES_DAY = date(2026, 3, 2)
TS = "2026-03-01T08:00:00"
PSQL_LABEL = "psql \\copy"
LINES_PER_ORDER = 5
PRODUCTS = 10_000
CUSTOMERS = 50_000
BAD_EVERY = 1000  # ~0.1% of lines are bad, cycling through the kinds below
LINES_HEADER = "order_id,line_number,product_id,quantity,unit_price,discount_amount,unit_cost,updated_at\n"
PLAIN_DDL = (
    "create table {} (order_id text, line_number integer, product_id text, quantity numeric,"
    " unit_price numeric, discount_amount numeric, unit_cost numeric, updated_at timestamptz)"
)


# -- data -------------------------------------------------------------------------------------
def generate(landing: Path, rows: int, seed: int = 7, orders: int | None = None) -> tuple[Path, int]:
    """Write the landing folder; return (order_lines path, number of bad lines). ``orders``:
    how many orders the lines refer to (default: one per 5 lines); fewer orders keep the
    referenced key set the same size while the file grows."""
    rng = random.Random(seed)
    orders = orders or max(1, -(-rows // LINES_PER_ORDER))
    per_order = max(LINES_PER_ORDER, -(-rows // orders))

    def out(entity: str, when: date, name: str) -> Path:
        path = landing / entity / when.isoformat() / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    with open(out("crm/customers", SETUP_DAY, "customers.csv"), "w", newline="") as fh:
        fh.write("customer_id,customer_name,created_at,updated_at\n")
        fh.writelines(f"K{k:06d},Customer {k},2025-01-15,{TS}\n" for k in range(CUSTOMERS))
    with open(out("erp/products", SETUP_DAY, "products.csv"), "w", newline="") as fh:
        fh.write("product_id,standard_cost,updated_at\n")
        fh.writelines(f"P{p:05d},{rng.randint(1, 500)}.50,{TS}\n" for p in range(PRODUCTS))
    with open(out("erp/orders", SETUP_DAY, "orders.csv"), "w", newline="") as fh:
        fh.write("order_id,customer_id,order_date,status,currency,updated_at\n")
        start = SETUP_DAY - timedelta(days=365)
        fh.writelines(
            f"O{o:08d},K{rng.randrange(CUSTOMERS):06d},{start + timedelta(days=o % 365)},"
            f"completed,CNY,{TS}\n"
            for o in range(orders)
        )
    # the set-up day needs one order line too: ingest fails while a required entity was never seen
    with open(out("erp/order_lines", SETUP_DAY, "order_lines.csv"), "w", newline="") as fh:
        fh.write(LINES_HEADER + f"O{0:08d},{per_order + 1},P{0:05d},1,1.00,,,{TS}\n")
    path = out("erp/order_lines", LINES_DAY, "order_lines.csv")
    bad = 0
    kinds = ("negative", "not-a-number", "unknown-product")
    with open(path, "w", newline="", buffering=1 << 20) as fh:
        fh.write(LINES_HEADER)
        buf: list[str] = []
        for n in range(rows):
            order, line = divmod(n, per_order)
            qty = str(rng.randint(1, 40))
            product = f"P{rng.randrange(PRODUCTS):05d}"
            cost = "" if n % 3 else f"{rng.randint(1, 400)}.25"
            if n % BAD_EVERY == BAD_EVERY // 2:
                kind = kinds[bad % len(kinds)]
                bad += 1
                if kind == "negative":
                    qty = f"-{qty}"
                elif kind == "not-a-number":
                    qty = "12x"
                else:
                    product = "P-UNKNOWN"
            buf.append(
                f"O{order:08d},{line + 1},{product},{qty},{rng.randint(1, 999)}.99,"
                f"{'5' if n % 7 == 0 else ''},{cost},{TS}\n"
            )
            if len(buf) >= 10_000:
                fh.writelines(buf)
                buf.clear()
        fh.writelines(buf)
    return path, bad


# -- the two loaders --------------------------------------------------------------------------
_CHILD = """
import json, resource, sys, time
from datetime import date
from pathlib import Path
from tierflow.config import load_config
from tierflow.ingest import run_ingest
args = json.loads(sys.stdin.read())  # on stdin: the URL holds the password, argv is public
url, landing, day, config = args["url"], args["landing"], args["day"], args["config"]
# pyarrow imports pandas the first time it converts a Python value (~1 s here); an Airflow
# worker has pandas loaded already, so the import is done before timing, like tierflow's own
import pyarrow as pa
pa.array(["warm up"])
t0 = time.perf_counter()
report = run_ingest(url, Path(landing), date.fromisoformat(day), load_config(Path(config)),
                    run_id="bench")
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "totals": report.totals(),
                  "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def run_ours(url: str, landing: Path, day: date) -> dict:
    """run_ingest in a child process: its wall time and its own peak RSS. The child gets its
    arguments on stdin, not on its command line (which every local user can read with ps)."""
    args = {"url": url, "landing": str(landing), "day": day.isoformat(),
            "config": str(ROOT / "config" / "tierflow.yml")}
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD], input=json.dumps(args), capture_output=True, text=True,
    )
    if proc.returncode != 0:
        sys.exit(f"run_ingest failed:\n{proc.stderr.strip()}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def psql_binary() -> str:
    found = shutil.which("psql")
    if found:
        return found
    from tierflow.warehouse import _bin_dir

    wheel = _bin_dir() / "psql"
    if wheel.exists():
        return str(wheel)
    sys.exit("psql not found: apt-get install -y postgresql-client (make bench-ingest does this)")


def psql_call(url: str, *args: str) -> tuple[list[str], dict[str, str]]:
    """psql's argument list and environment for ``url``: the password goes to psql in
    PGPASSWORD (its environment, which only its own user can read), never in the argument
    list, which every local user sees in ``ps``."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    password = unquote(parts.password) if parts.password is not None else None
    if password is None:  # libpq takes it as a URL parameter too
        password = dict(query).get("password")
    userinfo, at, hostport = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    netloc = f"{user}@{hostport}" if at and user else hostport
    rest = urlencode([(k, v) for k, v in query if k != "password"], quote_via=quote)  # libpq: %20, not +
    public = parts._replace(netloc=netloc, query=rest)
    env = dict(os.environ)  # the child's environment: ours plus the password
    if password is not None:
        env["PGPASSWORD"] = password
    return [psql_binary(), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", public.geturl(), *args], env


def run_psql_command(url: str, *args: str) -> subprocess.CompletedProcess:
    argv, env = psql_call(url, *args)
    return subprocess.run(argv, env=env, capture_output=True, text=True)


def run_psql(url: str, path: Path) -> dict:
    """psql's \\copy of the same file into a plain table with the same columns and types."""
    table = "bench_plain_copy"
    with psycopg.connect(url, autocommit=True) as conn:
        major = conn.info.server_version // 10000
        conn.execute(sql.SQL("drop table if exists {}").format(sql.Identifier(table)))
        ddl = PLAIN_DDL
        if major < 17:  # no on_error: a typed COPY would stop at the first bad number
            print(f"note: PostgreSQL {major} has no COPY on_error; psql copies into text columns")
            ddl = "create table {} (" + ", ".join(f"{c} text" for c in LINES_HEADER.strip().split(",")) + ")"
        conn.execute(sql.SQL(ddl).format(sql.Identifier(table)))
    # on_error (PostgreSQL 17+) lets a typed COPY get past the lines that are not numbers
    options = "format csv, header true" + (", on_error ignore" if major >= 17 else "")
    command = f"\\copy {table} from '{path}' with ({options})"
    t0 = time.perf_counter()
    proc = run_psql_command(url, "-c", command)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"psql \\copy failed: {proc.stderr.strip()}")
    with psycopg.connect(url) as conn:
        (loaded,) = conn.execute(sql.SQL("select count(*) from {}").format(sql.Identifier(table))).fetchone()
    return {"seconds": seconds, "loaded": loaded,
            "maxrss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}


# -- warehouse --------------------------------------------------------------------------------
def _with_db(url: str, db: str) -> str:
    return urlsplit(url)._replace(path=f"/{db}").geturl()


def server_url() -> tuple[str, object | None]:
    from tierflow.settings import load_settings

    settings = load_settings()
    if settings.warehouse_url_override:
        return settings.warehouse_url_override, None
    from tierflow.warehouse import EmbeddedWarehouse

    wh = EmbeddedWarehouse(settings.home / "bench" / "warehouse")
    wh.start()
    return wh.url("postgres"), wh


def one_round(base_url: str, landing: Path, lines_path: Path, rows: int) -> tuple[dict, dict]:
    """Our ingest and psql's \\copy of the same file, each into a fresh database."""
    db = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(db)))
    url = _with_db(base_url, db)
    try:
        setup = run_ours(url, landing, SETUP_DAY)
        print(f"  set-up (customers, products, orders; not timed): {setup['totals']['rows_loaded']:,} rows"
              f" in {setup['seconds']:.1f}s")
        ours = run_ours(url, landing, LINES_DAY)
        totals = ours["totals"]
        assert totals["rows_in"] == rows, totals
        assert totals["rows_loaded"] + totals["rows_rejected"] == totals["rows_in"], totals
        plain = run_psql(url, lines_path)
    finally:
        with psycopg.connect(base_url, autocommit=True) as conn:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(db)))
    return ours, plain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5_000_000, help="order lines to generate")
    parser.add_argument("--orders", type=int, default=None,
                        help="orders the lines refer to (default: rows / 5)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds of (ours, psql) on the same file; the medians are compared")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    args = parser.parse_args()

    from tierflow.settings import load_settings

    work = load_settings().home / "bench"
    landing = work / "landing"
    shutil.rmtree(landing, ignore_errors=True)
    t0 = time.perf_counter()
    lines_path, bad = generate(landing, args.rows, orders=args.orders)
    size_mb = lines_path.stat().st_size / 1e6
    print(f"generated {args.rows:,} order lines ({size_mb:,.0f} MB, {bad:,} bad) "
          f"in {time.perf_counter() - t0:.1f}s under {landing}")

    base_url, wh = server_url()
    rounds: list[tuple[dict, dict]] = []
    try:
        for i in range(1, max(args.repeat, 1) + 1):
            ours, plain = one_round(base_url, landing, lines_path, args.rows)
            rounds.append((ours, plain))
            ratio = plain["seconds"] / ours["seconds"]
            print(f"  round {i}: ours {ours['seconds']:.2f}s, {PSQL_LABEL} {plain['seconds']:.2f}s, "
                  f"ratio {ratio:.2f}, peak RSS {ours['maxrss_kb'] / 1024:.0f} MB,"
                  f" load average {os.getloadavg()[0]:.2f}")
    finally:
        if not args.keep:
            shutil.rmtree(landing, ignore_errors=True)
        if wh is not None:
            wh.stop()

    ours_s = statistics.median(o["seconds"] for o, _ in rounds)
    plain_s = statistics.median(p["seconds"] for _, p in rounds)
    totals, plain = rounds[-1][0]["totals"], rounds[-1][1]
    ours_rps = args.rows / ours_s
    plain_rps = args.rows / plain_s
    ratio = ours_rps / plain_rps
    peak_mb = max(o["maxrss_kb"] for o, _ in rounds) / 1024
    print()
    print(f"median of {len(rounds)} round(s)")
    print(f"{'':24}{'tierflow ingest':>18}{PSQL_LABEL:>16}")
    print(f"{'rows':24}{args.rows:>18,}{args.rows:>16,}")
    ours_counts = f"{totals['rows_loaded']:,} / {totals['rows_rejected']:,}"
    plain_counts = f"{plain['loaded']:,} / -"
    print(f"{'loaded / rejected':24}{ours_counts:>18}{plain_counts:>16}")
    print(f"{'seconds':24}{ours_s:>18.2f}{plain_s:>16.2f}")
    print(f"{'rows/s':24}{ours_rps:>18,.0f}{plain_rps:>16,.0f}")
    verdict = {True: "OK", False: "MISSED"}
    print(f"{'ratio (ours / psql)':24}{ratio:>18.2f}   target >= 0.80  {verdict[ratio >= 0.8]}")
    print(f"{'loader peak RSS (MB)':24}{peak_mb:>18.0f}   target <  500   {verdict[peak_mb < 500]}")


if __name__ == "__main__":
    main()
