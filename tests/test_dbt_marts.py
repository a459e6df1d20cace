"""The dbt marts on demo data: the BTYD summary against the `lifetimes` library, the money
in the customer marts reconciled across models, and the CLV step on the same data.

One small demo landing is generated, ingested and built once for the module as a night
builds it (real embedded PostgreSQL, real dbt, real pymc-marketing): the marts, the `clv`
step, then customer_tiers and downstream; every test reads the built marts.
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

pytestmark = pytest.mark.slow

AS_OF = date(2026, 1, 31)


@pytest.fixture(scope="module")
def demo_marts(pg_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a database holding the demo data ingested and `dbt build` run for AS_OF."""
    from tierflow.clv import run_clv
    from tierflow.config import load_config
    from tierflow.demo import generate
    from tierflow.ingest.loader import run_ingest
    from tierflow.pipeline import DBT_TIERS_SELECTOR
    from tierflow.transform import run_dbt, run_vars

    cfg = load_config(Path(__file__).resolve().parents[1] / "config" / "tierflow.yml")
    db = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(db)))
    url = urlsplit(pg_server)._replace(path=f"/{db}").geturl()
    try:
        landing = tmp_path_factory.mktemp("demo") / "landing"
        generate(landing, customers=200, days=400, seed=11, end_date=AS_OF)
        run_ingest(url, landing, AS_OF, cfg)
        dbt_vars = ["--vars", json.dumps(run_vars(cfg, AS_OF))]
        run_dbt(["build", "--exclude", DBT_TIERS_SELECTOR, *dbt_vars], url)
        run_clv(url, cfg.clv, AS_OF, "bi")
        run_dbt(["build", "--select", DBT_TIERS_SELECTOR, *dbt_vars], url)
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


def _fits(url: str) -> dict[str, dict]:
    from tierflow.settings import MARTS_SCHEMA as m

    with psycopg.connect(url) as conn:
        cur = conn.execute(f"select * from {m}.clv_model_fits where as_of_date = %s", (AS_OF,))
        names = [d.name for d in cur.description]
        rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    assert len(rows) == 2, rows  # no earlier fit to reuse: tonight's candidate, both models
    return {r["model"]: r for r in rows}


def test_clv_fit_and_its_holdout_check(demo_marts: str) -> None:
    """The first night fits both models on every customer with a purchase and checks BG/NBD
    on a 90-day holdout, whose split the test recounts from the orders independently."""
    from tierflow.settings import MARTS_SCHEMA as m

    fits = _fits(demo_marts)
    bg, gg = fits["bg_nbd"], fits["gamma_gamma"]
    (buyers, repeat_ok) = _rows(
        demo_marts,
        f"select count(*) filter (where frequency_repeat is not null),"
        f" count(*) filter (where frequency_repeat > 0 and avg_repeat_value > 0)"
        f" from {m}.customer_rfm where as_of_date = %s",
        AS_OF,
    )[0]
    assert bg["n_customers"] == buyers > 50
    assert bg["fitted_as_of_date"] == AS_OF and bg["fit_id"] == gg["fit_id"] == f"clv-{AS_OF}"
    assert bg["converged"] and gg["converged"], (bg["note"], gg["note"])
    assert set(bg["parameters"]) == {"r", "alpha", "a", "b"} and set(gg["parameters"]) == {"p", "q", "v"}
    assert all(v > 0 for v in bg["parameters"].values()) and gg["parameters"]["q"] > 1
    # the spend model: repeat buyers whose every repeat day had positive revenue (the demo
    # has no zero-revenue days, so every repeat buyer with a positive mean)
    assert gg["n_customers"] == repeat_ok

    # the holdout split, recounted: customers whose first purchase day is on or before
    # C = A - 90, and their purchase days in (C, A]
    cutoff = date.fromordinal(AS_OF.toordinal() - 90)
    (customers, actual) = _rows(
        demo_marts,
        f"with days as (select distinct customer_id, order_date from {m}.fct_orders"
        f" where status = 'completed' and order_date <= %s),"
        f" early as (select customer_id from days group by customer_id having min(order_date) <= %s)"
        f" select count(distinct e.customer_id), count(d.order_date) filter (where d.order_date > %s)"
        f" from early e join days d using (customer_id)",
        AS_OF, cutoff, cutoff,
    )[0]
    buckets = bg["holdout_buckets"]
    assert bg["holdout_days"] == 90 and bg["holdout_customers"] == customers
    assert sum(b["customers"] for b in buckets) == customers
    assert sum(b["actual"] for b in buckets) == actual > 0
    predicted = sum(b["predicted"] for b in buckets)
    error = sum(abs(b["predicted"] - b["actual"]) for b in buckets) / actual
    assert float(bg["holdout_error"]) == pytest.approx(error, abs=1e-3)
    assert predicted > 0
    # accepted exactly when the error is within the bound (both fits converged above)
    accepted = float(bg["holdout_error"]) <= float(bg["max_holdout_error"])
    assert bg["status"] == gg["status"] == ("accepted" if accepted else "rejected")
    assert bg["is_in_use"] == gg["is_in_use"] == accepted


