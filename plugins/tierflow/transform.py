"""dbt helpers: the profile, vars and manifest that the DAG's dbt tasks (``prepare`` and the
Cosmos groups ``transform`` and ``tiers``) use, and dbt runs of our own.

In the DAG's dbt tasks, Cosmos runs dbt with a profile built from the Airflow connection
``tierflow_warehouse``. Everywhere else we run dbt in-process ourselves (:func:`run_dbt`):
``dbt parse`` when a parse of the DAG file or ``tierflow airflow manifest`` finds the
manifest missing or stale (:func:`ensure_manifest`), the night's dbt docs (:func:`generate_docs`,
from the report step) and the tests. Those runs use ``dbt_project/profiles.yml``, which
reads the TIERFLOW_DBT_* values that :func:`dbt_env` derives from the warehouse URL. (There
is no ``tierflow dbt`` command.)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from datetime import date
from pathlib import Path
from urllib.parse import unquote, urlsplit

from tierflow.config import TierflowConfig, dbt_vars
from tierflow.dbt_patches import apply_dbt_patches
from tierflow.settings import BUILD_SCHEMA, DBT_PROJECT_DIR

MANIFEST_PATH = DBT_PROJECT_DIR / "target" / "manifest.json"
# the project_fingerprint() the manifest was built from
FINGERPRINT_PATH = MANIFEST_PATH.with_name("manifest.fingerprint")
# the profile and target names of dbt_project/profiles.yml, which the dbt tasks' profile keeps
DBT_PROFILE = "tierflow"
DBT_TARGET = "warehouse"
# the Cosmos group whose partial-parse cache holds the night's one parse: `prepare` and both mart
# groups use it, and the report's dbt docs start from it
NIGHT_PARSE_GROUP = "transform"

log = logging.getLogger(__name__)


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


def _private_target() -> Path:
    """A dbt target folder of this process's own (artifacts, logs, partial-parse state)."""
    return Path(tempfile.gettempdir()) / f"tierflow-dbt-{os.getpid()}"


