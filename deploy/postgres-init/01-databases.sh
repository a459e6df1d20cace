#!/usr/bin/env bash
# Creates the roles and databases of the tierflow stack in the one PostgreSQL server.
#
# The postgres image runs this once, on the first start with an empty data volume
# (mounted into /docker-entrypoint-initdb.d by docker-compose.yml). It is idempotent, so it
# can be run again to repair grants or to apply rotated passwords from .env:
#
#     docker compose up -d postgres        # recreate the container with the new .env values
#     docker compose exec postgres bash /docker-entrypoint-initdb.d/01-databases.sh
#
# Roles (passwords come from the container environment, i.e. from .env):
#   airflow      owns database airflow   (Airflow metadata)
#   tierflow     owns database tierflow  (the warehouse; the pipeline and dbt write here)
#   tierflow_bi  read-only: SELECT on the publish schema of database tierflow, nothing else
#   metabase     owns database metabase  (Metabase's application database)
#
# The body runs in a subshell so that its shell options do not leak into the image's
# entrypoint when the file is sourced (it is sourced instead of executed when not executable).
(
set -euo pipefail

: "${AIRFLOW_DB_PASSWORD:?AIRFLOW_DB_PASSWORD is not set}"
: "${TIERFLOW_DB_PASSWORD:?TIERFLOW_DB_PASSWORD is not set}"
: "${TIERFLOW_BI_PASSWORD:?TIERFLOW_BI_PASSWORD is not set}"
: "${METABASE_DB_PASSWORD:?METABASE_DB_PASSWORD is not set}"
schema="${TIERFLOW_PUBLISH_SCHEMA:-bi}"
superuser="${POSTGRES_USER:-postgres}"

for name in AIRFLOW_DB_PASSWORD TIERFLOW_DB_PASSWORD TIERFLOW_BI_PASSWORD METABASE_DB_PASSWORD; do
    case "${!name}" in
        change-me*)
            echo "01-databases.sh: $name still holds the .env.example placeholder." >&2
            echo "Set real secrets in .env, then remove the half-initialised volume:" >&2
            echo "    docker compose down -v && docker compose up -d" >&2
            exit 1 ;;
    esac
done

if [[ ! "$schema" =~ ^[a-z_][a-z0-9_]*$ ]]; then
    echo "01-databases.sh: TIERFLOW_PUBLISH_SCHEMA must be a lower-case SQL identifier, got '$schema'" >&2
    exit 1
fi

psql=(psql -X --quiet -v ON_ERROR_STOP=1 --username "$superuser")

# Roles and databases. psql variables (:'x', :"x") quote the values; the passwords never
# appear on a command line or in the server log.
"${psql[@]}" --dbname postgres \
    -v airflow_pw="$AIRFLOW_DB_PASSWORD" \
    -v tierflow_pw="$TIERFLOW_DB_PASSWORD" \
    -v bi_pw="$TIERFLOW_BI_PASSWORD" \
    -v metabase_pw="$METABASE_DB_PASSWORD" <<'SQL'
SELECT format('CREATE ROLE %I', r) FROM unnest(ARRAY['airflow', 'tierflow', 'tierflow_bi', 'metabase']) AS r
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) \gexec

ALTER ROLE airflow     WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'airflow_pw';
ALTER ROLE tierflow    WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'tierflow_pw';
ALTER ROLE tierflow_bi WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'bi_pw';
ALTER ROLE metabase    WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'metabase_pw';

-- The BI role cannot write even where a grant would allow it.
ALTER ROLE tierflow_bi SET default_transaction_read_only = on;

SELECT format('CREATE DATABASE %I OWNER %I', d, d) FROM unnest(ARRAY['airflow', 'tierflow', 'metabase']) AS d
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = d) \gexec

-- Only the owning role (and, for the warehouse, the BI role) may connect to a database.
REVOKE ALL ON DATABASE airflow, tierflow, metabase FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE airflow TO airflow;
GRANT CONNECT, TEMPORARY ON DATABASE metabase TO metabase;
GRANT CONNECT, TEMPORARY ON DATABASE tierflow TO tierflow;
GRANT CONNECT ON DATABASE tierflow TO tierflow_bi;
SQL

# Warehouse: the publish schema is owned by the pipeline role; the BI role may read it,
# including every table or view the pipeline creates there later (default privileges).
"${psql[@]}" --dbname tierflow -v schema="$schema" <<'SQL'
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
CREATE SCHEMA IF NOT EXISTS :"schema" AUTHORIZATION tierflow;
ALTER SCHEMA :"schema" OWNER TO tierflow;
GRANT USAGE ON SCHEMA :"schema" TO tierflow_bi;
GRANT SELECT ON ALL TABLES IN SCHEMA :"schema" TO tierflow_bi;
ALTER DEFAULT PRIVILEGES FOR ROLE tierflow IN SCHEMA :"schema" GRANT SELECT ON TABLES TO tierflow_bi;
ALTER ROLE tierflow_bi IN DATABASE tierflow SET search_path = :"schema";
SQL

echo "01-databases.sh: roles airflow, tierflow, tierflow_bi, metabase and databases airflow, tierflow, metabase are ready (publish schema: $schema)."
)
