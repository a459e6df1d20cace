"""dbt as a night runs it, for tests that drive the steps themselves (no DAG)."""

from __future__ import annotations

import json
from datetime import date


def dbt_night(url: str, cfg, as_of: date, publish_schema: str = "bi") -> dict:
    """The DAG's two dbt groups with the clv step between them: the marts up to customer_rfm,
    `clv` (fit or reuse, score), then customer_tiers and everything downstream. dbt's unit
    tests are left out (test_dbt_tiers runs them). Returns the clv step's summary."""
    from tierflow.clv import run_clv
    from tierflow.pipeline import DBT_TIERS_SELECTOR
    from tierflow.transform import run_dbt, run_vars

    dbt_vars = ["--vars", json.dumps(run_vars(cfg, as_of, publish_schema))]
    run_dbt(["build", "--exclude", "test_type:unit", DBT_TIERS_SELECTOR, *dbt_vars], url)
    clv = run_clv(url, cfg.clv, as_of, publish_schema)
    run_dbt(["build", "--select", DBT_TIERS_SELECTOR, "--exclude", "test_type:unit", *dbt_vars], url)
    return clv
