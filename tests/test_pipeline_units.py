"""Small pure pieces of the pipeline."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
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
