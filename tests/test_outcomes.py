"""Known answers for closing the loop: plan_performance, revenue_bridge, cohort_retention and
customer_health over three nights spanning two closed plan periods.

The ten-customer fixture (tiny_fixture.py) is run as three nights, each built, allocated and
published as a night would be (the marts read earlier plans and tiers from bi):

- N1 = 2026-02-28: only the date folders up to 2026-02-28 are known (orders up to
  2025-12-31); its plan is plan period 2026-02's last published plan.
- N2 = 2026-03-31: every fixture order is known; its plan is period 2026-03's last. 2026-02
  has closed: N2 judges it.
- N3 = 2026-04-01: both 2026-02 and 2026-03 have closed. Extra extracts dated 2026-04-01:
  two service tickets and a sales activity for C01, an unpaid invoice of C02 (all written
  below), used by customer_health.

Config: the shipped one with allocation.control_share 0.3, so the small tiers have control
customers. The draws u = sha256('<period>:<customer_id>')[:8] / 2**64 (tierflow.allocation.
control) below .3, computed once with hashlib:
    2026-02: C01 .1255, C02 .2092, C03 .0566, C10 .2061   (C09 .3295 is not)
    2026-03: C01 .0912, C04 .1888, C06 .0405, C07 .2204, C08 .2489

Gross margin a completed order (the realised contribution): P1 4 a unit, P2 20 a unit
(C03's line: 50 - 45 = 5 a unit). Margin by customer and month:
    Jan 2026: C01 200 (01-01), C04 120 (01-10), C05 80 (01-28), C06 80 (01-31)
    Feb 2026: C01 200 (02-01), C02 160 (02-15), C05 80 (02-28)   (C04's 02-10 order was returned)
    Mar 2026: C01 400 (03-01, 03-30), C02 160 (03-25), C03 300 (03-20), C04 120 (03-10)

One test, three dbt builds (about 60-90 s).
"""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from night_helpers import dbt_night
from tiny_fixture import _write, write_tiny_landing

pytestmark = pytest.mark.slow

N1, N2, N3 = date(2026, 2, 28), date(2026, 3, 31), date(2026, 4, 1)
TICKETS_HEADER = ["ticket_id", "customer_id", "opened_at", "closed_at", "category", "priority",
                  "handling_minutes", "updated_at"]
ACTIVITIES_HEADER = ["activity_id", "customer_id", "activity_date", "activity_type", "cost", "owner",
                     "updated_at"]
INVOICES_HEADER = ["invoice_id", "customer_id", "order_id", "invoice_date", "due_date", "amount",
                   "currency", "paid_date", "paid_amount", "status", "updated_at"]


def _write_health_extracts(landing: Path) -> None:
    # no handling minutes and no activity cost: cost-to-serve (and so the tiers) stay as they were
    _write(
        landing / "service/tickets/2026-04-01/tickets.csv",
        TICKETS_HEADER,
        [["T1", "C01", "2026-03-20T09:00:00", "2026-03-22T09:00:00", "billing", "high", "",
          "2026-03-22T09:00:00"],
         ["T2", "C01", "2026-03-17T10:00:00", "", "delivery", "normal", "", "2026-03-17T10:00:00"]],
    )
    _write(
        landing / "crm/activities/2026-04-01/activities.csv",
        ACTIVITIES_HEADER,
        [["ACT-1", "C01", "2026-03-15", "visit", "0", "Li Wei", "2026-03-15T10:00:00"]],
    )
    _write(
        landing / "erp/invoices/2026-04-01/invoices.csv",
        INVOICES_HEADER,
        [["INV-1", "C02", "", "2026-01-01", "2026-02-01", "1000", "CNY", "", "0", "open",
          "2026-01-01T09:00:00"]],
    )


