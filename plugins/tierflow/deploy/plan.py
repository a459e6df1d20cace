"""What a local Airflow deployment runs: its services' command lines and their environment.

Pure functions of plain values (no processes, no network), so tests can call them with
literals; ``local.py`` starts, watches and stops what they describe.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tierflow.settings import DAGS_DIR, WAREHOUSE_CONN_ID, airflow_conn_uri, sqlalchemy_url

EXECUTORS = {"celery": "CeleryExecutor", "local": "LocalExecutor"}
ADMIN_USER = "admin"
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"


@dataclass(frozen=True)
class Service:
    """One long-running Airflow process: its name (also its log file's) and command line."""

    name: str
    argv: tuple[str, ...]


@dataclass(frozen=True)
class Layout:
    """Where one deployment keeps its state (all under ``<TIERFLOW_HOME>/airflow-local``)."""

    root: Path

    @property
    def airflow_home(self) -> Path:
        return self.root / "airflow"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def secrets_file(self) -> Path:
        return self.root / "secrets.json"

    @property
    def password_file(self) -> Path:
        """The admin's password, read by Airflow's simple auth manager (JSON, mode 600)."""
        return self.root / "admin-password.json"

    @property
    def lock_file(self) -> Path:
        return self.root / ".lock"


def queue_name(root: Path) -> str:
    """The Celery queue of one deployment: its own, so two deployments sharing a Redis
    (two checkouts, parallel test runs) never take each other's tasks."""
    return "tierflow-" + hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:12]


def services(executor: str, workers: int, concurrency: int, port: int, queue: str) -> list[Service]:
    """The processes of a deployment, in start order. Log serving is off everywhere: the API
    server reads task logs from the shared local log folder, and N workers on one machine
    would otherwise all want the same log-server port."""
    airflow = (sys.executable, "-m", "airflow")
    started = [
        Service("api-server", (*airflow, "api-server", "--host", "127.0.0.1", "--port", str(port),
                               "--workers", "1")),
        Service("scheduler", (*airflow, "scheduler", "--skip-serve-logs")),
        Service("dag-processor", (*airflow, "dag-processor")),
        Service("triggerer", (*airflow, "triggerer", "--skip-serve-logs")),
    ]
    if executor == "celery":
        started += [
            Service(f"worker-{i}", (*airflow, "celery", "worker", "--queues", queue,
                                    "--concurrency", str(concurrency),
                                    "--celery-hostname", f"worker-{i}@{queue}",
                                    "--skip-serve-logs", "--without-mingle", "--without-gossip"))
            for i in range(1, workers + 1)
        ]
    return started


def celery_result_backend(db_url: str) -> str:
    """Celery keeps task results in the metadata database (SQLAlchemy URL with ``db+``)."""
    return "db+" + sqlalchemy_url(db_url)



# Parsing customer_tiering rebuilds the dbt manifest (`dbt parse`) when the models changed:
# 10-60 s on a busy 2-core machine, over Airflow's 30 s import timeout (an import error) and
# near the dag-processor's 50 s. Compose sets the same values.
PARSE_TIMEOUTS = {
    "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "180",
    "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": "240",
}

def environment(
    *,
    layout: Layout,
    executor: str,
    port: int,
    db_url: str,
    warehouse_url: str,
    broker_url: str,
    queue: str,
    secrets: dict[str, str],
    inherited: dict[str, str],
) -> dict[str, str]:
    """The environment of every service (and so of every task they run).

    ``fixed`` makes the services one deployment (home, database, executor, secrets, URLs) and
    overrides whatever the caller's environment says. ``tunable`` holds operating defaults
    that a value already in the environment replaces, e.g. a test's short heartbeat timeout.
    """
    base_url = f"http://127.0.0.1:{port}"
    fixed = {
        "AIRFLOW_HOME": str(layout.airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_DIR),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__CORE__EXECUTOR": EXECUTORS[executor],
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sqlalchemy_url(db_url),
        # psycopg 3 is async as well: no asyncpg, which Airflow would otherwise derive
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": sqlalchemy_url(db_url),
        "AIRFLOW__CORE__FERNET_KEY": secrets["fernet_key"],
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets["jwt_secret"],
        "AIRFLOW__API__SECRET_KEY": secrets["api_secret_key"],
        "AIRFLOW__API__BASE_URL": base_url,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
        "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(layout.password_file),
        "AIRFLOW__OPERATORS__DEFAULT_QUEUE": queue,
        "AIRFLOW__CELERY__BROKER_URL": broker_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": celery_result_backend(db_url),
        f"AIRFLOW_CONN_{WAREHOUSE_CONN_ID.upper()}": airflow_conn_uri(warehouse_url),
        "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
        "GX_ANALYTICS_ENABLED": "False",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
        "DO_NOT_TRACK": "1",
    }
    tunable = {
        **PARSE_TIMEOUTS,
        # a task whose worker died is failed after this long without a heartbeat, then retried
        "AIRFLOW__CORE__DEFAULT_TASK_RETRIES": "2",
        "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": "60",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "300",
        "AIRFLOW__CORE__PARALLELISM": "8",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
    }
    env = {**tunable, **inherited}
    # the caller's own Airflow home, database or executor must not leak into this deployment
    for key in [k for k in env if k.startswith("AIRFLOW__DATABASE__") or k.startswith("AIRFLOW__CELERY__")]:
        del env[key]
    env.update(fixed)
    return env


def redact(url: str) -> str:
    """A URL fit for printing: the password replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
