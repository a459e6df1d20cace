"""The dbt project's SQL passes sqlfluff with the repository's `.sqlfluff` (STYLE.md's dbt
section: postgres dialect, dbt templater, lowercase, trailing commas, explicit aliases).

The dbt templater compiles the project, and `is_incremental()` asks the warehouse whether a
model's table exists, so the lint runs against the session's embedded server (its empty
`postgres` database is enough).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def test_dbt_sql_passes_sqlfluff(pg_server: str, tmp_path: Path) -> None:
    pytest.importorskip("sqlfluff")
    pytest.importorskip("sqlfluff_templater_dbt")
    from tierflow.transform import dbt_env

    # dbt's artifacts go to a folder of the test's own, not the project's target/ that a DAG
    # run on the other test worker reads
    env = {**os.environ, **dbt_env(pg_server), "DBT_TARGET_PATH": str(tmp_path / "target")}
    result = subprocess.run(
        [sys.executable, "-m", "sqlfluff", "lint", "dbt_project/models", "--disable-progress-bar"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]
