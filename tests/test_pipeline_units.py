"""Small pieces of the pipeline: pure helpers, and how a step records its failure."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from tierflow import pipeline
from tierflow.config import ConfigError
from tierflow.pipeline import resolve_as_of_date
from tierflow.settings import airflow_conn_uri, sqlalchemy_url


def test_as_of_date_prefers_the_param() -> None:
    logical = datetime(2026, 3, 31, tzinfo=UTC)
    assert resolve_as_of_date("2026-01-15", logical) == "2026-01-15"
    assert resolve_as_of_date(None, logical) == "2026-03-31"


def test_as_of_date_refuses_to_guess() -> None:
    with pytest.raises(ValueError, match="no as-of date"):
        resolve_as_of_date(None, None)
    with pytest.raises(ValueError):
        resolve_as_of_date("31/03/2026", None)


def test_urls_spell_out_the_driver() -> None:
    url = "postgresql://u:p@127.0.0.1:5433/wh"
    assert sqlalchemy_url(url) == "postgresql+psycopg://u:p@127.0.0.1:5433/wh"
    assert airflow_conn_uri(url) == "postgres://u:p@127.0.0.1:5433/wh"


def _bad_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    config = tmp_path / "tierflow.yml"
    config.write_text("tiers: [not, a, mapping]\n", encoding="utf-8")
    monkeypatch.setenv("TIERFLOW_CONFIG", str(config))
    monkeypatch.setenv("TIERFLOW_WAREHOUSE_URL", url)


def test_a_step_records_a_bad_config_as_its_failure(
    warehouse_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The config is loaded inside the step's guard: a bad file fails the step with its own
    error and leaves the one sentence the CLI prints, even on a warehouse with no meta schema yet."""
    _bad_config(tmp_path, monkeypatch, warehouse_url)
    with pytest.raises(ConfigError):
        pipeline.validate_marts("2026-03-31", "manual__bad-config")
    with psycopg.connect(warehouse_url) as conn:
        status, as_of, error = conn.execute(
            "select status, as_of_date::text, error from tierflow_meta.runs where run_id = %s",
            ("manual__bad-config",),
        ).fetchone()
    assert (status, as_of) == ("failed", "2026-03-31")
    assert error.startswith("validate_marts: ") and str(tmp_path / "tierflow.yml") in error


def test_a_step_raises_its_own_error_when_the_warehouse_is_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Recording the failure fails too (nothing listens on port 1): that is logged, and the
    step's own error is what the task fails with."""
    _bad_config(tmp_path, monkeypatch, "postgresql://postgres@127.0.0.1:1/nowhere")
    with caplog.at_level(logging.ERROR, logger="tierflow.pipeline"), pytest.raises(ConfigError):
        pipeline.validate_marts("2026-03-31", "manual__no-warehouse")
    assert "could not record the failure of validate_marts" in caplog.text
