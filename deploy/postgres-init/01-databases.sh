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
#   tierflow_bi  NOLOGIN: holds the BI grants (SELECT on the publish schema of database
#                tierflow, nothing else); nobody logs in as it
#   bi_reader    the BI login (Metabase's warehouse connection): a member of tierflow_bi, with
#                read-only sessions. Add one such login per BI tool or analyst (docs/production.md).
#   metabase     owns database metabase  (Metabase's application database)
#
# The body runs in a subshell so that its shell options do not leak into the image's
# entrypoint when the file is sourced (it is sourced instead of executed when not executable).
(
set -euo pipefail

: "${AIRFLOW_DB_PASSWORD:?AIRFLOW_DB_PASSWORD is not set}"
: "${TIERFLOW_DB_PASSWORD:?TIERFLOW_DB_PASSWORD is not set}"
: "${BI_READER_PASSWORD:?BI_READER_PASSWORD is not set}"
: "${METABASE_DB_PASSWORD:?METABASE_DB_PASSWORD is not set}"
schema="${TIERFLOW_PUBLISH_SCHEMA:-bi}"
superuser="${POSTGRES_USER:-postgres}"

for name in AIRFLOW_DB_PASSWORD TIERFLOW_DB_PASSWORD BI_READER_PASSWORD METABASE_DB_PASSWORD; do
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

# Roles and databases. The passwords stay in the environment: psql's \getenv copies each into
# a psql variable (:'x' quotes it), so none appears on a command line (ps shows those to every
# local user) nor, with the default log_statement, in the server log.
"${psql[@]}" --dbname postgres <<'SQL'
\getenv airflow_pw AIRFLOW_DB_PASSWORD
\getenv tierflow_pw TIERFLOW_DB_PASSWORD
\getenv bi_reader_pw BI_READER_PASSWORD
\getenv metabase_pw METABASE_DB_PASSWORD

SELECT format('CREATE ROLE %I', r)
  FROM unnest(ARRAY['airflow', 'tierflow', 'tierflow_bi', 'bi_reader', 'metabase']) AS r
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) \gexec

ALTER ROLE airflow     WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'airflow_pw';
ALTER ROLE tierflow    WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'tierflow_pw';
ALTER ROLE metabase    WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'metabase_pw';

-- BI: the NOLOGIN role tierflow_bi holds the grants (the pipeline grants it on every publish,
-- TIERFLOW_BI_ROLE); logins are its members. PASSWORD NULL clears the password of volumes made
-- when tierflow_bi was itself a login.
ALTER ROLE tierflow_bi WITH NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD NULL;
ALTER ROLE bi_reader   WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT PASSWORD :'bi_reader_pw';
GRANT tierflow_bi TO bi_reader;
-- A login's sessions are read-only (role settings belong to the login, they are not inherited).
ALTER ROLE bi_reader SET default_transaction_read_only = on;
ALTER ROLE tierflow_bi RESET ALL;

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
ALTER ROLE bi_reader IN DATABASE tierflow SET search_path = :"schema";
ALTER ROLE tierflow_bi IN DATABASE tierflow RESET ALL;
SQL

echo "01-databases.sh: roles airflow, tierflow, tierflow_bi (NOLOGIN), bi_reader (its member), metabase and databases airflow, tierflow, metabase are ready (publish schema: $schema)."
)
