"""The dbt marts on demo data: the BTYD summary against the `lifetimes` library, and the
money in the customer marts reconciled across models.

One small demo landing is generated, ingested and built once for the module (real
embedded PostgreSQL, real dbt); every test reads the built marts.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql

AS_OF = date(2026, 1, 31)


@pytest.fixture(scope="module")
def demo_marts(pg_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a database holding the demo data ingested and `dbt build` run for AS_OF."""
    from tierflow.config import load_config
    from tierflow.demo import generate
    from tierflow.ingest.loader import run_ingest
    from tierflow.transform import run_dbt, run_vars

    cfg = load_config(Path(__file__).resolve().parents[1] / "config" / "tierflow.yml")
    db = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(db)))
    url = urlsplit(pg_server)._replace(path=f"/{db}").geturl()
    try:
        landing = tmp_path_factory.mktemp("demo") / "landing"
        generate(landing, customers=80, days=400, seed=11, end_date=AS_OF)
        run_ingest(url, landing, AS_OF, cfg)
        run_dbt(["build", "--vars", json.dumps(run_vars(cfg, AS_OF))], url)
        yield url
    finally:
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(db)))


def _rows(url: str, query: str, *params) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()


def test_btyd_summary_matches_lifetimes(demo_marts: str) -> None:
    lifetimes_utils = pytest.importorskip("lifetimes.utils")
    import pandas as pd
    from tierflow.settings import MARTS_SCHEMA

    orders = pd.DataFrame(
        _rows(
            demo_marts,
            f"select customer_id, order_date, net_revenue from {MARTS_SCHEMA}.fct_orders "
            "where status = 'completed' and order_date <= %s",
            AS_OF,
        ),
        columns=["customer_id", "order_date", "net_revenue"],
    )
    assert len(orders) > 100, "the demo should have plenty of completed orders"
    orders["order_date"] = pd.to_datetime(orders["order_date"])
    orders["net_revenue"] = orders["net_revenue"].astype(float)
    expected = lifetimes_utils.summary_data_from_transaction_data(
        orders,
        "customer_id",
        "order_date",
        monetary_value_col="net_revenue",
        observation_period_end=pd.Timestamp(AS_OF),
        freq="D",
    )

    ours = {
        customer: (frequency, recency, t, value)
        for customer, frequency, recency, t, value in _rows(
            demo_marts,
            f"select customer_id, frequency_repeat, recency_btyd_days, t_days, avg_repeat_value "
            f"from {MARTS_SCHEMA}.customer_rfm where as_of_date = %s and frequency_repeat is not null",
            AS_OF,
        )
    }
    assert set(ours) == set(expected.index)
    assert (expected["frequency"] > 0).sum() > 10, "the comparison should cover repeat buyers"
    for customer, row in expected.iterrows():
        frequency, recency, t, value = ours[customer]
        assert (frequency, recency, t) == (row["frequency"], row["recency"], row["T"]), customer
        assert abs(float(value) - row["monetary_value"]) <= 0.01, customer


def test_profitability_reconciles_with_rfm_and_orders(demo_marts: str) -> None:
    from tierflow.settings import MARTS_SCHEMA as m

    # revenue in the window is the RFM monetary of the same customer and date
    mismatches = _rows(
        demo_marts,
        f"select p.customer_id from {m}.customer_profitability as p "
        f"join {m}.customer_rfm as r using (customer_id, as_of_date) where p.revenue <> r.monetary",
    )
    assert mismatches == []
    (customers, loss_makers, contribution, margin, cost) = _rows(
        demo_marts,
        f"select count(*), count(*) filter (where is_loss_making), sum(net_contribution), "
        f"sum(gross_margin), sum(cost_to_serve) from {m}.customer_profitability where as_of_date = %s",
        AS_OF,
    )[0]
    assert (
        customers
        == _rows(demo_marts, f"select count(*) from {m}.customer_rfm where as_of_date = %s", AS_OF)[0][0]
    )
    assert contribution == margin - cost
    assert cost > 0 and loss_makers >= 1, "the demo has service, activities and receivables to pay for"
    # the whale curve ends at 100% of the total contribution
    (last_share,) = _rows(
        demo_marts,
        f"select cumulative_contribution_share from {m}.customer_profitability "
        f"where as_of_date = %s order by contribution_rank desc limit 1",
        AS_OF,
    )[0]
    assert last_share == Decimal("1")


def test_sales_kpis_add_up_to_the_orders(demo_marts: str) -> None:
    from tierflow.settings import MARTS_SCHEMA as m

    (kpi_revenue, kpi_orders) = _rows(demo_marts, f"select sum(revenue), sum(orders) from {m}.sales_kpis")[0]
    (order_revenue, orders) = _rows(
        demo_marts,
        f"select sum(counted_revenue), count(*) from {m}.fct_orders "
        "where status = 'completed' and order_date <= %s",
        AS_OF,
    )[0]
    assert (kpi_revenue, kpi_orders) == (order_revenue, orders)
    # every month's change is split into three effects that add up exactly
    bad = _rows(
        demo_marts,
        f"select month_start_date, region, channel from {m}.sales_kpis where previous_revenue is not null "
        "and revenue - previous_revenue "
        "<> covered_customers_effect + active_rate_effect + revenue_per_active_effect",
    )
    assert bad == []


def test_credit_and_lifecycle_cover_every_customer(demo_marts: str) -> None:
    from tierflow.settings import MARTS_SCHEMA as m

    bands = dict(
        _rows(
            demo_marts,
            f"select credit_risk_band, count(*) from {m}.customer_credit_risk "
            "where as_of_date = %s group by 1",
            AS_OF,
        )
    )
    stages = dict(
        _rows(
            demo_marts,
            f"select lifecycle_stage, count(*) from {m}.customer_lifecycle where as_of_date = %s group by 1",
            AS_OF,
        )
    )
    (customers,) = _rows(demo_marts, f"select count(*) from {m}.customer_rfm where as_of_date = %s", AS_OF)[0]
    assert sum(bands.values()) == customers == sum(stages.values())
    assert set(bands) <= {"low", "medium", "high", "unknown"}
    assert bands.get("low", 0) > 0
    assert set(stages) <= {"new", "growing", "mature", "declining", "churned", "never_purchased"}
    assert len(stages) >= 3


def test_source_freshness_is_evaluated(demo_marts: str) -> None:
    """`dbt source freshness` runs against the loaded raw tables and reports every source
    that declares a freshness block (warn after 2 days; the demo ends months ago, so the
    order sources are stale, which warns but does not fail)."""
    from tierflow.transform import run_dbt

    target = run_dbt(["source", "freshness"], demo_marts)
    results = json.loads((target / "sources.json").read_text())["results"]
    by_source = {r["unique_id"].removeprefix("source.tierflow."): r["status"] for r in results}
    assert by_source["erp.orders"] == "warn"
    assert set(by_source.values()) <= {"pass", "warn"}
    assert {"crm.customers", "erp.order_lines", "erp.orders", "erp.fx_rates"} <= by_source.keys()
