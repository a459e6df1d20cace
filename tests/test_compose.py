"""Static checks of the production deployment: docker-compose.yml, .env.example, Dockerfile,
.dockerignore and the scripts under deploy/.

No Docker engine is needed: the compose file is parsed with PyYAML (merge keys resolved) and
checked for the services, health checks, mounts, start order, secrets handling and settings the
stack relies on. `docker compose config` (which only parses) runs too when the docker CLI and its
compose plugin are installed, and is skipped otherwise.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from tierflow.deploy.plan import PARSE_TIMEOUTS

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
AIRFLOW_INIT_SCRIPT = ROOT / "deploy" / "airflow-init.sh"
POSTGRES_INIT_DIR = ROOT / "deploy" / "postgres-init"

AIRFLOW_VERSION = "3.3.2"
BASE_IMAGE = f"apache/airflow:{AIRFLOW_VERSION}-python3.11"

INIT = "airflow-init"
BI_TOOL = "metabase"
WORKER = "airflow-worker"
BROKER = "redis"
LONG_RUNNING_AIRFLOW = (
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    WORKER,
)
AIRFLOW_SERVICES = (*LONG_RUNNING_AIRFLOW, INIT)
REQUIRED_SERVICES = {*AIRFLOW_SERVICES, "postgres", BROKER, BI_TOOL}
ONE_SHOT_SERVICES = {INIT}

# Directories of the repository every Airflow container sees at the same place under /opt/airflow.
PROJECT_MOUNTS = ("dags", "dbt_project", "plugins", "expectations", "config", "data")

SECRET_NAME = re.compile(
    r"PASSWORD|PASSWD|_PASS$|SECRET|FERNET|KEY|TOKEN|CREDENTIAL", re.IGNORECASE
)
# ${NAME}, ${NAME:-default}, ${NAME:?message}, ${NAME?message}, ${NAME:+x}; not $${...}
INTERPOLATION = re.compile(
    r"(?<!\$)\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?+])?(?P<arg>[^}]*)\}"
)
BARE_INTERPOLATION = re.compile(r"(?<!\$)\$(?!\$)(?P<name>[A-Za-z_][A-Za-z0-9_]*)")
REQUIRED_SECRET = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*:\?[^}]+\}")
URL_WITH_CREDENTIALS = re.compile(r"[a-z][a-z0-9+.-]*://(?P<user>[^:/@\s]+):(?P<password>[^@\s]+)@")


# --------------------------------------------------------------------------------------------
# helpers


def _strings(node):
    """Every string in a parsed YAML document, keys included."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(key, str):
                yield key
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)
    elif isinstance(node, str):
        yield node


def _env_items(node):
    """(name, value) of every environment entry anywhere in the document (map or list form)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "environment":
                if isinstance(value, dict):
                    yield from ((str(k), "" if v is None else str(v)) for k, v in value.items())
                elif isinstance(value, list):
                    for entry in value:
                        name, _, val = str(entry).partition("=")
                        yield name, val
            else:
                yield from _env_items(value)
    elif isinstance(node, list):
        for item in node:
            yield from _env_items(item)


def _volumes(service: dict) -> dict[str, tuple[str, str]]:
    """target -> (source, mode) of a service's volumes, short or long syntax."""
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            mode = "ro" if volume.get("read_only") else "rw"
            mounts[volume["target"]] = (str(volume.get("source", "")), mode)
        else:
            source, target, *rest = str(volume).split(":")
            mounts[target] = (source, rest[0] if rest else "rw")
    return mounts


