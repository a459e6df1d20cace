"""Cosmos' partial-parse cache belongs to one TIERFLOW_HOME.

Cosmos keeps dbt's partial-parse state in one folder for the whole machine by default
(/tmp/cosmos). Two checkouts of different versions of the dbt project using it (a second
clone's tests, a benchmark beside a development install) hand each other their state, and a
night was seen running the other version's data tests. ``airflow_env`` gives each
TIERFLOW_HOME its own folder; checked here in fresh processes, as Cosmos reads it at import.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PRINT_CACHE_DIR = """
from tierflow.settings import apply_airflow_env, load_settings
settings = load_settings()
apply_airflow_env(settings, "postgresql://postgres@127.0.0.1:5432/postgres")
from cosmos import settings as cosmos_settings
print(cosmos_settings.cache_dir)
"""


def _cosmos_cache_dir(home: Path) -> Path:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "TIERFLOW_"))}
    env["TIERFLOW_HOME"] = str(home)
    out = subprocess.run([sys.executable, "-c", PRINT_CACHE_DIR], env=env, capture_output=True,
                         text=True, check=True).stdout
    return Path(out.strip().splitlines()[-1])


def test_each_tierflow_home_has_its_own_cosmos_cache(tmp_path: Path) -> None:
    first, second = _cosmos_cache_dir(tmp_path / "a"), _cosmos_cache_dir(tmp_path / "b")
    assert first != second
    assert first.is_relative_to(tmp_path / "a") and second.is_relative_to(tmp_path / "b")
