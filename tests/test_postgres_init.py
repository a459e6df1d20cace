"""deploy/postgres-init/01-databases.sh, run for real against a fresh PostgreSQL 18 (the
embedded server; the compose stack runs the same script in the postgres:18 image).

Why: production's BI access must follow the one model the README and the pipeline use (a
NOLOGIN role ``tierflow_bi`` holds the grants, logins are its members), the script must be
safe to run again (it is how rotated passwords are applied), and no password may appear on a
command line while it runs.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import errors

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "deploy" / "postgres-init" / "01-databases.sh"
PASSWORDS = {
    "AIRFLOW_DB_PASSWORD": "airflow-pw-0b5e1f",
    "TIERFLOW_DB_PASSWORD": "tierflow-pw-7c3d2a",
    "BI_READER_PASSWORD": "bi-reader-pw-94e6b8",
    "METABASE_DB_PASSWORD": "metabase-pw-d41f07",
}


@pytest.fixture(scope="module")
def server() -> Iterator[dict[str, str]]:
    """A fresh embedded server of its own (the script creates cluster-wide roles); its libpq
    environment, and a `psql` first on PATH that logs its argument list before running."""
    from tierflow.warehouse import EmbeddedWarehouse, _bin_dir

    scratch = Path(tempfile.mkdtemp(prefix="tierflow-pg-init-"))
    scratch.chmod(0o755)  # as root the server's user must reach its data in place
    wh = EmbeddedWarehouse(scratch / "pg")
    wh.start()
    url = urlsplit(wh.url("postgres"))
    wrapper_dir = scratch / "bin"
    wrapper_dir.mkdir()
    argv_log = scratch / "psql-argv.log"
    wrapper = wrapper_dir / "psql"
    real_psql = _bin_dir() / "psql"
    wrapper.write_text(f'#!/bin/bash\nprintf "%s\\n" "$*" >> "{argv_log}"\nexec "{real_psql}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    env = {
        "PATH": f"{wrapper_dir}:{os.environ['PATH']}",
        "PGHOST": "127.0.0.1",
        "PGPORT": str(url.port),
        "PGPASSWORD": url.password,  # the superuser's, as the postgres image's entrypoint has it
        "POSTGRES_USER": "postgres",
        "TIERFLOW_PUBLISH_SCHEMA": "bi",
        "ARGV_LOG": str(argv_log),
        **PASSWORDS,
    }
    try:
        yield env
    finally:
        wh.remove()
        shutil.rmtree(scratch, ignore_errors=True)


def _run(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120)


def _url(env: dict[str, str], user: str, password: str | None, db: str = "tierflow") -> str:
    auth = f"{user}:{password}" if password else user
    return f"postgresql://{auth}@127.0.0.1:{env['PGPORT']}/{db}"


def test_one_bi_role_model_and_no_password_on_a_command_line(server: dict[str, str]) -> None:
    superuser = _url(server, "postgres", server["PGPASSWORD"], "postgres")
    with psycopg.connect(superuser, autocommit=True) as conn:
        # as on a fresh compose volume, the script creates database tierflow itself
        conn.execute("drop database tierflow")
        # a volume made before: tierflow_bi was itself a login with a password
        conn.execute("create role tierflow_bi login password 'old-bi-password'")

    first = _run(server)
    assert first.returncode == 0, first.stderr

    with psycopg.connect(superuser) as conn:
        roles = {name: (can_login, has_password) for name, can_login, has_password in conn.execute(
            "select rolname, rolcanlogin, rolpassword is not null from pg_authid"
            " where rolname in ('tierflow_bi', 'bi_reader', 'tierflow', 'airflow', 'metabase')"
        )}
        members = conn.execute(
            "select m.rolname from pg_auth_members a join pg_roles r on r.oid = a.roleid"
            " join pg_roles m on m.oid = a.member where r.rolname = 'tierflow_bi'"
        ).fetchall()
    assert roles == {
        "tierflow_bi": (False, False),  # holds the grants, cannot log in, has no password left
        "bi_reader": (True, True),
        "tierflow": (True, True), "airflow": (True, True), "metabase": (True, True),
    }
    assert members == [("bi_reader",)]

    # the pipeline's role publishes a table (after the script, as publish does every night)
    owner_url = _url(server, "tierflow", PASSWORDS["TIERFLOW_DB_PASSWORD"])
    with psycopg.connect(owner_url, autocommit=True) as conn:
        conn.execute("create table bi.customer_tiers (customer_id text, value_tier text)")
        conn.execute("insert into bi.customer_tiers values ('C01', 'high'), ('C02', 'low')")
        conn.execute("create schema raw")
        conn.execute("create table raw.erp__orders (order_id text)")

    bi_url = _url(server, "bi_reader", PASSWORDS["BI_READER_PASSWORD"])
    with psycopg.connect(bi_url, autocommit=True) as bi:
        # reads bi through its membership (search_path is bi), in read-only sessions
        assert bi.execute("select count(*) from customer_tiers").fetchone() == (2,)
        assert bi.execute("show default_transaction_read_only").fetchone() == ("on",)
        with pytest.raises(errors.ReadOnlySqlTransaction):
            bi.execute("insert into bi.customer_tiers values ('X', 'high')")
        # and the grants hold on their own, once the session is made writable
        bi.execute("set default_transaction_read_only = off")
        for statement in ("insert into bi.customer_tiers values ('X', 'high')",
                          "create table bi.mine (x int)", "select * from raw.erp__orders"):
            with pytest.raises(errors.InsufficientPrivilege):
                bi.execute(statement)
    for db in ("airflow", "metabase"):
        with pytest.raises(psycopg.OperationalError, match="permission denied"):
            psycopg.connect(_url(server, "bi_reader", PASSWORDS["BI_READER_PASSWORD"], db)).close()
    with pytest.raises(psycopg.OperationalError, match="not permitted to log in|password authentication"):
        psycopg.connect(_url(server, "tierflow_bi", "old-bi-password")).close()

    # idempotent: a second run (how rotated passwords are applied) changes nothing else
    second = _run(server)
    assert second.returncode == 0, second.stderr
    with psycopg.connect(bi_url) as bi:
        assert bi.execute("select count(*) from customer_tiers").fetchone() == (2,)

    # every psql call's argument list, as ps would have shown it: no password in any
    calls = Path(server["ARGV_LOG"]).read_text().splitlines()
    assert len(calls) == 4, calls  # two psql calls per run
    for password in [*PASSWORDS.values(), server["PGPASSWORD"]]:
        assert not [c for c in calls if password in c], password