def _night(url: str, cfg, landing: Path, as_of: date) -> None:
    from tierflow.allocation import run_allocation
    from tierflow.ingest.loader import run_ingest
    from tierflow.publish import publish
    from tierflow.quality import run_gate

    run_ingest(url, landing, as_of, cfg)
    # ten customers: fewer than clv.min_customers, so no fit and no predicted value
    assert dbt_night(url, cfg, as_of)["customers_scored"] == 0
    run_allocation(url, cfg, as_of)
    gate = run_gate(url, "marts", as_of, cfg, f"outcomes_{as_of}", Path(__file__).parents[1] / "expectations",
                    landing.parent / f"gate-{as_of}")
    assert gate["failed_critical"] == 0, gate
    publish(url, "bi", f"outcomes_{as_of}", as_of)


def _rows(url: str, query: str, *params) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()


@pytest.fixture
def outcomes_config(config):
    allocation = config.allocation.model_copy(update={"control_share": 0.3})
    return config.model_copy(update={"allocation": allocation})


def test_closing_the_loop_over_two_plan_periods(warehouse_url: str, outcomes_config, tmp_path: Path) -> None:
    url, cfg = warehouse_url, outcomes_config
    landing = tmp_path / "landing"
    write_tiny_landing(landing)
    _write_health_extracts(landing)

    # ---- N1: nothing published before, nothing to judge ---------------------------------
    _night(url, cfg, landing, N1)
    assert _rows(url, "select count(*) from bi.plan_performance") == [(0,)]
    plan_feb = dict(_rows(url, "select customer_id, value_tier || ' ' || is_control::text"
                               " from bi.allocation_plan_customer where as_of_date = %s", N1))
    # the tiers are those the marts gave N1 (orders known up to 2025-12-31); control as drawn
    assert plan_feb == {
        "C05": "high false", "C02": "high true",
        "C04": "medium false", "C08": "medium false", "C01": "medium true",
        "C06": "low false", "C07": "low false", "C09": "low false", "C03": "low true", "C10": "low true",
    }

    # ---- N2: 2026-02 has closed --------------------------------------------------------
    _night(url, cfg, landing, N2)
    assert _rows(url, "select distinct plan_period from bi.plan_performance where as_of_date = %s", N2) == [
        ("2026-02",)]
    # N2's plan: the tiers of test_pipeline_e2e (high C01 C02; medium C05 C03 C04; low C08
    # C06 C07 C09 C10), control as drawn for 2026-03
    plan_mar = _rows(url, "select customer_id, value_tier, is_control, primary_action, assigned_action,"
                          " allocated_budget from bi.allocation_plan_customer where as_of_date = %s"
                          " order by customer_id", N2)
    assert [r[0] for r in plan_mar if r[2]] == ["C01", "C04", "C06", "C07", "C08"]
    assert all(r[3] == "control group" and r[5] == 0 for r in plan_mar if r[2])
    # medium: 300,000 over the treated C05 (score .7313) and C03 (.6813):
    # C05 300,000 x 7313 / 14126 = 155,309.358.. -> 155,309.36, C03 the rest 144,690.64
    assert {r[0]: (r[4], r[5]) for r in plan_mar if r[1] == "medium"} == {
        "C03": ("develop", Decimal("144690.64")),
        "C04": ("develop", Decimal("0.00")),
        "C05": ("convert potential", Decimal("155309.36")),
    }
    (budget,) = _rows(url, "select sum(allocated_budget) from bi.allocation_plan_customer"
                           " where as_of_date = %s"
                           " and not is_control", N2)[0]
    assert budget == Decimal("1000000.00")  # to the cent over the treated customers

    # ---- N3: 2026-02 and 2026-03 have closed ------------------------------------------
    _night(url, cfg, landing, N3)
    perf = {
        (r[0], r[1], r[2]): r[3:]
        for r in _rows(
            url,
            "select plan_period, value_tier, primary_action, plan_as_of_date, treated_customers,"
            " control_customers, budget_spent, treated_contribution_change, control_contribution_change,"
            " uplift_per_customer, uplift_ci_low, uplift_ci_high, uplift_total, realised_roi"
            " from bi.plan_performance where as_of_date = %s", N3)
    }
    assert len(perf) == 14
    # 2026-03 (plan of N2) against 2026-02, change per customer = March margin - February:
    #   high    treated C02 160 - 160 = 0; control C01 400 - 200 = +200 -> uplift -200
    #           (one customer a side: no interval); ROI -200 / 600,000 = -.000333 -> -.0003
    #   medium  treated C05 0 - 80 = -80, C03 300 - 0 = +300 -> mean 110; control C04
    #           120 - 0 = +120 -> uplift -10, total -10 x 2 = -20
    #   develop treated C03 +300, control C04 +120 -> uplift 180 on 144,690.64: ROI .00124
    #   low     treated C09, C10 0; control C06, C07, C08 0 -> 0, interval 0 .. 0
    assert perf[("2026-03", "high", "all")] == (
        N2, 1, 1, Decimal("600000.00"), Decimal("0.00"), Decimal("200.00"), Decimal("-200.00"), None, None,
        Decimal("-200.00"), Decimal("-0.0003"))
    assert perf[("2026-03", "medium", "all")][1:7] == (
        2, 1, Decimal("300000.00"), Decimal("110.00"), Decimal("120.00"), Decimal("-10.00"))
    assert perf[("2026-03", "medium", "all")][9] == Decimal("-20.00")
    assert perf[("2026-03", "medium", "develop")][1:] == (
        1, 1, Decimal("144690.64"), Decimal("300.00"), Decimal("120.00"), Decimal("180.00"), None, None,
        Decimal("180.00"), Decimal("0.0012"))
    # convert potential has no control customer: no uplift
    assert perf[("2026-03", "medium", "convert potential")][1:2] + perf[("2026-03", "medium",
                                                                          "convert potential")][5:7] == (
        1, None, None)
    assert perf[("2026-03", "low", "all")][1:9] == (
        2, 3, Decimal("100000.00"), Decimal("0.00"), Decimal("0.00"), Decimal("0.00"), Decimal("0.00"),
        Decimal("0.00"))
    # 2026-02 (plan of N1) against 2026-01:
    #   low   treated C06 0 - 80 = -80, C07 0, C09 0 -> mean -26.667; control C03, C10 0
    #         uplift -26.667; sample variances: treated ((-53.333)^2 + 2 x 26.667^2) / 2 =
    #         2,133.33, control 0; standard error sqrt(2,133.33 / 3) = 26.667;
    #         interval -26.667 -+ 1.959964 x 26.667 = -26.667 -+ 52.266 -> -78.93 .. 25.60
    #   high  treated C05 80 - 80 = 0; control C02 160 - 0 = +160 -> -160
    #   medium treated C04 0 - 120 = -120, C08 0 -> -60; control C01 200 - 200 = 0 -> -60
    assert perf[("2026-02", "low", "all")][1:9] == (
        3, 2, Decimal("100000.00"), Decimal("-26.67"), Decimal("0.00"), Decimal("-26.67"), Decimal("-78.93"),
        Decimal("25.60"))
    assert perf[("2026-02", "high", "all")][6] == Decimal("-160.00")
    assert perf[("2026-02", "medium", "all")][6] == Decimal("-60.00")
    # N3 judges both periods; what N2 said about 2026-02 still holds (same orders)
    feb_then = _rows(url, "select value_tier, primary_action, uplift_per_customer, uplift_ci_low from"
                          " bi.plan_performance where as_of_date = %s order by 1, 2", N2)
    feb_now = _rows(url, "select value_tier, primary_action, uplift_per_customer, uplift_ci_low from"
                         " bi.plan_performance where as_of_date = %s and plan_period = '2026-02'"
                         " order by 1, 2", N3)
    assert feb_then == feb_now and len(feb_now) == 7

    # ---- revenue bridge, March 2026 (as known on N3) ------------------------------------
    # revenue Feb -> Mar: C01 500 -> 1,000 expansion 500; C02 400 -> 400 flat; C05 200 -> 0
    # churned; C03 0 -> 3,000 new (first revenue ever); C04 0 -> 300 reactivated (it bought
    # in 2025-11 and 2026-01). 1,100 + 3,000 + 500 - 0 - 200 + 300 = 4,700. Tiers on N3 are
    # N2's; regions: C01 C04 East, C02 C05 North, C03 South; all online.
    bridge = {
        (r[0], r[1]): r[2:]
        for r in _rows(
            url,
            "select value_tier, region, previous_revenue, new_revenue, expansion_revenue,"
            " contraction_revenue,"
            " churned_revenue, reactivated_revenue, revenue, new_customers, expanding_customers,"
            " churned_customers, reactivated_customers from bi.revenue_bridge"
            " where as_of_date = %s and month = '2026-03' and channel = 'online'", N3)
    }
    z = Decimal("0")
    assert bridge == {
        ("high", "华东 / East China"): (
            Decimal("500"), z, Decimal("500"), z, z, z, Decimal("1000"), 0, 1, 0, 0),
        ("high", "华北 / North China"): (Decimal("400"), z, z, z, z, z, Decimal("400"), 0, 0, 0, 0),
        ("medium", "华北 / North China"): (Decimal("200"), z, z, z, Decimal("200"), z, z, 0, 0, 1, 0),
        ("medium", "华南 / South China"): (z, Decimal("3000"), z, z, z, z, Decimal("3000"), 1, 0, 0, 0),
        ("medium", "华东 / East China"): (z, z, z, z, z, Decimal("300"), Decimal("300"), 0, 0, 0, 1),
    }
    totals = _rows(url, "select sum(previous_revenue), sum(revenue) from bi.revenue_bridge"
                        " where as_of_date = %s and month = '2026-03'", N3)
    assert totals == [(Decimal("1100"), Decimal("4700"))]
    # the bridge and sales_kpis tell the same monthly revenue
    kpis = dict(_rows(url, "select to_char(month_start_date, 'YYYY-MM'), sum(revenue) from bi.sales_kpis"
                           " where as_of_date = %s group by 1", N3))
    bridged = dict(_rows(url, "select month, sum(revenue) from bi.revenue_bridge where as_of_date = %s"
                              " group by 1", N3))
    assert bridged == {m: r for m, r in kpis.items() if m in bridged} and bridged["2026-03"] == 4700

    # ---- cohort retention (as known on N3) --------------------------------------------
    # C03's cohort is 2026-03 (its first revenue), first tier published (N1): low.
    # C04's cohort 2025-11, first tier medium: revenue 300 in 2025-11, 300 in 2026-01, its
    # 2026-02 order returned (net -500), 300 in 2026-03 -> retention -500 / 300 = -1.6667.
    cohorts = {
        (r[0], r[1], r[2]): r[3:]
        for r in _rows(url, "select cohort, value_tier, months_since, customers, active_customers,"
                            " net_revenue, revenue_retention from bi.cohort_retention"
                            " where as_of_date = %s", N3)
    }
    assert cohorts[("2026-03", "low", 0)] == (1, 1, Decimal("3000.00"), Decimal("1.0000"))
    assert cohorts[("2026-03", "low", 1)] == (1, 0, Decimal("0.00"), Decimal("0.0000"))
    assert [cohorts[("2025-11", "medium", k)][1:] for k in range(6)] == [
        (1, Decimal("300.00"), Decimal("1.0000")),
        (0, Decimal("0.00"), Decimal("0.0000")),
        (1, Decimal("300.00"), Decimal("1.0000")),
        (0, Decimal("-500.00"), Decimal("-1.6667")),
        (1, Decimal("300.00"), Decimal("1.0000")),
        (0, Decimal("0.00"), Decimal("0.0000")),
    ]

    # ---- customer health on N3 (window 90 days, weights .3 / .3 / .4) -------------------
    # C01: support: 2 tickets -> 1 - 2/5 = .6; oldest open (T2, 03-17) 15 days -> 1 - 15/30
    #   = .5; T1 resolved in 2.0 days -> 1 - 2/10 = .8; mean 1.9/3 -> 30 x .63333 = 19.0.
    #   payment: no invoices -> 30. engagement: 2 days since the last order against a usual
    #   29.8 (119 days / 4) -> 1; 1 activity of 2 -> .5; mean .75 -> 40 x .75 = 30.0.
    #   79.0 healthy; support lost most (11 points).
    # C02: support 30 (no tickets). payment: INV-1 1,000 due 2026-02-01 unpaid: overdue share
    #   1 -> 1 - 1/.5 < 0 -> 0; 59 days late -> 0: 0. engagement: 7 days against 53.7 -> 1,
    #   no activity -> 0: 20.0. 50.0 watch; payment lost most (30).
    health = {
        r[0]: r[1:]
        for r in _rows(url, "select customer_id, support_points, payment_points, engagement_points,"
                            " health_score, health_band, weakest_component from bi.customer_health"
                            " where as_of_date = %s", N3)
    }
    assert health["C01"] == (Decimal("19.0"), Decimal("30.0"), Decimal("30.0"), Decimal("79.0"), "healthy",
                             "support")
    assert health["C02"] == (Decimal("30.0"), Decimal("0.0"), Decimal("20.0"), Decimal("50.0"), "watch",
                             "payment")
    (reason,) = _rows(url, "select health_reason from bi.customer_health where customer_id = 'C01'"
                           " and as_of_date = %s", N3)[0]
    assert reason == (
        "support 19 of 30 (2 tickets in 90 days, oldest open 15 days, resolved in 2 days on average);"
        " payment 30 of 30 (no open invoices); engagement 30 of 40 (no order for 2 days, 0.07 x the"
        " usual 29.8 days, 1 activities in 90 days)"
    )

    # ---- the same rows without the history indexes ---------------------------------------
    _check_history_read_without_indexes(url, cfg)