def test_clv_predictions_match_lifetimes_with_the_fitted_parameters(demo_marts: str) -> None:
    """Every customer's P(alive), expected purchases, spend and CLV, recomputed by lifetimes
    from the stored parameters and the published summary."""
    lifetimes = pytest.importorskip("lifetimes")
    import pandas as pd
    from tierflow.settings import MARTS_SCHEMA as m

    fits = _fits(demo_marts)
    rows = _rows(
        demo_marts,
        f"select c.customer_id, r.frequency_repeat, r.recency_btyd_days, r.t_days, r.avg_repeat_value,"
        f" c.is_in_spend_model, c.probability_alive, c.expected_purchases_90d, c.expected_purchases_365d,"
        f" c.expected_avg_value, c.predicted_clv_12m, c.fit_id"
        f" from {m}.customer_clv c join {m}.customer_rfm r using (customer_id, as_of_date)"
        f" where c.as_of_date = %s order by 1",
        AS_OF,
    )
    if not fits["bg_nbd"]["is_in_use"]:
        assert rows == [], "no fit in use: no predictions"
        pytest.skip(f"the demo's fit was rejected: {fits['bg_nbd']['note']}")
    frame = pd.DataFrame(rows, columns=["id", "f", "r", "t", "m", "spend", "alive", "e90", "e365", "avg",
                                        "clv", "fit_id"]).astype({"m": float, "alive": float, "e90": float,
                                                                  "e365": float, "avg": float, "clv": float})
    (buyers,) = _rows(demo_marts, f"select count(*) from {m}.customer_rfm where as_of_date = %s"
                                  " and frequency_repeat is not null", AS_OF)[0]
    assert len(frame) == buyers and set(frame.fit_id) == {f"clv-{AS_OF}"}
    bgf = lifetimes.BetaGeoFitter()
    bgf.params_ = pd.Series(fits["bg_nbd"]["parameters"])[["r", "alpha", "a", "b"]]
    bgf.predict = bgf.conditional_expected_number_of_purchases_up_to_time  # what fit() would set
    ggf = lifetimes.GammaGammaFitter()
    ggf.params_ = pd.Series(fits["gamma_gamma"]["parameters"])[["p", "q", "v"]]
    # P(alive) = 1 in closed form without repeat purchases
    assert (frame.alive[frame.f == 0] == 1).all() and (frame.f == 0).any()
    alive = bgf.conditional_probability_alive(frame.f, frame.r, frame.t)
    assert frame.alive.to_numpy() == pytest.approx(alive, abs=2e-6)  # stored with 6 decimals
    for days, column in ((90, "e90"), (365, "e365")):
        ref = bgf.conditional_expected_number_of_purchases_up_to_time(days, frame.f, frame.r, frame.t)
        assert frame[column].to_numpy() == pytest.approx(ref.to_numpy(), abs=1e-4, rel=1e-4)
    # the spend model's customers: Gamma-Gamma's conditional mean; the others: the population mean
    spend_f = frame.f.where(frame.spend, 0)
    avg = ggf.conditional_expected_average_profit(spend_f, frame.m.where(frame.spend, 1.0))
    assert frame.avg.to_numpy() == pytest.approx(avg.to_numpy(), abs=0.01)
    clv = ggf.customer_lifetime_value(bgf, frame.f, frame.r, frame.t, frame.m.where(frame.spend, 1.0),
                                      time=12, discount_rate=0.01, freq="D")
    in_spend = frame.spend.to_numpy()
    assert frame.clv.to_numpy()[in_spend] == pytest.approx(clv.to_numpy()[in_spend], abs=0.01, rel=1e-5)


def test_tiers_weigh_the_predicted_value(demo_marts: str) -> None:
    """value_score = (.35 pp + .25 f + .25 profit + .15 recency + .2 predicted) / 1.2 on a
    night with a fit in use, the four historical components / 1.0 otherwise."""
    from tierflow.settings import MARTS_SCHEMA as m

    in_use = _fits(demo_marts)["bg_nbd"]["is_in_use"]
    rows = _rows(
        demo_marts,
        f"select customer_id, value_score, base_value_score, purchasing_power_score, frequency_score,"
        f" profit_score, recency_score, predicted_value_score, predicted_clv_12m, score_tier,"
        f" base_score_tier, tier_reason from {m}.customer_tiers where as_of_date = %s",
        AS_OF,
    )
    assert rows
    decided = 0
    for cid, score, base, pp, f, profit, rec, pv, clv, tier, base_tier, reason in rows:
        historical = (Decimal("0.35") * pp + Decimal("0.25") * f + Decimal("0.25") * profit
                      + Decimal("0.15") * rec)
        assert base == round(historical, 4), cid
        if in_use:
            assert pv is not None and (clv is None) == (pv == 0), cid
            assert score == round((historical + Decimal("0.2") * pv) / Decimal("1.2"), 4), cid
        else:
            assert pv is None and clv is None and score == base, cid
        if tier != base_tier:
            decided += 1
            assert "the predicted value decides" in reason and f"without it {base_tier}" in reason, cid
        else:
            assert "predicted value decides" not in reason, cid
    if in_use:
        assert decided > 0, "on 200 customers the predicted value should move someone across a cutoff"