def run_dbt(
    args: list[str], url: str, target_path: Path | None = None, callbacks: list | None = None
) -> Path:
    """Run a dbt command in-process against the warehouse at ``url``; raise on failure.

    dbt writes its artifacts to ``target_path``, by default a folder private to this
    process: the project's own ``target/`` holds the manifest Cosmos renders the DAG from,
    and a dbt run elsewhere (a test, a docs build, a second worker) must not rewrite it
    under a running DAG. Returns the target folder, where e.g. ``sources.json`` is.
    ``callbacks`` receive dbt's events (``dbtRunner(callbacks=...)``).
    """
    from dbt.cli.main import dbtRunner

    apply_dbt_patches()
    target = target_path or _private_target()
    saved = {k: os.environ.get(k) for k in dbt_env(url)}
    os.environ.update(dbt_env(url))
    try:
        res = dbtRunner(callbacks=callbacks or []).invoke(
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
    Cosmos renders the DAG from, and a docs run must not swap it under a running DAG. It starts
    from the night's parsed project where this machine has it (:func:`_reuse_night_parse`), with
    the dbt tasks' profile and target names, which dbt's check of the parsed state compares.
    """
    reasons: list[str] = []

    def on_event(event) -> None:
        if event.info.name == "UnableToPartialParse":
            reasons.append(event.data.reason)

    with tempfile.TemporaryDirectory(prefix="tierflow-dbt-docs-") as target:
        reused = _reuse_night_parse(Path(target))
        run_dbt(
            # no debug log file: it would be deleted with the temporary target folder
            ["docs", "generate", "--static", "--quiet", "--vars", json.dumps(run_vars(cfg, as_of)),
             "--profile", DBT_PROFILE, "--target", DBT_TARGET, "--log-level-file", "none"],
            url,
            Path(target),
            callbacks=[on_event],
        )
        if reused and reasons:  # e.g. a profile that differs from the dbt tasks': a slower report
            log.warning("dbt docs: the night's parsed project not reusable (%s): parsed again", reasons[0])
        elif reused:
            log.info("dbt docs: started from the night's parsed project")
        page = Path(target) / "static_index.html"
        if not page.is_file():
            raise DbtError(f"dbt docs generate --static wrote no {page.name} in {target}")
        out_dir.mkdir(parents=True, exist_ok=True)
        index = out_dir / "index.html"
        shutil.copyfile(page, index)
    return index


# What `dbt parse` reads besides the project's files: none of these folders is an input.
_NOT_INPUTS = {"target", "logs", "dbt_packages"}


def project_fingerprint(project_dir: Path = DBT_PROJECT_DIR) -> str:
    """A hash of everything ``dbt parse`` reads: every file of the dbt project (models, macros,
    tests, YAML, profiles; not its outputs) by path and content, and the dbt version.

    Content, not modification times: a ``git pull``, a ``git checkout`` of an older commit, a
    ``COPY`` into an image and a bind mount all keep or reset mtimes in ways that say nothing
    about whether the manifest still describes the project. Hashing the ~100 small files of the
    project takes milliseconds, cheap enough for every parse of the DAG file.
    """
    from importlib.metadata import version

    digest = hashlib.sha256(f"dbt-core {version('dbt-core')}\n".encode())
    for path in sorted(project_dir.rglob("*")):
        relative = path.relative_to(project_dir)
        if relative.parts[0] in _NOT_INPUTS or any(part.startswith(".") for part in relative.parts):
            continue
        if path.is_file():
            digest.update(f"{relative.as_posix()}\0{path.stat().st_size}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def manifest_state() -> str:
    """``fresh``, ``stale`` (the project changed since the manifest was built) or ``missing``."""
    if not MANIFEST_PATH.is_file() or not FINGERPRINT_PATH.is_file():
        return "missing"
    built_from = FINGERPRINT_PATH.read_text(encoding="utf-8").strip()
    return "fresh" if built_from == project_fingerprint() else "stale"


def ensure_manifest(url: str = "postgresql://postgres@127.0.0.1:5432/postgres") -> Path:
    """The path of a manifest that describes the dbt project as it is now; (re)built if missing
    or stale. Cosmos renders the DAG's dbt groups (``transform``, ``tiers``) from it.

    Called where the DAG file is parsed (dag-processor, every worker, ``tierflow run``), so a
    fresh clone, a new image and a ``git pull`` that changed a model all get a manifest of the
    current project: a stale one is never used. ``manifest.fingerprint`` beside the manifest
    records the :func:`project_fingerprint` it was built from; when it matches, this costs one
    hash of the project. Otherwise ``dbt parse`` (no database connection, so any well-formed URL
    works) runs under a file lock, so concurrent parsers build once, in a folder of its own;
    the manifest, dbt's partial-parse state and then the fingerprint are moved into ``target/``
    with atomic renames, so a reader without the lock sees the old files or the new, never a
    half-written one.
    """
    import fcntl

    if manifest_state() == "fresh":
        return MANIFEST_PATH
    target = MANIFEST_PATH.parent
    try:
        target.mkdir(parents=True, exist_ok=True)
        lock = open(target / ".manifest.lock", "w")
    except OSError as exc:
        raise DbtError(
            f"the dbt manifest {MANIFEST_PATH} is {manifest_state()} and cannot be rebuilt here ({exc});"
            " run `tierflow airflow manifest` where the dbt project is writable"
        ) from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = manifest_state()  # another process may have rebuilt it while we waited
        if state == "fresh":
            return MANIFEST_PATH
        log.warning("dbt manifest %s is %s: running dbt parse", MANIFEST_PATH, state)
        fingerprint = project_fingerprint()
        build = target / ".parse"
        run_dbt(["parse", "--quiet"], url, build)
        for name in ("manifest.json", "partial_parse.msgpack"):
            if (build / name).is_file():
                shutil.copyfile(build / name, target / f".{name}.new")
                os.replace(target / f".{name}.new", target / name)
        (target / ".manifest.fingerprint.new").write_text(fingerprint + "\n", encoding="utf-8")
        os.replace(target / ".manifest.fingerprint.new", FINGERPRINT_PATH)
    return MANIFEST_PATH


def _reuse_night_parse(target: Path) -> bool:
    """Copy the night's parsed project (``partial_parse.msgpack`` of the Cosmos cache that
    ``prepare`` and the mart tasks share) into the dbt ``target`` folder, pointed at this
    project's folder as Cosmos does for its tasks; dbt checks the state as usual (project files,
    vars other than the date, profile) and parses whatever it cannot reuse. False when this
    machine has no such state (a worker that ran no dbt task, Cosmos' cache off)."""
    from cosmos.cache import patch_partial_parse_content
    from cosmos.dbt.project import get_partial_parse_path

    folder = cosmos_cache_dir(NIGHT_PARSE_GROUP)
    state = get_partial_parse_path(folder) if folder is not None else None
    if state is None or not state.is_file():
        return False

    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(state, target / state.name)
    patch_partial_parse_content(target / state.name, DBT_PROJECT_DIR)
    return True


def cosmos_execution_config(dbt_executable: str):
    """How Cosmos runs the marts: TIERFLOW_DBT_EXECUTION_MODE, ``watcher`` (one ``dbt build`` of
    each group's marts, a sensor task per mart and one per mart's tests; the default, measured faster
    under the Airflow services) or ``local`` (a dbt process per mart task; what ``tierflow
    run``'s ``dag.test()`` uses)."""
    from cosmos import ExecutionConfig
    from cosmos.constants import ExecutionMode

    from tierflow.settings import load_settings

    modes = {"local": ExecutionMode.LOCAL, "watcher": ExecutionMode.WATCHER}
    mode = modes[load_settings().dbt_execution_mode]
    return ExecutionConfig(execution_mode=mode, dbt_executable_path=dbt_executable)


def cosmos_cache_dir(task_group_id: str, dag_id: str = "customer_tiering") -> Path | None:
    """The folder where Cosmos keeps the dbt partial-parse state of a DAG's task group (None
    when Cosmos' cache is off), so a dbt task outside the group can share it.

    A dbt task without one parses the whole project from scratch (~3-10 s on 2 cores); the
    DAG's ``prepare`` task, outside the ``transform`` group, gets the group's folder so that
    one parse serves the whole night. Cosmos names the folder ``<dag_id>__<group_id>``.
    """
    from cosmos import settings as cosmos_settings

    if not cosmos_settings.enable_cache:
        return None
    folder = Path(cosmos_settings.cache_dir) / f"{dag_id}__{task_group_id}"
    (folder / "target").mkdir(parents=True, exist_ok=True)
    return folder


def cosmos_test_behavior():
    """Each mart with its dbt tests: ``local`` builds a mart and its tests in one task (``dbt
    build``); ``watcher``'s producer runs one ``dbt build`` of its group's marts, tests included, and
    each mart gets a sensor task for the model and one for its tests (Cosmos has no build
    operator in watcher mode)."""
    from cosmos.constants import TestBehavior

    from tierflow.settings import load_settings

    return TestBehavior.AFTER_EACH if load_settings().dbt_execution_mode == "watcher" else TestBehavior.BUILD


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
        profile_name=DBT_PROFILE,
        target_name=DBT_TARGET,
        # tests of a model run in parallel; they wait on the database, not on this machine's CPU
        profile_mapping=WarehouseProfile(
            conn_id=WAREHOUSE_CONN_ID, profile_args={"schema": BUILD_SCHEMA, "threads": 4}
        ),
    )