def _history_indexes(url: str) -> set[tuple[str, tuple[str, ...]]]:
    """(table, leading columns) of the b-tree indexes on bi's per-date tables."""
    rows = _rows(url, """
        select c.relname, array_agg(a.attname order by k.ord)
        from pg_index i
        join pg_class c on c.oid = i.indrelid
        join pg_namespace n on n.oid = c.relnamespace
        cross join lateral unnest(i.indkey) with ordinality as k(attnum, ord)
        join pg_attribute a on a.attrelid = c.oid and a.attnum = k.attnum
        where n.nspname = 'bi'
        group by i.indexrelid, c.relname
    """)
    return {(table, tuple(columns)) for table, columns in rows}


def _check_history_read_without_indexes(url: str, cfg) -> None:
    """plan_performance and cohort_retention read the published plans and tier history night
    by night through the indexes the publisher makes (tierflow.publish.HISTORY_INDEXES), so a
    night does not cost every night before it; without them (a warehouse published by an
    older release, before its next publish) they read the history whole. Both give the same
    rows: N3's marts rebuilt after dropping the indexes equal those published with them."""
    from tierflow.publish import HISTORY_INDEXES
    from tierflow.transform import run_dbt, run_vars

    expected = set(HISTORY_INDEXES.items())
    assert expected <= _history_indexes(url)
    marts = ("plan_performance", "cohort_retention")
    query = "select * from {} where as_of_date = %s"
    published = {m: sorted(_rows(url, query.format(f"bi.{m}"), N3), key=repr) for m in marts}
    assert published["plan_performance"] and published["cohort_retention"]
    with psycopg.connect(url, autocommit=True) as conn:
        for table, columns in HISTORY_INDEXES.items():
            conn.execute(f'drop index bi."{table}_{"_".join(columns)}_idx"')
    assert not expected & _history_indexes(url)
    run_dbt(["run", "--select", *marts, "--vars", json.dumps(run_vars(cfg, N3, "bi"))], url)
    for m in marts:
        assert sorted(_rows(url, query.format(f"build_marts.{m}"), N3), key=repr) == published[m], m
