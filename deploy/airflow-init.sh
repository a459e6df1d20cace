#!/usr/bin/env bash
# One-shot set-up run by the airflow-init service of docker-compose.yml, as root, after the
# postgres service is healthy and before any other Airflow service starts. Every step is
# idempotent: it runs again on each `docker compose up` and changes nothing the second time.
#
#   1. refuse placeholder, invalid or URL-unsafe secrets (before anything is written);
#   2. `airflow db migrate` (metadata database `airflow`);
#   3. create the admin user from .env if it does not exist (an existing user is left alone);
#   4. check what the nightly DAG needs: the business config validates, and the warehouse is
#      reachable both through TIERFLOW_WAREHOUSE_URL and through the Airflow connection
#      `tierflow_warehouse` (AIRFLOW_CONN_TIERFLOW_WAREHOUSE), with the publish schema present;
#   5. build the dbt manifest the DAG renders from, for the dbt project mounted from the
#      checkout (a no-op when it is current);
#   6. hand the named volumes (logs, TIERFLOW_HOME) and dbt_project/target to AIRFLOW_UID, the
#      user of the other services, and create the landing directory if the checkout has none.
set -euo pipefail

say() { printf '\n== airflow-init: %s\n' "$*"; }

say "checking secrets"
python - <<'PY'
import os
import re
import sys
from urllib.parse import urlsplit

from cryptography.fernet import Fernet

problems = []
for name in (
    "AIRFLOW__CORE__FERNET_KEY",
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "AIRFLOW__API__SECRET_KEY",
    "AIRFLOW_ADMIN_PASSWORD",
):
    value = os.environ.get(name, "")
    if not value or value.startswith("change-me"):
        problems.append(f"{name} is empty or still the .env.example placeholder")
    elif name != "AIRFLOW_ADMIN_PASSWORD" and len(value) < 32:
        problems.append(f"{name} is shorter than 32 characters")
try:  # "new,old" while rotating keys (docs/production.md)
    for key in os.environ.get("AIRFLOW__CORE__FERNET_KEY", "").split(","):
        Fernet(key.strip().encode())
except ValueError:
    problems.append("AIRFLOW__CORE__FERNET_KEY is not a valid Fernet key (see docs/production.md)")

# Database passwords sit inside URLs: they must not need URL-encoding.
for name in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "TIERFLOW_WAREHOUSE_URL", "AIRFLOW_CONN_TIERFLOW_WAREHOUSE"):
    try:
        password = urlsplit(os.environ.get(name, "")).password or ""
    except ValueError:
        password = ""
    if not re.fullmatch(r"[A-Za-z0-9._~-]+", password):
        problems.append(f"the password in {name} must be non-empty and URL-safe (letters, digits, . _ ~ -)")
    elif password.startswith("change-me"):
        problems.append(f"the password in {name} is still the .env.example placeholder")

if problems:
    print("Fix these in .env (values are never printed):", *problems, sep="\n  - ", file=sys.stderr)
    sys.exit(1)
print("secrets: ok")
PY

say "airflow version: $(airflow version)"

say "migrating the metadata database"
airflow db migrate

say "admin user ${AIRFLOW_ADMIN_USERNAME}"
# Prints "... already exist in the db" and exits 0 when the user exists: a password changed
# later in the UI is kept. Rotate it with `airflow users reset-password` (docs/production.md).
# The password goes to the command's own prompt (password, then confirmation) on stdin, never
# on its command line, which every local user can read (ps). printf is a shell builtin, so it
# is no process either; setsid detaches from any terminal, so the prompt reads stdin even
# under `docker compose run` (which gives the container a terminal).
printf '%s\n%s\n' "${AIRFLOW_ADMIN_PASSWORD}" "${AIRFLOW_ADMIN_PASSWORD}" \
| setsid --wait airflow users create \
    --role Admin \
    --username "${AIRFLOW_ADMIN_USERNAME}" \
    --email "${AIRFLOW_ADMIN_EMAIL}" \
    --firstname Tierflow \
    --lastname Admin

say "checking the business config and the warehouse"
python - <<'PY'
import os
import sys
from pathlib import Path

import psycopg
from airflow.models.connection import Connection
from tierflow.config import ConfigError, load_config

try:
    load_config(Path(os.environ["TIERFLOW_CONFIG"]))
except ConfigError as exc:
    sys.exit(f"business config: {exc}")
print(f"business config {os.environ['TIERFLOW_CONFIG']}: ok")

schema = os.environ.get("TIERFLOW_PUBLISH_SCHEMA", "bi")
conn = Connection(conn_id="tierflow_warehouse", uri=os.environ["AIRFLOW_CONN_TIERFLOW_WAREHOUSE"])
if conn.conn_type != "postgres":
    sys.exit(f"AIRFLOW_CONN_TIERFLOW_WAREHOUSE: conn type must be postgres, got {conn.conn_type!r}")

targets = {
    "TIERFLOW_WAREHOUSE_URL": {"conninfo": os.environ["TIERFLOW_WAREHOUSE_URL"]},
    "connection tierflow_warehouse": {
        "host": conn.host, "port": conn.port or 5432, "dbname": conn.schema,
        "user": conn.login, "password": conn.password,
    },
}
for label, kwargs in targets.items():
    try:
        with psycopg.connect(connect_timeout=10, **kwargs) as db:
            database, user = db.execute("select current_database(), current_user").fetchone()
            owner = db.execute(
                "select pg_get_userbyid(nspowner) from pg_namespace where nspname = %s", (schema,)
            ).fetchone()
    except psycopg.Error as exc:
        sys.exit(f"{label}: cannot connect to the warehouse: {exc}")
    if owner is None:
        sys.exit(
            f"{label}: schema {schema!r} is missing in database {database!r}; "
            "did deploy/postgres-init/01-databases.sh run? (docs/production.md, Troubleshooting)"
        )
    if owner[0] != user:
        sys.exit(f"{label}: schema {schema!r} is owned by {owner[0]!r}, not by {user!r}")
    print(f"{label}: ok ({user}@{database}, publish schema {schema})")
PY

say "dbt manifest (the DAG's dbt tasks are rendered from it)"
python -m tierflow.cli airflow manifest

say "handing the shared volumes to uid ${AIRFLOW_UID}"
mkdir -p /opt/airflow/logs "${TIERFLOW_HOME}"
chown -R "${AIRFLOW_UID}:0" /opt/airflow/logs "${TIERFLOW_HOME}"
# the dag-processor and the workers rebuild the manifest there after a `git pull` of a model
chown -R "${AIRFLOW_UID}:0" /opt/airflow/dbt_project/target
# data/landing/ is git-ignored, so a fresh checkout may lack it: create it for the pipeline's
# user. An existing landing directory (the host's data) is left as it is.
if [[ ! -d "${TIERFLOW_LANDING}" ]]; then
    mkdir -p "${TIERFLOW_LANDING}"
    chown "${AIRFLOW_UID}:0" "${TIERFLOW_LANDING}"
    echo "created ${TIERFLOW_LANDING} (./data/landing on the host)"
fi

say "done"
