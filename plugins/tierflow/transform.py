"""dbt helpers: the profile, vars and manifest that the DAG's Cosmos task group uses.

Inside Airflow, Cosmos runs dbt with a profile built from the Airflow connection
``tierflow_warehouse``. Outside Airflow (``tierflow dbt ...``, tests, manifest parsing) we
run dbt ourselves with ``dbt_project/profiles.yml``, which reads the TIERFLOW_DBT_* values
that :func:`dbt_env` derives from the warehouse URL.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from datetime import date
from pathlib import Path
from urllib.parse import unquote, urlsplit

from tierflow.config import TierflowConfig, dbt_vars
from tierflow.settings import BUILD_SCHEMA, DBT_PROJECT_DIR

MANIFEST_PATH = DBT_PROJECT_DIR / "target" / "manifest.json"


class DbtError(RuntimeError):
    """A dbt command failed."""


def dbt_env(url: str) -> dict[str, str]:
    parts = urlsplit(url)
    return {
        "TIERFLOW_DBT_HOST": parts.hostname or "127.0.0.1",
        "TIERFLOW_DBT_PORT": str(parts.port or 5432),
        "TIERFLOW_DBT_USER": unquote(parts.username or "postgres"),
        "TIERFLOW_DBT_PASSWORD": unquote(parts.password or ""),
        "TIERFLOW_DBT_DBNAME": (parts.path or "/").lstrip("/") or "postgres",
        "TIERFLOW_DBT_SCHEMA": BUILD_SCHEMA,
    }


def run_vars(cfg: TierflowConfig, as_of: date | str, publish_schema: str | None = None) -> dict:
    """dbt vars for one run: the business rules, the as-of date and the published schema
    (where the marts read earlier nights from: only what passed the gates is there)."""
    if publish_schema is None:
        from tierflow.settings import load_settings

        publish_schema = load_settings().publish_schema
    return {"as_of_date": str(as_of), "publish_schema": publish_schema, **dbt_vars(cfg)}


def _project_files_newer_than(path: Path) -> bool:
    if not path.exists():
        return True
    built = path.stat().st_mtime
    for sub in ("models", "macros", "tests", "seeds", "snapshots"):
        for f in (DBT_PROJECT_DIR / sub).rglob("*"):
            if f.is_file() and f.stat().st_mtime > built:
                return True
    return (DBT_PROJECT_DIR / "dbt_project.yml").stat().st_mtime > built


def _private_target() -> Path:
    """A dbt target folder of this process's own (artifacts, logs, partial-parse state)."""
    return Path(tempfile.gettempdir()) / f"tierflow-dbt-{os.getpid()}"


def run_dbt(args: list[str], url: str, target_path: Path | None = None) -> Path:
    """Run a dbt command in-process against the warehouse at ``url``; raise on failure.

    dbt writes its artifacts to ``target_path``, by default a folder private to this
    process: the project's own ``target/`` holds the manifest Cosmos renders the DAG from,
    and a dbt run elsewhere (a test, a docs build, a second worker) must not rewrite it
    under a running DAG. Returns the target folder, where e.g. ``sources.json`` is.
    """
    from dbt.cli.main import dbtRunner

    target = target_path or _private_target()
    saved = {k: os.environ.get(k) for k in dbt_env(url)}
    os.environ.update(dbt_env(url))
    try:
        res = dbtRunner().invoke(
            [*args, "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
             "--target-path", str(target), "--log-path", str(target)]
        )
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if not res.success:
        raise DbtError(f"dbt {' '.join(args[:1])} failed: {res.exception or 'see the dbt log above'}")
    return target


def generate_docs(url: str, cfg: TierflowConfig, as_of: date | str, out_dir: Path) -> Path:
    """dbt docs for one run as a single self-contained page: ``<out_dir>/index.html``.

    ``dbt docs generate --static`` compiles the project with the run's vars, reads the
    catalog (column types, row counts) of the build schemas and writes ``static_index.html``
    with the manifest and catalog inlined, so the page opens from disk with no server. dbt
    writes into a private target folder: the project's own ``target/`` holds the manifest
    Cosmos renders the DAG from, and a docs run must not swap it under a running DAG.
    """
    with tempfile.TemporaryDirectory(prefix="tierflow-dbt-docs-") as target:
        run_dbt(
            ["docs", "generate", "--static", "--quiet", "--vars", json.dumps(run_vars(cfg, as_of))],
            url,
            Path(target),
        )
        page = Path(target) / "static_index.html"
        if not page.is_file():
            raise DbtError(f"dbt docs generate --static wrote no {page.name} in {target}")
        out_dir.mkdir(parents=True, exist_ok=True)
        index = out_dir / "index.html"
        shutil.copyfile(page, index)
    return index


def ensure_manifest(url: str = "postgresql://postgres@127.0.0.1:5432/postgres") -> Path:
    """(Re)build dbt's manifest when the project changed; Cosmos renders the DAG from it.

    ``dbt parse`` does not connect to the database, so any well-formed URL works. A file
    lock makes concurrent callers (two test workers, the CLI beside a scheduler) parse once
    and never read a half-written manifest.
    """
    import fcntl

    MANIFEST_PATH.parent.mkdir(parents=True, exist_ok=True)
    with open(MANIFEST_PATH.parent / ".manifest.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _project_files_newer_than(MANIFEST_PATH):
            run_dbt(["parse", "--quiet"], url, MANIFEST_PATH.parent)
    return MANIFEST_PATH


def cosmos_profile_config():
    """Cosmos profile for the DAG: the Airflow connection ``tierflow_warehouse`` as dbt's
    Postgres profile, targeting the build schema.

    Cosmos' stock mapping insists on a password; a warehouse on trust auth (a local
    server, or the machine's PostgreSQL in the tests) has none, so an empty password is
    passed as such instead of failing every dbt task.
    """
    from cosmos import ProfileConfig
    from cosmos.profiles import PostgresUserPasswordProfileMapping

    from tierflow.settings import WAREHOUSE_CONN_ID

    class WarehouseProfile(PostgresUserPasswordProfileMapping):
        required_fields = ["host", "user", "dbname"]

        @property
        def secret_fields(self) -> list[str]:  # type: ignore[override]
            return ["password"] if self.conn.password else []

        @property
        def profile(self) -> dict:
            profile = super().profile
            if not self.conn.password:
                profile["password"] = ""
            return profile

    return ProfileConfig(
        profile_name="tierflow",
        target_name="warehouse",
        # tests of a model run in parallel; they wait on the database, not on this machine's CPU
        profile_mapping=WarehouseProfile(
            conn_id=WAREHOUSE_CONN_ID, profile_args={"schema": BUILD_SCHEMA, "threads": 4}
        ),
    )
