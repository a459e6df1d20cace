"""No secret on a command line: every local user can read every process's argument list (ps,
/proc/<pid>/cmdline), so passwords travel in environment variables, 0600 files or stdin.

Two kinds of check: a static one over the repository's scripts (shell scripts, Makefile,
Dockerfile, the compose file's commands, Python's subprocess calls), tried first on lines known
to be bad; and real runs of the benchmark's psql and ingest calls while ``ps`` is watched.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SECRET = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|FERNET|KEY|_PW$|CREDENTIAL", re.IGNORECASE)
EXPANSION = re.compile(r"\$\{?!?([A-Za-z_][A-Za-z0-9_]*)")
# shell builtins (no process, so no argument list) and tests that may see a secret's value
SAFE_COMMANDS = {":", "printf", "echo", "export", "local", "declare", "readonly", "[[", "[", "test",
                 "case", "if", "elif", "while", "until", "!"}
PROCESS_CALL = re.compile(r"(subprocess\.(run|Popen|call|check_call|check_output)|os\.exec\w+|os\.system)$")
SECRET_NAME_IN_CODE = re.compile(r"(?i)password|passwd|secret|token|\burl\b|_url\b|\buri\b|conninfo|dsn")
SECRET_FLAG = re.compile(r"(?<![\w-])--?(password|passwd|pwd|secret|token)(?![\w-])", re.IGNORECASE)


# -- the static check ---------------------------------------------------------------------------
def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, line) with continuations joined, heredoc bodies and comments dropped."""
    lines, pending, start, heredoc_end = [], "", 0, None
    for number, raw in enumerate(text.splitlines(), start=1):
        if heredoc_end is not None:
            if raw.strip() == heredoc_end:
                heredoc_end = None
            continue
        if not pending:
            start = number
        pending += raw[:-1] + " " if raw.endswith("\\") else raw
        if raw.endswith("\\"):
            continue
        code = re.sub(r"(^|\s)#.*$", "", pending)
        heredoc = re.search(r"<<-?\s*['\"]?(\w+)['\"]?", code)
        if heredoc:
            heredoc_end = heredoc[1]
        lines.append((start, code))
        pending = ""
    return lines


def secret_arguments(text: str) -> list[str]:
    """Shell lines that hand a secret variable's value, or a password option, to a program."""
    found = []
    for number, line in _logical_lines(text):
        for segment in re.split(r"\|\||&&|[|;]|\$\(|`", line):
            words = segment.split()
            while words and words[0] in ("(", "{", "then", "do", "else"):
                words.pop(0)  # grouping and control words: the command comes next
            while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
                words.pop(0)  # VAR=value prefixes: environment, not arguments
            if not words or words[0] in SAFE_COMMANDS:
                continue
            arguments = " ".join(words[1:])
            secret = [n for n in EXPANSION.findall(arguments) if SECRET.search(n)]
            if secret or SECRET_FLAG.search(arguments):
                found.append(f"{number}: {segment.strip()}")
    return found


def _shell_sources() -> dict[str, str]:
    """Every shell text of the repository: scripts, Makefile recipes, Dockerfile RUN lines and the
    compose file's shell commands."""
    sources = {}
    for path in [*ROOT.glob("deploy/**/*.sh"), *ROOT.glob(".ci/*")]:
        sources[str(path.relative_to(ROOT))] = path.read_text(encoding="utf-8")
    make = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipes = [line[1:].replace("$$", "$") if line.startswith("\t") else "" for line in make.splitlines()]
    sources["Makefile"] = "\n".join(recipes)
    docker = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    run_lines, inside = [], False
    for line in docker.splitlines():
        inside = inside or line.startswith("RUN ")
        run_lines.append(line.removeprefix("RUN ") if inside else "")
        inside = inside and line.endswith("\\")
    sources["Dockerfile"] = "\n".join(run_lines)
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    commands = []
    for service in compose["services"].values():
        for key in ("command", "entrypoint"):
            if key in service:
                value = service[key]
                commands.append(" ".join(value) if isinstance(value, list) else str(value))
        if "healthcheck" in service:
            test = service["healthcheck"]["test"]
            commands.append(" ".join(test[1:]) if isinstance(test, list) else str(test))
    sources["docker-compose.yml"] = "\n".join(commands).replace("$$", "$")
    return sources


@pytest.mark.parametrize(
    "line",
    [
        # deploy/airflow-init.sh and deploy/postgres-init/01-databases.sh before issue 18
        'airflow users create --role Admin --username "${AIRFLOW_ADMIN_USERNAME}" \\\n'
        '    --password "${AIRFLOW_ADMIN_PASSWORD}" --email "${AIRFLOW_ADMIN_EMAIL}"',
        '"${psql[@]}" --dbname postgres \\\n    -v bi_pw="$TIERFLOW_BI_PASSWORD" <<\'SQL\'\nSELECT 1;\nSQL',
        'psql "postgresql://tierflow:${TIERFLOW_DB_PASSWORD}@postgres/tierflow" -c "select 1"',
        "curl -u admin:$AIRFLOW_ADMIN_PASSWORD http://localhost:8080/api/v2/version",
        "printf ok && mysql --password=hunter2",
        'out=$(psql -d "$URL" --password "$DB_PASSWORD")',
    ],
)
def test_the_check_finds_secrets_on_command_lines(line: str) -> None:
    assert secret_arguments(line), line