def test_clv_reuses_the_last_accepted_fit_and_a_rejected_fit_does_not_replace_it(demo_marts: str) -> None:
    """Nights after the first: within clv.refit_days the published fit in use scores everyone
    (no fit); a due fit whose holdout error exceeds the bound is recorded as rejected, and
    the fit in use stays. The history is read from a schema holding tonight's fit as if a
    night 3 days earlier had published it. (Runs last: it puts the fixture's rows back.)"""
    from tierflow.clv import run_clv
    from tierflow.clv.store import read_fits
    from tierflow.config import load_config
    from tierflow.report.summary import _clv_lines
    from tierflow.settings import MARTS_SCHEMA as m

    cfg = load_config(Path(__file__).resolve().parents[1] / "config" / "tierflow.yml").clv
    earlier = date.fromordinal(AS_OF.toordinal() - 3)
    before = _rows(demo_marts, f"select customer_id, predicted_clv_12m from {m}.customer_clv"
                               " where as_of_date = %s order by 1", AS_OF)
    params = _fits(demo_marts)["bg_nbd"]["parameters"]
    with psycopg.connect(demo_marts, autocommit=True) as conn:
        conn.execute("create schema history")
        conn.execute(f"create table history.clv_model_fits as select * from {m}.clv_model_fits")
        conn.execute("update history.clv_model_fits set as_of_date = %s, fitted_as_of_date = %s",
                     (earlier, earlier))
    try:
        reused = run_clv(demo_marts, cfg, AS_OF, "history")  # refit_days 7: 3 days old, reused
        assert reused["refitted"] is False and reused["fit_in_use"] == f"clv-{AS_OF}"
        assert reused["warnings"] == []
        rows = _rows(demo_marts, f"select model, status, is_in_use, fitted_as_of_date, parameters, note"
                                 f" from {m}.clv_model_fits where as_of_date = %s order by model", AS_OF)
        assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
            ("bg_nbd", "reused", True, earlier), ("gamma_gamma", "reused", True, earlier)]
        assert rows[0][4] == params
        assert "within the refit period" in rows[0][5]
        # the same fit scores the same predictions
        assert _rows(demo_marts, f"select customer_id, predicted_clv_12m from {m}.customer_clv"
                                 " where as_of_date = %s order by 1", AS_OF) == before

        strict = cfg.model_copy(update={"refit_days": 1, "max_holdout_error": 0.001})
        rejected = run_clv(demo_marts, strict, AS_OF, "history")
        assert rejected["refitted"] is True and rejected["fit_in_use"] == f"clv-{AS_OF}"
        assert "clv.max_holdout_error 0.001" in rejected["warnings"][0]
        rows = _rows(demo_marts, f"select model, status, is_in_use from {m}.clv_model_fits"
                                 " where as_of_date = %s order by is_in_use, model", AS_OF)
        assert rows == [("bg_nbd", "rejected", False), ("gamma_gamma", "rejected", False),
                        ("bg_nbd", "reused", True), ("gamma_gamma", "reused", True)]
        assert _rows(demo_marts, f"select customer_id, predicted_clv_12m from {m}.customer_clv"
                                 " where as_of_date = %s order by 1", AS_OF) == before
        # and the run summary says so
        with psycopg.connect(demo_marts) as conn:
            lines = _clv_lines(read_fits(conn, m, AS_OF))
        assert lines[0].startswith(f"  clv: fit clv-{AS_OF} in use (reused")
        assert lines[1].startswith("  warning: clv: fitted on A's summary; not used: holdout error")
    finally:
        with psycopg.connect(demo_marts, autocommit=True) as conn:
            conn.execute("drop schema history cascade")
        run_clv(demo_marts, cfg, AS_OF, "bi")  # the fixture's first night again


