"""Environment settings: paths, warehouse URL, schema names.

This is the only module that reads environment variables. Business rules live in the config
file (``config.py``); everything about *where* things are lives here.

| variable                 | default                         |
|--------------------------|---------------------------------|
| TIERFLOW_HOME            | ``<checkout>/.tierflow``        |
| TIERFLOW_LANDING         | ``<checkout>/data/landing``     |
| TIERFLOW_CONFIG          | ``<checkout>/config/tierflow.yml`` |
| TIERFLOW_WAREHOUSE_URL   | the embedded server's URL       |
| TIERFLOW_PUBLISH_SCHEMA  | ``bi``                          |
| TIERFLOW_EXPORTS         | ``$TIERFLOW_HOME/exports``      |
| TIERFLOW_BI_ROLE         | ``tierflow_bi`` (read-only role)|
| TIERFLOW_EXPECTATIONS    | ``<checkout>/expectations``     |
| TIERFLOW_SMTP_HOST       | unset: no alert e-mails         |
| TIERFLOW_SMTP_PORT       | 465 with SSL, 587 with STARTTLS, else 25 |
| TIERFLOW_SMTP_USER       | unset: no login                 |
| TIERFLOW_SMTP_PASSWORD   | unset                           |
| TIERFLOW_SMTP_FROM       | ``tierflow@<SMTP host>``        |
| TIERFLOW_SMTP_SSL        | ``true`` on port 465, else ``false`` (TLS from the first byte) |
| TIERFLOW_SMTP_STARTTLS   | ``true`` when a user is set (and not SSL), else ``false`` |
| TIERFLOW_SMTP_ALLOW_PLAINTEXT | ``false``: a login needs SSL or STARTTLS |
| TIERFLOW_AIRFLOW_DB_URL  | unset: database ``airflow`` of the embedded server (``tierflow airflow start``) |
| TIERFLOW_CELERY_BROKER_URL | ``redis://127.0.0.1:6379/0``  |
| TIERFLOW_DBT_EXECUTION_MODE | ``watcher`` (or ``local``; ``tierflow run``: always ``local``) |
| TIERFLOW_DBT_GROUP_BUILD | ``true``: ``tierflow run`` builds a group of marts in one dbt invocation |
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit

# plugins/tierflow/settings.py -> the checkout root
PROJECT_ROOT = Path(__file__).resolve().parents[2]
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"
DAGS_DIR = PROJECT_ROOT / "dags"
EXPECTATIONS_DIR = PROJECT_ROOT / "expectations"

RAW_SCHEMA = "raw"
META_SCHEMA = "tierflow_meta"
BUILD_SCHEMA = "build"  # dbt target schema; folders add _staging / _intermediate / _marts
MARTS_SCHEMA = f"{BUILD_SCHEMA}_marts"
WAREHOUSE_CONN_ID = "tierflow_warehouse"

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class SettingsError(ValueError):
    """An environment setting is invalid; the message names the variable."""


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser().resolve() if value else default


def _identifier(name: str, value: str) -> str:
    if not _IDENT.match(value):
        raise SettingsError(
            f"{name}={value!r} is not a valid schema name (lowercase letters, digits, _; max 63)"
        )
    return value


DEFAULT_CELERY_BROKER_URL = "redis://127.0.0.1:6379/0"
DBT_EXECUTION_MODES = ("local", "watcher")
# measured faster under the deployment (docs/production.md, "WATCHER or LOCAL")
DEFAULT_DBT_EXECUTION_MODE = "watcher"

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _flag(name: str) -> bool | None:
    """A true/false variable; None when unset or empty."""
    text = os.environ.get(name, "").strip().lower()
    if not text:
        return None
    if text not in _TRUE + _FALSE:
        raise SettingsError(f"{name}={text!r}: use true or false")
    return text in _TRUE


@dataclass(frozen=True)
class SmtpSettings:
    """The SMTP server for the account-alert e-mails (all from the environment).

    A login (``user``) goes over TLS: implicit (``ssl``, port 465) or STARTTLS, with the
    server's certificate verified. Logging in over plaintext needs ``allow_plaintext``.
    """

    host: str
    port: int
    sender: str
    starttls: bool = False
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    ssl: bool = False
    allow_plaintext: bool = False

    def __post_init__(self) -> None:
        if self.ssl and self.starttls:
            raise SettingsError(
                "TIERFLOW_SMTP_STARTTLS=true with TIERFLOW_SMTP_SSL=true (or port 465): "
                "the connection is either TLS from the start or upgraded by STARTTLS; choose one"
            )
        if self.user and not self.encrypted and not self.allow_plaintext:
            raise SettingsError(
                "TIERFLOW_SMTP_USER is set but the connection would be unencrypted "
                "(TIERFLOW_SMTP_STARTTLS=false), so the password would cross the network in clear: "
                "use STARTTLS (the default with a user, port 587) or TLS (TIERFLOW_SMTP_SSL=true, "
                "port 465), or accept plaintext with TIERFLOW_SMTP_ALLOW_PLAINTEXT=true"
            )

    @property
    def encrypted(self) -> bool:
        return self.ssl or self.starttls


def _smtp_settings() -> SmtpSettings | None:
    host = os.environ.get("TIERFLOW_SMTP_HOST", "").strip()
    if not host:
        return None
    user = os.environ.get("TIERFLOW_SMTP_USER") or None
    password = os.environ.get("TIERFLOW_SMTP_PASSWORD") or None
    if password and not user:
        raise SettingsError("TIERFLOW_SMTP_PASSWORD is set without TIERFLOW_SMTP_USER")
    port_txt = os.environ.get("TIERFLOW_SMTP_PORT", "").strip()
    ssl_flag = _flag("TIERFLOW_SMTP_SSL")
    use_ssl = ssl_flag if ssl_flag is not None else port_txt == "465"
    starttls_flag = _flag("TIERFLOW_SMTP_STARTTLS")
    # with a login, encrypted unless said otherwise (and plaintext then needs ALLOW_PLAINTEXT)
    starttls = starttls_flag if starttls_flag is not None else (user is not None and not use_ssl)
    port_txt = port_txt or ("465" if use_ssl else "587" if starttls else "25")
    if not port_txt.isdigit() or not 0 < int(port_txt) < 65536:
        raise SettingsError(f"TIERFLOW_SMTP_PORT={port_txt!r} is not a port number (1-65535)")
    sender = os.environ.get("TIERFLOW_SMTP_FROM", "").strip() or f"tierflow@{host}"
    if "@" not in sender:
        raise SettingsError(f"TIERFLOW_SMTP_FROM={sender!r} is not an e-mail address")
    return SmtpSettings(host=host, port=int(port_txt), sender=sender, starttls=starttls, user=user,
                        password=password, ssl=use_ssl,
                        allow_plaintext=bool(_flag("TIERFLOW_SMTP_ALLOW_PLAINTEXT")))


@dataclass(frozen=True)
class Settings:
    home: Path
    landing: Path
    config_path: Path
    exports: Path
    publish_schema: str
    warehouse_url_override: str | None
    bi_role: str = "tierflow_bi"
    expectations: Path = EXPECTATIONS_DIR
    smtp: SmtpSettings | None = None  # None: TIERFLOW_SMTP_HOST unset, no e-mails
    # the local Airflow deployment (`tierflow airflow start`): metadata DB and Celery broker
    airflow_db_url_override: str | None = field(default=None, repr=False)
    celery_broker_url: str = field(default=DEFAULT_CELERY_BROKER_URL, repr=False)
    # Cosmos: `local` runs one dbt process per mart task, `watcher` one dbt build for all marts
    # watched by a sensor per mart (docs/production.md, "WATCHER or LOCAL")
    dbt_execution_mode: str = DEFAULT_DBT_EXECUTION_MODE
    # `tierflow run`: one dbt build per group of marts, a task per mart kept (dbt_group_build)
    dbt_group_build: bool = True

    @property
    def warehouse_dir(self) -> Path:
        return self.home / "warehouse"

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    @property
    def local_airflow_dir(self) -> Path:
        """State of ``tierflow airflow start``: its AIRFLOW_HOME, logs, pids, secrets."""
        return self.home / "airflow-local"

    def run_dir(self, as_of: date) -> Path:
        """One as-of date's folder of exports, Data Docs, dbt docs and report."""
        return self.exports / as_of.isoformat()

    @property
    def dbt_profiles_dir(self) -> Path:
        return self.home / "dbt"

    @property
    def uses_embedded_warehouse(self) -> bool:
        return self.warehouse_url_override is None

    def warehouse_url(self) -> str:
        """The warehouse as a ``postgresql://`` URL (psql and libpq accept it)."""
        if self.warehouse_url_override:
            return self.warehouse_url_override
        from tierflow.warehouse import EmbeddedWarehouse

        return EmbeddedWarehouse(self.warehouse_dir).url()