def _depends_on(service: dict) -> dict[str, str]:
    deps = service.get("depends_on", {})
    if isinstance(deps, list):  # short form: no condition means service_started
        return {name: "service_started" for name in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def _healthcheck_command(service: dict) -> str:
    test = service["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else str(test)


def _parse_env_file(path: Path) -> dict[str, str]:
    values = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", stripped)
        assert match, f"{path.name}:{number}: not a NAME=value line: {line!r}"
        name, value = match.groups()
        assert name not in values, f"{path.name}:{number}: {name} is set twice"
        values[name] = value
    return values


def _without_interpolations(text: str) -> str:
    return INTERPOLATION.sub("<interpolated>", text)


# --------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def compose() -> dict:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict) and isinstance(data.get("services"), dict), (
        "no services in docker-compose.yml"
    )
    return data


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return _parse_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def interpolations(compose) -> list[re.Match]:
    return [m for text in _strings(compose) for m in INTERPOLATION.finditer(text)]


# --------------------------------------------------------------------------------------------
# services, health checks, start order


def test_required_services_exist(services):
    missing = REQUIRED_SERVICES - set(services)
    assert not missing, f"missing services: {sorted(missing)}"


def test_long_running_services_have_healthchecks_and_restart(services):
    for name, service in services.items():
        if name in ONE_SHOT_SERVICES:
            continue
        check = service.get("healthcheck")
        assert check and not check.get("disable"), f"{name}: no health check"
        assert check.get("test"), f"{name}: health check without a test command"
        assert service.get("restart") in {"always", "unless-stopped"}, (
            f"{name}: needs a restart policy"
        )


def test_init_is_one_shot(services):
    init = services[INIT]
    assert init.get("restart", "no") == "no", "airflow-init must run once, not be restarted"
    assert "ports" not in init


def test_init_runs_after_postgres_is_healthy(services):
    assert _depends_on(services[INIT]).get("postgres") == "service_healthy"


@pytest.mark.parametrize("name", LONG_RUNNING_AIRFLOW)
def test_airflow_services_start_after_init(services, name):
    deps = _depends_on(services[name])
    assert deps.get(INIT) == "service_completed_successfully", f"{name} must wait for airflow-init"
    assert deps.get("postgres") == "service_healthy", f"{name} must wait for postgres"


@pytest.mark.parametrize("name", ["airflow-scheduler", WORKER])
def test_waits_for_the_execution_api(services, name):
    # the workers' tasks report to the API server's execution API
    assert _depends_on(services[name]).get("airflow-apiserver") == "service_healthy"


@pytest.mark.parametrize("name", LONG_RUNNING_AIRFLOW)
def test_airflow_services_wait_for_the_broker(services, name):
    assert _depends_on(services[name]).get(BROKER) == "service_healthy", f"{name} must wait for redis"


# --------------------------------------------------------------------------------------------
# Celery: the broker and the scalable workers (issue 12)


def test_celery_executor_on_redis(services):
    for name in AIRFLOW_SERVICES:
        env = services[name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["AIRFLOW__CELERY__BROKER_URL"] == f"redis://{BROKER}:6379/0", name
        # results in the metadata database (same role and database as Airflow's own connection)
        backend = urlsplit(_without_interpolations(env["AIRFLOW__CELERY__RESULT_BACKEND"]))
        metadata = urlsplit(_without_interpolations(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]))
        assert backend.scheme == "db+" + metadata.scheme, name
        assert (backend.hostname, backend.path, backend.username) == (
            metadata.hostname, metadata.path, metadata.username), name
        # a task whose worker died runs again
        assert int(env["AIRFLOW__CORE__DEFAULT_TASK_RETRIES"]) >= 1, name


def test_redis_broker(services):
    redis = services[BROKER]
    assert re.fullmatch(r"redis:\d+(\.\d+)*(-\w+)?", redis["image"]), f"pin the Redis image: {redis['image']}"
    assert "redis-cli ping" in _healthcheck_command(redis)
    assert "ports" not in redis, "the broker is not published on the host"


def test_worker_is_a_scalable_celery_worker(services):
    worker = services[WORKER]
    assert worker["command"] == "celery worker"
    # `docker compose up --scale airflow-worker=N` needs replicas that can coexist
    assert "container_name" not in worker, "a fixed container name prevents --scale"
    assert "ports" not in worker, "a published port prevents --scale"
    assert "hostname" not in worker, "replicas need their own hostnames (celery@$HOSTNAME)"
    assert "celery" in _healthcheck_command(worker) and "$${HOSTNAME}" in _healthcheck_command(worker)
    env = worker["environment"]
    assert env["AIRFLOW__CELERY__WORKER_CONCURRENCY"].startswith("${AIRFLOW_WORKER_CONCURRENCY")
    assert env["DUMB_INIT_SETSID"] == "0", "warm shutdown: running tasks finish on `docker compose stop`"
    assert _volumes(worker) == _volumes(services["airflow-scheduler"]), "workers see what the scheduler sees"


def test_the_dbt_manifest_is_built_in_the_image_and_at_init():
    # The DAG renders its dbt tasks from dbt_project/target/manifest.json: the image builds it
    # from its own models (never a host's stale target/), init for the mounted checkout.
    dockerfile = DOCKERFILE.read_text(encoding="utf-8")
    copy_project = re.search(r"COPY\s+(--\S+\s+)*dbt_project/", dockerfile)
    build = re.search(r"RUN python -m tierflow\.cli airflow manifest", dockerfile)
    assert copy_project and build and copy_project.start() < build.start()
    ignored = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    assert "dbt_project/target" in ignored
    script = AIRFLOW_INIT_SCRIPT.read_text(encoding="utf-8")
    assert "python -m tierflow.cli airflow manifest" in script
    handed_over = 'chown -R "${AIRFLOW_UID}:0" /opt/airflow/dbt_project/target'
    assert script.index("airflow manifest") < script.index(handed_over)
    # the command both use exists
    from tierflow.cli import build_parser

    assert build_parser().parse_args(["airflow", "manifest"]).action == "manifest"


def test_bi_tool_waits_for_postgres(services):
    assert _depends_on(services[BI_TOOL]).get("postgres") == "service_healthy"


def test_depends_on_only_names_existing_services(services):
    for name, service in services.items():
        unknown = set(_depends_on(service)) - set(services)
        assert not unknown, f"{name} depends on unknown services {sorted(unknown)}"


def test_apiserver(services):
    api = services["airflow-apiserver"]
    assert api["command"] == "api-server"
    assert any(str(p).endswith(":8080") for p in api.get("ports", [])), "port 8080 not published"
    assert "/api/v2/version" in _healthcheck_command(api)


def test_scheduler_health_check_server_is_enabled(services):
    scheduler = services["airflow-scheduler"]
    assert scheduler["environment"]["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "true"
    assert "localhost:8974/health" in _healthcheck_command(scheduler)


@pytest.mark.parametrize(
    ("name", "job_type"),
    [("airflow-dag-processor", "DagProcessorJob"), ("airflow-triggerer", "TriggererJob")],
)
def test_job_health_checks(services, name, job_type):
    command = _healthcheck_command(services[name])
    assert f"--job-type {job_type}" in command
    assert "$${HOSTNAME}" in command, "the container's HOSTNAME must reach the shell, escaped as $$"


def test_published_ports_bind_to_configured_address(services):
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("${TIERFLOW_BIND_ADDRESS"), (
                f"{name}: port {port} must bind to ${{TIERFLOW_BIND_ADDRESS}}, not every interface"
            )


# --------------------------------------------------------------------------------------------
# the Airflow services


@pytest.mark.parametrize("name", AIRFLOW_SERVICES)
def test_airflow_services_mount_the_project(services, name):
    mounts = _volumes(services[name])
    for directory in PROJECT_MOUNTS:
        target = f"/opt/airflow/{directory}"
        assert target in mounts, f"{name}: {directory} is not mounted at {target}"
        assert mounts[target][0] == f"./{directory}", (
            f"{name}: {target} must come from ./{directory}"
        )
    assert mounts["/opt/airflow/logs"][0] == "airflow-logs", (
        "task logs must be on the shared volume"
    )


@pytest.mark.parametrize("name", AIRFLOW_SERVICES)
def test_airflow_services_are_built_from_the_dockerfile(services, name):
    service = services[name]
    build = service.get("build")
    assert isinstance(build, dict), f"{name}: must be built from the Dockerfile"
    assert build.get("context") == "." and build.get("dockerfile", "Dockerfile") == "Dockerfile"
    images = {services[n].get("image") for n in AIRFLOW_SERVICES}
    assert len(images) == 1, f"all Airflow services must run one image, got {images}"


@pytest.mark.parametrize("name", AIRFLOW_SERVICES)
def test_airflow_environment(services, name):
    env = services[name]["environment"]
    expected = {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": "/opt/airflow/dags",
        "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
        "GX_ANALYTICS_ENABLED": "False",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": "http://airflow-apiserver:8080/execution/",
        **PARSE_TIMEOUTS,  # as `tierflow airflow start` sets them
    }
    for key, value in expected.items():
        assert env.get(key) == value, f"{name}: {key} should be {value!r}, is {env.get(key)!r}"
    assert env.get("AIRFLOW__CORE__AUTH_MANAGER", "").endswith(
        ("FabAuthManager", "SimpleAuthManager")
    ), f"{name}: AIRFLOW__CORE__AUTH_MANAGER not set"
    for key in (
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW__CORE__FERNET_KEY",
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "AIRFLOW__API__SECRET_KEY",
    ):
        assert env.get(key), f"{name}: {key} not set"


def test_components_share_the_same_secrets(services):
    # JWTs signed by one component are checked by another: the values must be identical.
    for key in (
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "AIRFLOW__API__SECRET_KEY",
        "AIRFLOW__CORE__FERNET_KEY",
    ):
        values = {services[n]["environment"][key] for n in AIRFLOW_SERVICES}
        assert len(values) == 1, f"{key} differs between Airflow services"


@pytest.mark.parametrize("name", AIRFLOW_SERVICES)
def test_warehouse_settings(services, name):
    env = services[name]["environment"]
    conn = env.get("AIRFLOW_CONN_TIERFLOW_WAREHOUSE", "")
    url = env.get("TIERFLOW_WAREHOUSE_URL", "")
    assert conn and url, (
        f"{name}: AIRFLOW_CONN_TIERFLOW_WAREHOUSE and TIERFLOW_WAREHOUSE_URL must be set"
    )

    conn_parts = urlsplit(_without_interpolations(conn))
    url_parts = urlsplit(_without_interpolations(url))
    assert conn_parts.scheme == "postgres", "the Airflow connection must be a postgres:// URI"
    assert url_parts.scheme == "postgresql", "TIERFLOW_WAREHOUSE_URL must be a postgresql:// URL"
    for parts in (conn_parts, url_parts):
        assert parts.hostname == "postgres", "the warehouse is the compose postgres service"
        assert parts.path == "/tierflow", "the warehouse is database tierflow"
        assert parts.username == "tierflow"
    # One role, one password: the connection and the settings must not drift apart.
    assert INTERPOLATION.search(conn)["name"] == INTERPOLATION.search(url)["name"]

    assert env.get("TIERFLOW_CONFIG") == "/opt/airflow/config/tierflow.yml"
    assert (ROOT / "config" / "tierflow.yml").is_file()
    assert env.get("TIERFLOW_LANDING", "").startswith("/opt/airflow/data/")
    assert env.get("TIERFLOW_PUBLISH_SCHEMA"), "TIERFLOW_PUBLISH_SCHEMA not set"
    home = env.get("TIERFLOW_HOME", "")
    source, _ = _volumes(services[name]).get(home, ("", ""))
    assert source and not source.startswith("."), "TIERFLOW_HOME must be a named volume"


def test_init_script_is_wired(services):
    init = services[INIT]
    entrypoint = init.get("entrypoint")
    entrypoint = " ".join(entrypoint) if isinstance(entrypoint, list) else str(entrypoint)
    assert "/opt/airflow/deploy/airflow-init.sh" in entrypoint
    source, mode = _volumes(init)["/opt/airflow/deploy/airflow-init.sh"]
    assert source == "./deploy/airflow-init.sh" and mode == "ro"
    script = AIRFLOW_INIT_SCRIPT.read_text(encoding="utf-8")
    assert "airflow db migrate" in script
    assert "airflow users create" in script


def test_init_script_gets_every_variable_it_reads(services):
    env = services[INIT]["environment"]
    script = AIRFLOW_INIT_SCRIPT.read_text(encoding="utf-8")
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", script))  # shell: ${NAME}
    used |= set(
        re.findall(r"[\"']((?:AIRFLOW|TIERFLOW)_[A-Z0-9_]*)[\"']", script)
    )  # python: "NAME"
    assert used, "found no variables in deploy/airflow-init.sh"
    missing = used - set(env)
    assert not missing, f"airflow-init does not set {sorted(missing)}"


# --------------------------------------------------------------------------------------------
# postgres and the BI tool


def test_postgres(compose, services):
    pg = services["postgres"]
    image = pg["image"]
    match = re.fullmatch(r"postgres:(\d+)(?:[.-].*)?", image)
    assert match and int(match[1]) in (17, 18), f"postgres must be PostgreSQL 17 or 18, got {image}"
    data_dir = "/var/lib/postgresql" if int(match[1]) >= 18 else "/var/lib/postgresql/data"
    mounts = _volumes(pg)
    assert data_dir in mounts, f"data volume must be mounted at {data_dir} for {image}"
    assert mounts[data_dir][0] in (compose.get("volumes") or {}), (
        "postgres data must be a declared named volume"
    )
    assert mounts["/docker-entrypoint-initdb.d"][0] == "./deploy/postgres-init"
    assert "pg_isready" in _healthcheck_command(pg)
    assert "ports" not in pg, "the database is not published on the host (see docs/production.md)"


def test_postgres_init_scripts_get_their_variables(services):
    scripts = sorted(POSTGRES_INIT_DIR.glob("*.sh"))
    assert scripts, "no init script in deploy/postgres-init"
    env = services["postgres"]["environment"]
    for script in scripts:
        text = script.read_text(encoding="utf-8")
        required = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*):\?", text))
        missing = required - set(env)
        assert not missing, f"{script.name} needs {sorted(missing)} in the postgres environment"
        for database in ("airflow", "tierflow", "metabase"):
            assert database in text, f"{script.name} does not create database {database}"


def test_postgres_init_follows_the_one_bi_role_model(services):
    # README, the publisher and this script agree: the NOLOGIN role tierflow_bi holds every BI
    # grant, and logins (bi_reader, Metabase's) are its members with read-only sessions.
    # tests/test_postgres_init.py runs the script against a real server.
    text = " ".join((POSTGRES_INIT_DIR / "01-databases.sh").read_text(encoding="utf-8").split())
    assert "ALTER ROLE tierflow_bi WITH NOLOGIN" in text
    assert not re.search(r"ALTER ROLE tierflow_bi WITH (?!NOLOGIN)", text)
    assert re.search(r"ALTER ROLE bi_reader WITH LOGIN [^;]*PASSWORD :'bi_reader_pw'", text)
    assert "GRANT tierflow_bi TO bi_reader;" in text
    assert "ALTER ROLE bi_reader SET default_transaction_read_only = on;" in text
    grantees = re.findall(r"GRANT (?:SELECT|USAGE|CONNECT)\b[^;]* TO (\w+);", text)
    assert grantees and set(grantees) <= {"tierflow_bi", "airflow", "metabase", "tierflow"}
    assert "tierflow_bi" in grantees
    assert "BI_READER_PASSWORD" in services["postgres"]["environment"]


def test_bi_tool(services):
    bi = services[BI_TOOL]
    image = bi["image"]
    assert image.startswith("metabase/metabase:"), image
    assert image.split(":", 1)[1] not in {"latest", ""}, "pin the Metabase version"
    env = bi["environment"]
    assert env["MB_DB_TYPE"] == "postgres" and env["MB_DB_HOST"] == "postgres"
    assert env["MB_DB_DBNAME"] == "metabase", "Metabase keeps its own application database"
    assert any(str(p).endswith(":3000") for p in bi.get("ports", []))
    assert "/api/health" in _healthcheck_command(bi)


@pytest.mark.parametrize(
    "script", [AIRFLOW_INIT_SCRIPT, *sorted(POSTGRES_INIT_DIR.glob("*.sh"))], ids=lambda p: p.name
)
def test_shell_scripts_parse(script):
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    result = subprocess.run([bash, "-n", str(script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------------------------
# secrets


def test_no_literal_secret_values(compose):
    checked = 0
    for name, value in _env_items(compose):
        if SECRET_NAME.search(name):
            checked += 1
            assert REQUIRED_SECRET.fullmatch(value), (
                f"{name} must be exactly ${{VAR:?message}} from .env, not {value!r}"
            )
    assert checked >= 8, f"only {checked} secret settings found: is the secret pattern still right?"

    urls = 0
    for text in _strings(compose):
        for match in URL_WITH_CREDENTIALS.finditer(_without_interpolations(text)):
            urls += 1
            assert match["password"] == "<interpolated>", f"literal password in URL {text!r}"
    assert urls >= 3, (
        "expected the metadata DB, warehouse URL and connection URIs to carry credentials"
    )


def test_secret_variables_are_required(interpolations):
    for match in interpolations:
        if SECRET_NAME.search(match["name"]):
            assert match["op"] == ":?", (
                f"${{{match['name']}}} must use :? so a missing secret stops compose"
            )


def test_no_env_file_and_no_privileged_containers(services):
    for name, service in services.items():
        assert "env_file" not in service, (
            f"{name}: env_file would hand every secret in .env to the container"
        )
        assert not service.get("privileged"), f"{name} must not be privileged"


def test_no_unbraced_interpolation(compose):
    for text in _strings(compose):
        stripped = INTERPOLATION.sub("", text)
        bare = [m["name"] for m in BARE_INTERPOLATION.finditer(stripped)]
        assert not bare, f"use ${{...}} (or $$ for the shell) instead of ${bare[0]} in {text!r}"


def test_every_variable_is_documented_in_env_example(interpolations, env_example):
    used = {m["name"] for m in interpolations}
    assert used, "no ${VAR} found in docker-compose.yml"
    undocumented = used - set(env_example)
    assert not undocumented, f"document these in .env.example: {sorted(undocumented)}"
    unused = set(env_example) - used
    assert not unused, (
        f".env.example lists variables docker-compose.yml does not use: {sorted(unused)}"
    )


def test_env_example_holds_only_placeholders(env_example, interpolations):
    required = {m["name"] for m in interpolations if m["op"] in (":?", "?")}
    for name in required:
        assert env_example.get(name), f".env.example must give {name} a (placeholder) value"
    secrets = [name for name in env_example if SECRET_NAME.search(name)]
    assert secrets, "no secret in .env.example?"
    for name in secrets:
        assert env_example[name].startswith("change-me"), (
            f"{name} in .env.example must be a change-me placeholder"
        )
    looks_generated = re.compile(r"[A-Za-z0-9+/_=-]{24,}")
    for name, value in env_example.items():
        if value.startswith("change-me"):
            continue
        assert not looks_generated.fullmatch(value), (
            f"{name} in .env.example looks like a real secret"
        )


def test_env_example_tells_how_to_use_it():
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    assert "cp .env.example .env" in text
    assert "never commit" in text.lower()


# --------------------------------------------------------------------------------------------
# image


def test_dockerfile_pins_airflow():
    lines = [line.strip() for line in DOCKERFILE.read_text(encoding="utf-8").splitlines()]
    froms = [line for line in lines if line.upper().startswith("FROM ")]
    assert froms == [f"FROM {BASE_IMAGE}"], f"expected one stage FROM {BASE_IMAGE}, got {froms}"
    lock = (ROOT / "requirements.lock").read_text(encoding="utf-8").splitlines()
    assert f"apache-airflow=={AIRFLOW_VERSION}" in lock, (
        "requirements.lock must pin the image's Airflow"
    )
    assert f"apache-airflow-core=={AIRFLOW_VERSION}" in lock


def test_dockerfile_installs_from_the_lock():
    text = DOCKERFILE.read_text(encoding="utf-8")
    install_lock = re.search(r"pip install --no-cache-dir -r \S*requirements\.lock", text)
    install_pkg = re.search(r"pip install --no-cache-dir --no-deps -e \S+", text)
    assert install_lock, "the Dockerfile must install the dependencies from requirements.lock"
    assert install_pkg, "the Dockerfile must install tierflow with --no-deps -e"
    assert install_lock.start() < install_pkg.start(), "install the lock before the package"
    assert re.search(r"COPY\s+(--\S+\s+)*requirements\.lock\s", text)
    assert not re.search(r"pip install(?![^\n]*(-r \S*requirements\.lock|--no-deps))", text), (
        "every pip install must come from the lock (or be the --no-deps package install)"
    )


def test_dockerignore_keeps_secrets_and_state_out():
    patterns = {
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    for pattern in (".env", ".git", ".venv", ".tierflow", "data"):
        assert pattern in patterns, f".dockerignore must exclude {pattern}"
    for needed in (
        "requirements.lock",
        "pyproject.toml",
        "plugins",
        "dags",
        "dbt_project",
        "expectations",
        "config",
    ):
        assert needed not in patterns, (
            f".dockerignore must not exclude {needed}: the Dockerfile copies it"
        )


def test_container_layout_matches_the_settings_module(services):
    # tierflow.settings finds dbt_project/, dags/ and expectations/ relative to the checkout root,
    # two levels above plugins/tierflow/settings.py. The image installs tierflow editable from
    # /opt/airflow/plugins, so that root is /opt/airflow: every directory must be mounted there.
    from tierflow import settings

    root = settings.PROJECT_ROOT
    package_file = Path(settings.__file__).resolve().relative_to(root)
    assert package_file.parts[0] == "plugins", (
        "tierflow must live under plugins/ for the editable install"
    )
    for name in AIRFLOW_SERVICES:
        mounts = _volumes(services[name])
        for directory in (settings.DBT_PROJECT_DIR, settings.DAGS_DIR, settings.EXPECTATIONS_DIR):
            relative = directory.relative_to(root).as_posix()
            assert mounts.get(f"/opt/airflow/{relative}", ("",))[0] == f"./{relative}", (
                f"{name}: ./{relative} must be mounted at /opt/airflow/{relative}"
            )
        env = services[name]["environment"]
        assert f"AIRFLOW_CONN_{settings.WAREHOUSE_CONN_ID.upper()}" in env, (
            f"{name}: no connection for conn id {settings.WAREHOUSE_CONN_ID!r}"
        )


def test_business_config_check_used_by_init_exists():
    # deploy/airflow-init.sh validates config/tierflow.yml through this function.
    from tierflow.config import ConfigError, load_config

    assert issubclass(ConfigError, Exception)
    load_config(ROOT / "config" / "tierflow.yml")


# --------------------------------------------------------------------------------------------
# docker compose itself (parses only; no engine needed)


def test_docker_compose_config_parses():
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("the docker CLI is not installed")
    probe = subprocess.run(
        [docker, "compose", "version"], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        said = (probe.stderr or probe.stdout).strip().splitlines() or [f"exit {probe.returncode}"]
        pytest.skip(f"the docker compose plugin is not installed ({said[0]})")
    result = subprocess.run(
        [
            docker,
            "compose",
            "-f",
            "docker-compose.yml",
            "--env-file",
            ".env.example",
            "config",
            "-q",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
