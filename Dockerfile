# syntax=docker/dockerfile:1
# tierflow's Airflow image: the official Airflow 3.3.2 image, the project's locked
# dependencies (dbt-core + dbt-postgres, astronomer-cosmos, Great Expectations, ...) and the
# tierflow package. Built by `docker compose build` (see docker-compose.yml, docs/production.md).
FROM apache/airflow:3.3.2-python3.11

# No telemetry from Great Expectations, cosmos or dbt, whoever runs the image.
ENV GX_ANALYTICS_ENABLED=False \
    AIRFLOW__COSMOS__ENABLE_TELEMETRY=False \
    DBT_SEND_ANONYMOUS_USAGE_STATS=False \
    DO_NOT_TRACK=1

# pytensor (under pymc-marketing's CLV models, plugins/tierflow/clv) compiles C++ on first use
# (cached in $TIERFLOW_HOME/pytensor); without a compiler it falls back to far slower Python.
USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends g++ \
 && rm -rf /var/lib/apt/lists/*

USER airflow
WORKDIR /opt/airflow

# 1. Dependencies, only from the fully pinned lock. It pins apache-airflow==3.3.2 as well, the
#    version of the base image, so pip leaves Airflow itself alone. A layer of its own: a code
#    change does not reinstall the dependencies.
COPY --chown=airflow:0 requirements.lock /opt/airflow/requirements.lock
RUN pip install --no-cache-dir -r /opt/airflow/requirements.lock

# 2. The tierflow package (plugins/tierflow), dependencies already in place. Editable, so the
#    ./plugins bind mount of docker-compose.yml is the code that runs.
COPY --chown=airflow:0 pyproject.toml /opt/airflow/pyproject.toml
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/
# The check fails the build if the lock moved Airflow, or if what this stack uses from the base
# image is missing: the FAB auth manager, and psycopg2 + asyncpg (Airflow 3 opens its metadata
# DB with both drivers; requirements.lock has psycopg2 but not asyncpg).
RUN pip install --no-cache-dir --no-deps -e /opt/airflow \
 && python -c "import airflow, tierflow, psycopg2, asyncpg, airflow.providers.fab; \
assert airflow.__version__ == '3.3.2', airflow.__version__"

# 3. The pipeline itself, so the image also runs without bind mounts (docker-compose.yml mounts
#    the checkout over these paths). The layout mirrors the repository under /opt/airflow.
COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 dbt_project/ /opt/airflow/dbt_project/
COPY --chown=airflow:0 expectations/ /opt/airflow/expectations/
COPY --chown=airflow:0 config/ /opt/airflow/config/

# 4. The dbt manifest the DAG renders its Cosmos task group from (dbt parse, no database), so
#    the image's DAG parses as built. .dockerignore keeps the host's dbt_project/target out:
#    the manifest always describes the image's own models. With the checkout mounted over
#    /opt/airflow/dbt_project, airflow-init builds it for the mounted project instead, and
#    the DAG itself rebuilds a manifest that no longer matches the models (tierflow.transform).
RUN python -m tierflow.cli airflow manifest