def _postgres_url(name: str) -> str | None:
    url = os.environ.get(name) or None
    if url is not None:
        scheme = urlsplit(url).scheme
        if scheme not in ("postgresql", "postgres"):
            raise SettingsError(f"{name} must be a postgresql:// URL, got scheme {scheme!r}")
    return url


def _broker_url() -> str:
    url = os.environ.get("TIERFLOW_CELERY_BROKER_URL") or DEFAULT_CELERY_BROKER_URL
    scheme = urlsplit(url).scheme
    if scheme not in ("redis", "rediss"):
        raise SettingsError(f"TIERFLOW_CELERY_BROKER_URL must be a redis:// URL, got scheme {scheme!r}")
    return url


def _dbt_execution_mode() -> str:
    mode = os.environ.get("TIERFLOW_DBT_EXECUTION_MODE", "").strip().lower() or DEFAULT_DBT_EXECUTION_MODE
    if mode not in DBT_EXECUTION_MODES:
        raise SettingsError(
            f"TIERFLOW_DBT_EXECUTION_MODE={mode!r}: use one of {', '.join(DBT_EXECUTION_MODES)}"
        )
    return mode


def load_settings() -> Settings:
    url = _postgres_url("TIERFLOW_WAREHOUSE_URL")
    home = _env_path("TIERFLOW_HOME", PROJECT_ROOT / ".tierflow")
    return Settings(
        home=home,
        landing=_env_path("TIERFLOW_LANDING", PROJECT_ROOT / "data" / "landing"),
        config_path=_env_path("TIERFLOW_CONFIG", PROJECT_ROOT / "config" / "tierflow.yml"),
        exports=_env_path("TIERFLOW_EXPORTS", home / "exports"),
        publish_schema=_identifier(
            "TIERFLOW_PUBLISH_SCHEMA", os.environ.get("TIERFLOW_PUBLISH_SCHEMA", "bi")
        ),
        warehouse_url_override=url,
        expectations=_env_path("TIERFLOW_EXPECTATIONS", EXPECTATIONS_DIR),
        bi_role=_identifier("TIERFLOW_BI_ROLE", os.environ.get("TIERFLOW_BI_ROLE", "tierflow_bi")),
        smtp=_smtp_settings(),
        airflow_db_url_override=_postgres_url("TIERFLOW_AIRFLOW_DB_URL"),
        celery_broker_url=_broker_url(),
        dbt_execution_mode=_dbt_execution_mode(),
        dbt_group_build=_flag("TIERFLOW_DBT_GROUP_BUILD") is not False,
    )


