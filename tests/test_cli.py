"""Smoke tests of the `tierflow` command as a user types it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def tierflow(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tierflow.cli", *args],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env=env,
    )


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIERFLOW", "AIRFLOW"))}
    env.update(extra)
    return env


def test_help_lists_commands() -> None:
    res = tierflow("--help")
    assert res.returncode == 0
    for word in ("warehouse", "demo", "run"):
        assert word in res.stdout


def test_warehouse_url_with_external_url(tmp_path: Path) -> None:
    url = "postgresql://someone:pw@db.example:5433/wh"
    res = tierflow("warehouse", "url", env=clean_env(TIERFLOW_WAREHOUSE_URL=url))
    assert res.returncode == 0
    assert res.stdout.strip().splitlines()[-1] == url


def test_warehouse_remove_deletes_the_data_wherever_it_lives(tmp_path: Path) -> None:
    """`make clean` runs `tierflow warehouse remove`: the server stops and its data folder is
    gone (as root the data lives under /var/lib/tierflow, outside the checkout: that too)."""
    env = clean_env(TIERFLOW_HOME=str(tmp_path / "home"))
    res = tierflow("warehouse", "start", env=env)
    assert res.returncode == 0, res.stderr
    data = Path(res.stdout.strip().splitlines()[-1].split("; data in ")[1])
    assert (data / "PG_VERSION").is_file()
    res = tierflow("warehouse", "remove", env=env)
    assert res.returncode == 0, res.stderr
    assert f"data deleted ({data})" in res.stdout
    assert not data.exists() and not (tmp_path / "home" / "warehouse").exists()
    assert tierflow("warehouse", "status", env=env).returncode == 3


def test_warehouse_status_of_a_new_home_is_not_running(tmp_path: Path) -> None:
    res = tierflow("warehouse", "status", env=clean_env(TIERFLOW_HOME=str(tmp_path)))
    assert res.returncode == 3
    assert "not initialized" in res.stdout


def test_run_with_a_bad_config_fails_fast_naming_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "tierflow.yml"
    text = (ROOT / "config" / "tierflow.yml").read_text(encoding="utf-8")
    bad.write_text(text.replace("window_days: 365", "window_days: -3"), encoding="utf-8")
    res = tierflow("run", "--date", "2026-03-31",
                   env=clean_env(TIERFLOW_CONFIG=str(bad), TIERFLOW_HOME=str(tmp_path / "home")))
    assert res.returncode == 2
    assert "rfm.window_days" in res.stderr
    # nothing was started for a run that could not begin
    assert not (tmp_path / "home" / "warehouse").exists()


def test_run_rejects_reversed_range(tmp_path: Path) -> None:
    res = tierflow("run", "--from", "2026-03-31", "--to", "2026-03-01",
                   env=clean_env(TIERFLOW_HOME=str(tmp_path)))
    assert res.returncode != 0
    assert "before --from" in res.stderr


def test_demo_writes_the_landing_layout(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    res = tierflow("demo", "--customers", "40", "--days", "20", "--landing", str(landing),
                   env=clean_env(TIERFLOW_HOME=str(tmp_path)))
    assert res.returncode == 0, res.stderr
    assert (landing / "_demo_manifest.json").exists()
    assert list(landing.glob("erp/orders/*/*.csv"))
    again = tierflow("demo", "--if-absent", "--landing", str(landing),
                     env=clean_env(TIERFLOW_HOME=str(tmp_path)))
    assert again.returncode == 0 and "already" in again.stdout


def test_failure_reason_tells_whether_bi_was_published(warehouse_url: str) -> None:
    """A run that failed after publish (report, notify) must not claim nothing was published."""
    import psycopg
    from tierflow.cli import _failure_reason
    from tierflow.ingest.schema import ensure_schema

    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        ensure_schema(conn)
        conn.execute(
            "insert into tierflow_meta.runs (run_id, as_of_date, status, error, published_at) values"
            " ('r1', '2026-03-31', 'failed', 'ingest: no such file', null),"
            " ('r2', '2026-03-31', 'failed', 'notify: bi.account_alerts is missing', now())"
        )
    assert _failure_reason("r1", warehouse_url) == ("ingest: no such file", False)
    assert _failure_reason("r2", warehouse_url) == ("notify: bi.account_alerts is missing", True)
    assert _failure_reason("r3", warehouse_url) == ("", False)


def test_a_run_process_ends_as_python_would_without_its_teardown(tmp_path: Path) -> None:
    """`tierflow run` ends its process with _exit_without_teardown: what Python's exit does
    before freeing its objects still happens (a thread that is not a daemon is waited for, the
    atexit handlers and weakref finalizers run, buffered output is written) and the status is
    SystemExit's."""
    script = f"""
import atexit, sys, tempfile, threading, time, weakref
from pathlib import Path
from tierflow.cli import _exit_without_teardown
out = Path({str(tmp_path)!r})
def late():
    time.sleep(0.5)
    (out / "thread").write_text("done")
threading.Thread(target=late).start()
atexit.register(lambda: (out / "atexit").write_text("ran"))
folder = tempfile.TemporaryDirectory(dir=out)  # removed by its weakref finalizer at exit
print("x" * 100_000, end="")
print("end", end="")  # left in the buffer
_exit_without_teardown(int(sys.argv[1]) if sys.argv[1].isdigit() else sys.argv[1])
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # output buffered as usual
    for code, status in (("3", 3), ("0", 0), ("a message", 1)):
        res = subprocess.run([sys.executable, "-c", script, code], capture_output=True, text=True, timeout=60,
                             env=env)
        assert res.returncode == status, res.stderr
        assert res.stdout == "x" * 100_000 + "end"
        assert (tmp_path / "thread").read_text() == "done" and (tmp_path / "atexit").read_text() == "ran"
        assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == []
        assert res.stderr == ("a message\n" if status == 1 else "")
        (tmp_path / "thread").unlink()
        (tmp_path / "atexit").unlink()