@pytest.mark.parametrize(
    "line",
    [
        ": \"${AIRFLOW_DB_PASSWORD:?AIRFLOW_DB_PASSWORD is not set}\"",
        "printf '%s\\n%s\\n' \"$AIRFLOW_ADMIN_PASSWORD\" \"$AIRFLOW_ADMIN_PASSWORD\""
        " | setsid --wait airflow users create --role Admin",
        'PGPASSWORD="$TIERFLOW_DB_PASSWORD" psql -h postgres -U tierflow -c "select 1"',
        'case "${!name}" in change-me*) exit 1 ;; esac',
        "psql <<'SQL'\n\\getenv pw BI_READER_PASSWORD\nALTER ROLE bi_reader PASSWORD :'pw';\nSQL",
        "# airflow users create --password \"$X\" (a comment)",
    ],
)
def test_the_check_lets_environment_stdin_and_builtins_pass(line: str) -> None:
    assert secret_arguments(line) == []


def test_no_script_of_the_repository_puts_a_secret_on_a_command_line() -> None:
    sources = _shell_sources()
    assert {"deploy/airflow-init.sh", "deploy/postgres-init/01-databases.sh", "Makefile"} <= set(sources)
    problems = {name: found for name, text in sources.items() if (found := secret_arguments(text))}
    assert problems == {}


def _subprocess_argv_problems(path: Path) -> list[str]:
    """subprocess / os.exec calls in Python whose argument list names a secret or a URL (which may
    hold one), or passes a password option."""
    problems = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        name = ast.unparse(node.func)
        if not PROCESS_CALL.match(name):
            continue
        argv = node.args[0]
        items = argv.elts if isinstance(argv, ast.List | ast.Tuple) else [argv]
        for item in items:
            text = ast.unparse(item)
            option = item.value if isinstance(item, ast.Constant) and isinstance(item.value, str) else ""
            if SECRET_NAME_IN_CODE.search(text) or SECRET_FLAG.search(option):
                where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
                problems.append(f"{where}:{node.lineno}: {text}")
    return problems


def test_python_subprocess_calls_carry_no_secret() -> None:
    files = [*ROOT.glob("plugins/**/*.py"), *ROOT.glob("dags/**/*.py"), *ROOT.glob("bench/**/*.py"),
             *ROOT.glob("tests/*.py")]
    assert len(files) > 10
    assert [p for f in files for p in _subprocess_argv_problems(f)] == []


def test_the_python_check_finds_a_url_in_an_argument_list(tmp_path: Path) -> None:
    # bench/bench_ingest.py before issue 18
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import subprocess, sys\n"
        "subprocess.run([psql_binary(), '-X', '-d', url, '-c', command])\n"
        "subprocess.run([sys.executable, '-c', _CHILD, url, str(landing)])\n"
    )
    assert len(_subprocess_argv_problems(bad)) == 2


# -- real runs, watched with ps -----------------------------------------------------------------
def _bench():
    spec = importlib.util.spec_from_file_location("bench_ingest", ROOT / "bench" / "bench_ingest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _watch_ps(work: Callable[[], object]) -> tuple[object, list[str]]:
    """Run ``work`` in a thread and sample every process's argument list (``ps -ww -eo args``,
    as any local user could) until it returns; the result and every line seen."""
    ps = shutil.which("ps")
    if ps is None:
        pytest.skip("ps is not installed (procps)")
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(work()))
    seen: set[str] = set()
    thread.start()
    while thread.is_alive():
        listing = subprocess.run([ps, "-ww", "-eo", "args"], capture_output=True, text=True).stdout
        seen.update(listing.splitlines())
        time.sleep(0.02)
    thread.join()
    return result[0], sorted(seen)


def test_bench_psql_call_keeps_the_password_off_the_command_line(pg_server: str) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(pg_server)
    assert parts.password  # the embedded server needs it over TCP
    bench = _bench()
    proc, seen = _watch_ps(
        lambda: bench.run_psql_command(pg_server, "-tAc", "select pg_sleep(1), current_user")
    )
    assert proc.returncode == 0, proc.stderr  # so psql did get the password, from PGPASSWORD
    assert proc.stdout.strip() == "|postgres"
    psql_lines = [line for line in seen if "pg_sleep(1)" in line]
    assert psql_lines, "ps never showed the psql process"
    assert all(f"postgres@127.0.0.1:{parts.port}/postgres" in line for line in psql_lines)
    assert not [line for line in seen if parts.password in line]


def test_bench_ingest_child_gets_its_url_on_stdin(warehouse_url: str, tmp_path: Path) -> None:
    from urllib.parse import urlsplit

    from tiny_fixture import AS_OF, write_tiny_landing

    landing = tmp_path / "landing"
    write_tiny_landing(landing)
    bench = _bench()
    result, seen = _watch_ps(lambda: bench.run_ours(warehouse_url, landing, AS_OF))
    assert result["totals"]["files_failed"] == 0 and result["totals"]["rows_loaded"] > 0
    assert [line for line in seen if "tierflow.ingest" in line], "ps never showed the child"
    password = urlsplit(warehouse_url).password
    assert not [line for line in seen if password in line]