def configure_pytensor() -> Path:
    """Where pytensor (under pymc-marketing's CLV models) keeps the C code it compiles on first
    use: ``$TIERFLOW_HOME/pytensor`` unless PYTENSOR_FLAGS already names a compiledir. Must run
    before pytensor is imported; the first fit on a machine pays the compilation once.
    """
    flags = os.environ.get("PYTENSOR_FLAGS", "")
    compiledir = load_settings().home / "pytensor"
    if "compiledir" not in flags:
        compiledir.mkdir(parents=True, exist_ok=True)
        os.environ["PYTENSOR_FLAGS"] = ",".join(f for f in (flags, f"compiledir={compiledir}") if f)
    return compiledir


def sqlalchemy_url(url: str) -> str:
    """The same URL with the driver spelled out (SQLAlchemy 2.1 changed the default driver)."""
    parts = urlsplit(url)
    return parts._replace(scheme="postgresql+psycopg").geturl()


def airflow_conn_uri(url: str) -> str:
    """The warehouse URL as an Airflow connection URI (``postgres://``; schema = dbname)."""
    parts = urlsplit(url)
    return parts._replace(scheme="postgres").geturl()


def airflow_env(settings: Settings, url: str) -> dict[str, str]:
    """Environment for running the DAG locally with ``dag.test()``.

    Airflow's metadata lives in SQLite under TIERFLOW_HOME: ``dag.test()`` runs tasks in one
    process, so SQLite's single writer is no limit, and the metadata then needs no server
    (production uses PostgreSQL via docker compose). Values already in the environment win.
    """
    home = settings.airflow_home
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_DIR),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        # a failed task fails the run at once: retries are for the deployments' dead workers
        "AIRFLOW__CORE__DEFAULT_TASK_RETRIES": "0",
        "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
        # Cosmos keeps dbt's partial-parse state between tasks in this folder (default: one
        # /tmp/cosmos for the whole machine). Shared by two checkouts of different versions of
        # the dbt project (a second clone's tests, a benchmark), a night could start from the
        # other version's state and run its tests; one folder per TIERFLOW_HOME
        "AIRFLOW__COSMOS__CACHE_DIR": str(home / "cosmos"),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "GX_ANALYTICS_ENABLED": "False",
        "DO_NOT_TRACK": "1",
        f"AIRFLOW_CONN_{WAREHOUSE_CONN_ID.upper()}": airflow_conn_uri(url),
    }


def apply_airflow_env(settings: Settings, url: str) -> None:
    for key, value in airflow_env(settings, url).items():
        os.environ.setdefault(key, value)
    # dag.test() runs the tasks one at a time in this process: WATCHER's per-mart sensors and
    # its one dbt build wait on each other there (issue 12), so `tierflow run` renders LOCAL
    os.environ["TIERFLOW_DBT_EXECUTION_MODE"] = "local"