def test_clv_validate_command_repeats_the_nights_holdout_check(demo_marts: str) -> None:
    """`tierflow clv validate --date D` reads the order facts of the published schema (here the
    build schema, named as TIERFLOW_PUBLISH_SCHEMA) and prints the same buckets and error
    as the night's check stored in clv_model_fits."""
    import os
    import subprocess
    import sys

    from tierflow.settings import MARTS_SCHEMA as m

    bg = _fits(demo_marts)["bg_nbd"]
    env = {**os.environ, "TIERFLOW_WAREHOUSE_URL": demo_marts, "TIERFLOW_PUBLISH_SCHEMA": m}
    tierflow = Path(sys.executable).parent / "tierflow"
    res = subprocess.run([str(tierflow), "clv", "validate", "--date", AS_OF.isoformat()],
                         env=env, capture_output=True, text=True, timeout=600)
    out = res.stdout
    assert f"customers with a purchase before the holdout: {bg['holdout_customers']:,}" in out
    for b in bg["holdout_buckets"]:
        line = f"{b['bucket']:>17}  {b['customers']:>9,}  {b['predicted']:>10,.1f}  {b['actual']:>7,}"
        assert line in out, (line, out)
    error = float(bg["holdout_error"])
    verdict = "passes" if error <= 0.35 else "FAILS"
    assert f"holdout error {error:.4f} (sum |predicted - actual| / actual): {verdict}" in out
    assert res.returncode == (0 if verdict == "passes" else 1), res.stderr[-2000:]
    assert f"published fit clv-{AS_OF} bg_nbd" in out


def test_covered_customers_are_those_created_by_the_months_end_or_buying_in_it(
    demo_marts: str, pg_server: str
) -> None:
    """sales_kpis and sales_rep_performance count a month's covered customers in two disjoint
    parts; here against the definition written plainly, on a copy of the demo marts whose CRM
    is late for some buyers (created after orders they placed) and silent for others."""
    from tierflow.config import load_config
    from tierflow.settings import MARTS_SCHEMA as m
    from tierflow.transform import run_dbt, run_vars

    copy = f"t_{uuid.uuid4().hex[:12]}"
    source_db = urlsplit(demo_marts).path.lstrip("/")
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {} template {}").format(sql.Identifier(copy),
                                                                       sql.Identifier(source_db)))
    url = urlsplit(pg_server)._replace(path=f"/{copy}").geturl()
    try:
        with psycopg.connect(url) as conn:
            # every 7th buyer created 40 days after its first order, every 11th with no date
            conn.execute(f"""
                update {m}.dim_customers as d
                set created_at = case when f.n % 11 = 0 then null else f.first_order + 40 end
                from (select customer_id, min(order_date) as first_order,
                             row_number() over (order by customer_id) as n
                      from {m}.fct_orders where status = 'completed' group by customer_id) as f
                where d.customer_id = f.customer_id and (f.n % 7 = 0 or f.n % 11 = 0)""")
        cfg = load_config(Path(__file__).resolve().parents[1] / "config" / "tierflow.yml")
        run_dbt(["run", "--select", "sales_kpis", "sales_rep_performance",
                 "--vars", json.dumps(run_vars(cfg, AS_OF))], url)

        def definition(segment: str) -> str:
            # a customer is covered in a month when created by its end, or buying in it
            return f"""
                with months as (select distinct month_start_date, month_end_date from {m}.sales_kpis),
                customers as (
                    select customer_id, created_at, {segment} as segment from {m}.dim_customers),
                buyers as (
                    select distinct customer_id, cast(date_trunc('month', order_date) as date) as month
                    from {m}.fct_orders where status = 'completed' and order_date <= %s)
                select months.month_start_date, customers.segment, count(*)
                from months cross join customers
                where customers.created_at <= months.month_end_date
                   or exists (select 1 from buyers where buyers.customer_id = customers.customer_id
                              and buyers.month = months.month_start_date)
                group by 1, 2"""

        late_buyers = _rows(url, f"""
            select count(*) from {m}.fct_orders as o join {m}.dim_customers as d using (customer_id)
            where o.status = 'completed' and o.order_date <= %s
              and (d.created_at is null or d.created_at > o.order_date)""", AS_OF)[0][0]
        assert late_buyers > 20  # the second part is exercised

        kpis = {(month, f"{region} / {channel}"): n for month, region, channel, n in _rows(
            url, f"select month_start_date, region, channel, covered_customers from {m}.sales_kpis"
                 " where covered_customers > 0")}
        segment = "coalesce(region, 'unknown') || ' / ' || coalesce(channel, 'unknown')"
        assert kpis == {(month, seg): n for month, seg, n in _rows(url, definition(segment), AS_OF)}

        reps = {(month, rep): n for month, rep, n in _rows(
            url, f"select month_start_date, sales_rep, covered_customers from {m}.sales_rep_performance"
                 " where covered_customers > 0")}
        book = "coalesce(nullif(trim(account_manager), ''), 'unassigned')"
        assert reps == {(month, rep): n for month, rep, n in _rows(url, definition(book), AS_OF)}
    finally:
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(copy)))
