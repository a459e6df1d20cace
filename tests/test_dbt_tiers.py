"""Known answers for the tier marts over two as-of dates: hysteresis, overrides, high
potential, account groups, tier history, migrations and account alerts.

The ten-customer fixture (tiny_fixture.py) is ingested and built for A1 = 2026-03-31
(scores and tiers as in test_pipeline_e2e.EXPECTED_TIERS), then one more day is delivered
and built for A2 = 2026-04-01. Extra extracts, all written below:

- crm/customers/2026-03-31: C07 and C08 get parent C04 (an account group); C05 loses
  its account manager (its alerts go to 'unassigned').
- crm/tier_overrides/2026-03-31: C03 -> low from 2026-03-01 (open-ended); C07 -> high
  2026-01-01 .. 2026-03-15 (expired before A1).
- crm/tier_overrides/2026-04-01: C03 -> high from 2026-04-01 (the later valid_from wins over
  the 2026-03-01 one); C02 -> medium from 2026-04-01; C06 -> medium from 2026-05-01 (not
  valid yet).
- erp/orders + order_lines/2026-04-01: C08 buys P1 20 x 10 on 2026-04-01 (revenue 200,
  margin 20 x (10 - 6) = 80).
- erp/invoices/2026-04-01: C02 owes 1,000 CNY due 2026-02-01, unpaid.
- crm/activities/2026-04-01: a call to C08 costing 20 and a visit to C03 costing 30 (so that
  on A2 the customers' net contributions rank as their gross margins did).

Profit is the net contribution after cost-to-serve (customer_profitability). The fixture has
no tickets, so cost-to-serve is handling (20 a shipped order: completed or returned) plus,
on A2, the activities above and C02's cost of capital (1,000 x 90 days x 6% / 365 = 14.79).

Config: the shipped one (hysteresis margin 0.02, potential top 20% with growth >= 20%),
except alerts.churn_risk.gap_factor = 1.0 so that one fixture customer is "late".

Three dbt builds: A1 (everything, with the unit tests), A2 (no unit tests), and a rebuild
of A2's tiers after an override that names an unknown tier, which must fail. A1 and A2 are
each allocated and published as a night would be: the build schema holds one night, BI keeps
the history, and A2's previous tiers are read from what A1 published.
"""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from tiny_fixture import AS_OF, CUSTOMERS_HEADER, LINES_HEADER, ORDERS_HEADER, _write, write_tiny_landing

pytestmark = pytest.mark.slow

A1 = AS_OF  # 2026-03-31
A2 = date(2026, 4, 1)
OVERRIDES_HEADER = ["customer_id", "value_tier", "reason", "set_by", "valid_from", "valid_to"]
ACTIVITIES_HEADER = ["activity_id", "customer_id", "activity_date", "activity_type", "cost", "owner",
                     "updated_at"]
INVOICES_HEADER = ["invoice_id", "customer_id", "order_id", "invoice_date", "due_date", "amount",
                   "currency", "paid_date", "paid_amount", "status", "updated_at"]
MANAGER = "王芳 / Wang Fang"


def _customer(cid: str, name: str, kind: str, region: str, manager: str, parent: str) -> list[str]:
    row = dict(zip(CUSTOMERS_HEADER, [cid, name, kind, region, "online", manager, "2024-11-01",
                                      "2026-03-31T08:00:00", "true"], strict=True))
    return [*row.values(), parent]


def _write_extra_extracts(landing: Path) -> None:
    _write(
        landing / "crm/customers/2026-03-31/customers_update.csv",
        [*CUSTOMERS_HEADER, "parent_customer_id"],
        [
            _customer("C05", "北京新材料科技", "b2b", "华北 / North China", "", ""),
            _customer("C07", "Fabrikam", "b2b", "华南 / South China", MANAGER, "C04"),
            _customer("C08", "陈静", "b2c", "华东 / East China", MANAGER, "C04"),
        ],
    )
    _write(
        landing / "crm/tier_overrides/2026-03-31/overrides.csv",
        OVERRIDES_HEADER,
        [
            ["C03", "low", "disputed invoices", "Li Wei", "2026-03-01", ""],
            ["C07", "high", "trade fair push", "Li Wei", "2026-01-01", "2026-03-15"],
        ],
    )
    _write(
        landing / "crm/tier_overrides/2026-04-01/overrides.csv",
        OVERRIDES_HEADER,
        [
            ["C03", "high", "strategic account 2026", "Zhao Min", "2026-04-01", ""],
            ["C02", "medium", "key contact left", "Zhao Min", "2026-04-01", ""],
            ["C06", "medium", "pilot project", "Zhao Min", "2026-05-01", ""],
        ],
    )
    _write(
        landing / "erp/orders/2026-04-01/orders.csv",
        ORDERS_HEADER,
        [["C08-3", "C08", "2026-04-01", "completed", "CNY", "online", "2026-04-01T12:00:00"]],
    )
    _write(
        landing / "erp/order_lines/2026-04-01/order_lines.csv",
        LINES_HEADER,
        [["C08-3", 1, "P1", 20, 10, "", "", "2026-04-01T12:00:00"]],
    )
    _write(
        landing / "erp/invoices/2026-04-01/invoices.csv",
        INVOICES_HEADER,
        [["INV-1", "C02", "", "2026-01-01", "2026-02-01", "1000", "CNY", "", "0", "open",
          "2026-01-01T09:00:00"]],
    )
    _write(
        landing / "crm/activities/2026-04-01/activities.csv",
        ACTIVITIES_HEADER,
        [["ACT-1", "C08", "2026-04-01", "call", "20", "Li Wei", "2026-04-01T10:00:00"],
         ["ACT-2", "C03", "2026-04-01", "visit", "30", "Li Wei", "2026-04-01T10:00:00"]],
    )


def _build(url: str, cfg, as_of: date, *extra: str) -> None:
    """dbt as a night runs it: the marts, the clv step, then customer_tiers and downstream.

    The ten customers are fewer than clv.min_customers (50): the clv step makes no fit and
    writes no predictions, so the value scores below are the four historical components'
    alone (the predicted_value weight drops out), as before the CLV model existed; the
    fixture's known answers keep their meaning. test_dbt_marts covers a night with a fit.
    """
    from tierflow.clv import run_clv
    from tierflow.pipeline import DBT_TIERS_SELECTOR
    from tierflow.transform import run_dbt, run_vars

    dbt_vars = ["--vars", json.dumps(run_vars(cfg, as_of))]
    if extra[:1] == ("--select",):  # a rebuild of chosen models: the night's CLV rows are there
        run_dbt(["build", *extra, *dbt_vars], url)
        return
    excluded = list(extra[1:]) if extra[:1] == ("--exclude",) else []
    run_dbt(["build", "--exclude", DBT_TIERS_SELECTOR, *excluded, *dbt_vars], url)
    clv = run_clv(url, cfg.clv, as_of, "bi")
    assert clv["fit_in_use"] is None and clv["customers_scored"] == 0
    assert "clv.min_customers is 50" in clv["warnings"][0]
    run_dbt(["build", "--select", DBT_TIERS_SELECTOR, *(["--exclude", *excluded] if excluded else []),
             *dbt_vars], url)


def _publish(url: str, cfg, as_of: date) -> None:
    """The rest of a night after dbt: the allocation plan, then publish into bi."""
    from tierflow.allocation import run_allocation
    from tierflow.publish import publish

    run_allocation(url, cfg, as_of)
    publish(url, "bi", f"test_{as_of}", as_of)


def _rows(url: str, query: str, *params) -> list[tuple]:
    from tierflow.settings import BUILD_SCHEMA, MARTS_SCHEMA

    query = query.replace("{marts}", MARTS_SCHEMA).replace("{build}", BUILD_SCHEMA).replace("{bi}", "bi")
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()


def _by_customer(url: str, columns: str, as_of: date) -> dict[str, tuple]:
    rows = _rows(url, f"select customer_id, {columns} from {{marts}}.customer_tiers where as_of_date = %s",
                 as_of)
    return {r[0]: r[1:] if len(r) > 2 else r[1] for r in rows}


@pytest.fixture
def tiers_config(config):
    churn = config.alerts.churn_risk.model_copy(update={"gap_factor": 1.0})
    return config.model_copy(update={"alerts": config.alerts.model_copy(update={"churn_risk": churn})})


def test_tiers_over_two_dates(warehouse_url: str, tiers_config, tmp_path: Path) -> None:
    from tierflow.ingest.loader import run_ingest
    from tierflow.transform import DbtError

    url, cfg = warehouse_url, tiers_config
    assert cfg.tiers.hysteresis_margin == 0.02  # the shipped margin
    landing = tmp_path / "landing"
    write_tiny_landing(landing)
    _write_extra_extracts(landing)

    # ---- A1 = 2026-03-31: first date, nothing to compare with --------------------------
    run_ingest(url, landing, A1, cfg)
    _build(url, cfg, A1)

    # scores and score tiers exactly as in test_pipeline_e2e.EXPECTED_TIERS (C03 .68125:
    # its net contribution 280 ties C04's); no previous tier, so no hysteresis; C03's
    # override (low, valid from 2026-03-01) applies; C07's ended 2026-03-15 and does not
    t1 = _by_customer(url, "value_score, score_tier, computed_tier, value_tier, is_override, tier_change", A1)
    assert t1 == {
        "C01": (Decimal("0.9250"), "high", "high", "high", False, "new"),
        "C02": (Decimal("0.8000"), "high", "high", "high", False, "new"),
        "C05": (Decimal("0.7313"), "medium", "medium", "medium", False, "new"),
        "C03": (Decimal("0.6813"), "medium", "medium", "low", True, "new"),
        "C04": (Decimal("0.5813"), "medium", "medium", "medium", False, "new"),
        "C08": (Decimal("0.3688"), "low", "low", "low", False, "new"),
        "C06": (Decimal("0.3313"), "low", "low", "low", False, "new"),
        "C07": (Decimal("0.1750"), "low", "low", "low", False, "new"),
        "C09": (Decimal("0.0000"), "low", "low", "low", False, "new"),
        "C10": (Decimal("0.0000"), "low", "low", "low", False, "new"),
    }
    (reason,) = _rows(url, "select tier_reason from {marts}.customer_tiers where customer_id = 'C03'"
                           " and as_of_date = %s", A1)[0]
    assert reason.startswith("low: override by Li Wei (valid from 2026-03-01): disputed invoices;"
                             " computed medium: value score 0.6813 ranks 4 of 10 customers")

    # each one-dimension tier says why: C01 spends 2,500 (C03 3,000 more): rank 2, position
    # .1; C05's 6 orders rank 1; C03's contribution 280 ties C04's behind C01 900, C02 560,
    # C05 360: rank 4, position .3
    dims = _by_customer(url, "purchasing_power_reason, frequency_reason, profit_reason", A1)
    assert dims["C01"][0] == (
        "high: spend 2,500.00 CNY in the last 365 days ranks 2 of 10 customers, in the top 20%"
    )
    assert dims["C05"][1] == (
        "high: 6 completed orders in the last 365 days ranks 1 of 10 customers, in the top 20%"
    )
    assert dims["C03"][2] == (
        "medium: net contribution 280.00 CNY after cost-to-serve in the last 365 days ranks 4 of 10"
        " customers, in the top 50% but not the top 20%"
    )

    # account group C04 = {C04, C07, C08} on A1, ranked among 8 accounts (the group, C01,
    # C02, C03, C05, C06, C09, C10). 6 accounts bought in the window; group: spend
    # 900 + 100 + 700 = 1700, orders 3 + 1 + 2 = 6, net contribution (margin - 20 a shipped
    # order) 280 + 20 + 240 = 540, recency min(21, 90, 274) = 21. cume_dist among the 6:
    #   spend    C06 400, C05 1200, C02 1600, G 1700, C01 2500, C03 3000     -> G 4/6
    #   orders   C03 1, C06 2, C02 4, C01 5, C05 6 = G 6                     -> G 6/6
    #   contrib. C06 120, C03 280, C05 360, G 540, C02 560, C01 900          -> G 4/6
    #   recency  (desc) C06 59, C05 31, G 21, C03 11, C02 6, C01 1           -> G 3/6
    # G = (.35*4 + .25*6 + .25*4 + .15*3) / 6 = 4.35 / 6 = .725
    # C01 = (.35*5 + .25*4 + .25*6 + .15*6) / 6 = 5.15 / 6 = .8583 is the only higher one:
    # rank 2 of 8, position 1/8 = .125 < .2 -> high
    groups = _rows(url, "select account_group_id, as_of_date, members, member_customer_ids, value_score,"
                        " value_rank, account_count, value_tier from {marts}.account_group_tiers"
                        " order by as_of_date")
    assert groups == [("C04", A1, 3, "C04, C07, C08", Decimal("0.7250"), 2, 8, "high")]
    assert _by_customer(url, "account_group_id, account_group_tier", A1) == {
        **{c: (None, None) for c in ("C01", "C02", "C03", "C05", "C06", "C09", "C10")},
        **{c: ("C04", "high") for c in ("C04", "C07", "C08")},
    }

    _publish(url, cfg, A1)

    # ---- A2 = 2026-04-01: C08 bought; overrides change --------------------------------
    run_ingest(url, landing, A2, cfg)
    _build(url, cfg, A2, "--exclude", "test_type:unit")
    _publish(url, cfg, A2)

    # Window (2025-04-01, 2026-04-01]: every A1 order still counts; recency + 1 day, C08 0.
    # C08: spend 900, 3 orders, margin 360. Net contributions (margin - 20 a shipped order -
    # activities - cost of capital): C07 40 - 20 = 20, C06 160 - 40 = 120, C03 300 - 20 - 30
    # = 250, C04 360 - 80 = 280, C08 360 - 60 - 20 = 280, C05 480 - 120 = 360, C02 640 - 80 -
    # 14.79 = 545.21, C01 1000 - 100 = 900: ranked as the margins were. cume_dist of the 8:
    #   spend   C07 100, C06 400, C04 = C08 900, C05 1200, C02 1600, C01 2500, C03 3000
    #           -> 1, 2, 4, 4, 5, 6, 7, 8 (/8)
    #   orders  C03 = C07 1, C06 2, C04 = C08 3, C02 4, C01 5, C05 6 -> 2, 2, 3, 5, 5, 6, 7, 8
    #   contr.  C07 20, C06 120, C03 250, C04 = C08 280, C05 360, C02 545.21, C01 900
    #           -> 1, 2, 3, 5, 5, 6, 7, 8
    #   recency (desc) C07 91, C06 60, C05 32, C04 22, C03 12, C02 7, C01 2, C08 0 -> 1..8
    # score x 8 = .35 pp + .25 f + .25 profit + .15 r (each in eighths):
    #   C01 .35*7 + .25*7 + .25*8 + .15*7 = 7.25 -> .90625 -> .9063
    #   C02 .35*6 + .25*6 + .25*7 + .15*6 = 6.25 -> .78125 -> .7813
    #   C05 .35*5 + .25*8 + .25*6 + .15*3 = 5.70 -> .7125
    #   C08 .35*4 + .25*5 + .25*5 + .15*8 = 5.10 -> .6375
    #   C03 .35*8 + .25*2 + .25*3 + .15*5 = 4.80 -> .6
    #   C04 .35*4 + .25*5 + .25*5 + .15*4 = 4.50 -> .5625
    #   C06 .35*2 + .25*3 + .25*2 + .15*2 = 2.25 -> .28125 -> .2813
    #   C07 .35*1 + .25*2 + .25*1 + .15*1 = 1.25 -> .15625 -> .1563
    # score tiers (10 customers): C01, C02 high; C05, C08, C03 medium; C04 and below low.
    # cutoffs (midpoint of the lowest score in the tier or better and the highest below):
    #   high (.7813 + .7125) / 2 = .7469; medium (.6 + .5625) / 2 = .58125
    # hysteresis, margin .02, against the A1 computed tier:
    #   C08 low -> medium needs .6375 >= .58125 + .02 = .60125: yes, it moves up
    #   C04 medium -> low needs .5625 <= .58125 - .02 = .56125: no (.01875 below the
    #   cutoff, inside the margin): it stays medium
    t2 = _by_customer(
        url, "value_score, score_tier, computed_tier, is_hysteresis_held, value_tier, is_override,"
             " previous_value_tier, tier_change", A2)
    assert t2 == {
        "C01": (Decimal("0.9063"), "high", "high", False, "high", False, "high", "same"),
        # override medium from 2026-04-01; computed stays high
        "C02": (Decimal("0.7813"), "high", "high", False, "medium", True, "high", "down"),
        "C05": (Decimal("0.7125"), "medium", "medium", False, "medium", False, "medium", "same"),
        "C08": (Decimal("0.6375"), "medium", "medium", False, "medium", False, "low", "up"),
        # the 2026-04-01 override (high) wins over the 2026-03-01 one (low); hysteresis
        # compared the score tier with the previous computed tier (medium), not the
        # override (low): medium = medium, nothing held
        "C03": (Decimal("0.6000"), "medium", "medium", False, "high", True, "low", "up"),
        "C04": (Decimal("0.5625"), "low", "medium", True, "medium", False, "medium", "same"),
        # C06's override starts 2026-05-01: not valid yet
        "C06": (Decimal("0.2813"), "low", "low", False, "low", False, "low", "same"),
        "C07": (Decimal("0.1563"), "low", "low", False, "low", False, "low", "same"),
        "C09": (Decimal("0.0000"), "low", "low", False, "low", False, "low", "same"),
        "C10": (Decimal("0.0000"), "low", "low", False, "low", False, "low", "same"),
    }
    reasons = _by_customer(url, "tier_reason", A2)
    assert reasons["C04"].startswith(
        "medium: held by hysteresis (previous tier medium): value score 0.5625 is within the margin"
        " 0.02 of the medium cutoff 0.5813; by score alone low: value score 0.5625 ranks 6 of 10"
    )
    assert reasons["C02"].startswith("medium: override by Zhao Min (valid from 2026-04-01): key contact left;"
                                     " computed high: value score 0.7813")
    assert _rows(url, "select top_tier_cutoff from {marts}.customer_tiers where as_of_date = %s"
                      " group by top_tier_cutoff", A2) == [(Decimal("0.7469"),)]

    # High potential. customer_lifecycle, trend 180 days: recent (2025-10-03, 2026-04-01],
    # prior (2025-04-06, 2025-10-03]. Only two customers had revenue in the prior period:
    #   C05: prior 200 (2025-09-28), recent 5 x 200 = 1000: growth (1000 - 200) / 200 = 4
    #   C08: prior 700 (2025-05-31, 06-30), recent 200 (today): (200 - 700) / 700 = -.7143
    # growth ranks C05 1 (position 0), C08 2 (position .1), the rest unranked (null).
    # C05 (medium): growth 4 >= .2 and position 0 < .2 -> high potential.
    # C08: position .1 < .2 but growth -.7143 < .2 -> not.
    pot = _by_customer(url, "is_high_potential, revenue_growth_rate", A2)
    assert {c for c, (flag, _) in pot.items() if flag} == {"C05"}
    assert pot["C05"][1] == Decimal("4.0000") and pot["C08"][1] == Decimal("-0.7143")
    (why,) = _rows(url, "select high_potential_reason from {marts}.customer_tiers"
                        " where customer_id = 'C05' and as_of_date = %s", A2)[0]
    assert why == ("revenue of the last 180 days 1,000.00 against 200.00 the 180 days before (+400%),"
                   " growth ranks 1 of 10 customers (top 20%), below the top tier as medium")
    # stage, credit band and owner ride along
    extra = _by_customer(url, "lifecycle_stage, credit_risk_band, account_manager", A2)
    assert extra["C05"] == ("growing", "unknown", None)
    # C02: first order 2025-10-15 (168 days before A2, not new), no prior-period revenue,
    # recent 1600 -> growing; its unpaid overdue invoice -> credit band high
    assert extra["C02"] == ("growing", "high", MANAGER)

    # account group on A2: C08's order makes the group spend 1900, 7 orders, net
    # contribution 280 + 20 + 280 = 580, recency 0. Among the 6 buying accounts: spend G 4/6
    # (C06 400, C05 1200, C02 1600, G 1900, C01 2500, C03 3000); orders G 6/6 (C03 1, C06 2,
    # C02 4, C01 5, C05 6, G 7); contribution G 5/6 (C06 120, C03 250, C05 360, C02 545.21,
    # G 580, C01 900); recency G 6/6.
    # G = (.35*4 + .25*6 + .25*5 + .15*6) / 6 = 5.05 / 6 = .84167 -> .8417, above C01
    # (.35*5 + .25*4 + .25*6 + .15*5) / 6 = 5 / 6 = .8333: rank 1 of 8, high
    assert _rows(url, "select value_score, value_rank, value_tier from {marts}.account_group_tiers"
                      " where as_of_date = %s", A2) == [(Decimal("0.8417"), 1, "high")]

    # the published tier history keeps both dates (the build schema holds tonight's only)
    history = _rows(url, "select as_of_date, count(*), count(*) filter (where is_override),"
                         " count(*) filter (where is_hysteresis_held)"
                         " from {bi}.customer_tier_history group by as_of_date order by 1")
    assert history == [(A1, 10, 1, 0), (A2, 10, 2, 1)]

    # migrations, from the A1 value tier (with overrides) to the A2 one; revenue = spend in
    # the window at A2. A1: C01 C02 high; C05 C04 medium; C03 (override) C08 C06 C07 C09
    # C10 low. A2: C01 C03 high; C02 C05 C04 C08 medium; C06 C07 C09 C10 low.
    migrations = {
        (r[0], r[1]): r[2:]
        for r in _rows(url, "select from_tier, to_tier, customers, revenue_in_window"
                            " from {marts}.tier_migrations where as_of_date = %s", A2)
    }
    assert len(migrations) == 12  # (new + 3 levels) x 3 levels, zeros included
    assert {k: v for k, v in migrations.items() if v[0]} == {
        ("high", "high"): (1, Decimal("2500")),  # C01
        ("high", "medium"): (1, Decimal("1600")),  # C02 (override)
        ("low", "high"): (1, Decimal("3000")),  # C03 (override low -> override high)
        ("medium", "medium"): (2, Decimal("2100")),  # C05 1200 + C04 900 (held)
        ("low", "medium"): (1, Decimal("900")),  # C08 700 + 200
        ("low", "low"): (4, Decimal("500")),  # C06 400 + C07 100 + C09 0 + C10 0
    }
    # on A1 everyone is new: high C01 + C02 = 2500 + 1600; medium C05 + C04 = 1200 + 900;
    # low C03 3000 + C08 700 + C06 400 + C07 100 = 4200
    first = _rows(url, "select to_tier, customers, revenue_in_window from {bi}.tier_migrations"
                       " where as_of_date = %s and from_tier = 'new' order by to_tier_rank", A1)
    assert first == [("high", 2, Decimal("4100")), ("medium", 2, Decimal("2100")),
                     ("low", 6, Decimal("4200"))]
    # "how many high-value customers did we lose": the query in the model description
    lost = _rows(url, "select sum(customers), sum(revenue_in_window) from {bi}.tier_migrations"
                      " where from_tier = 'high' and tier_change = 'down'"
                      " and as_of_date >= date_trunc('month', date '2026-04-01')")
    assert lost == [(1, Decimal("1600"))]

    # alerts on A2 (alerted tiers high and medium; gap_factor 1.0 in this test):
    #   C05 churn_risk: purchase days 2025-09-28 .. 2026-02-28 = 2 + 31 + 30 + 31 + 31 + 28
    #     = 153 days over 5 repeat days: usual gap 30.6; recency 32 > max(1.0 x 30.6, 30)
    #   C08 revenue_drop: -.7143 <= -.5 (C08 is medium now)
    #   C02 credit: 1000 open, all overdue (due 2026-02-01): share 1 >= .5 -> high band
    #   C02 tier_downgrade: high -> medium; metric its score .7813, threshold the high
    #     cutoff .7469; critical. Everything else: warning (no top-tier customer alerted).
    # Not alerted: C01 (2 days since its last order vs a usual 119 / 4 = 29.8), C04
    # (22 vs 60), C03 (one purchase day: no usual gap).
    alerts = _rows(url, "select alert_id, customer_id, customer_name, value_tier, alert_type, severity,"
                        " owner, metric_value, threshold from {marts}.account_alerts"
                        " where as_of_date = %s order by alert_id", A2)
    assert alerts == [
        ("2026-04-01:churn_risk:C05", "C05", "北京新材料科技", "medium", "churn_risk", "warning",
         "unassigned", Decimal("32"), Decimal("30.6")),
        ("2026-04-01:credit:C02", "C02", "Northwind Traders", "medium", "credit", "warning", MANAGER,
         Decimal("1.0000"), Decimal("0.5")),
        ("2026-04-01:revenue_drop:C08", "C08", "陈静", "medium", "revenue_drop", "warning", MANAGER,
         Decimal("-0.7143"), Decimal("-0.5")),
        ("2026-04-01:tier_downgrade:C02", "C02", "Northwind Traders", "medium", "tier_downgrade", "critical",
         MANAGER, Decimal("0.7813"), Decimal("0.74690")),
    ]
    texts = dict(_rows(url, "select alert_id, reason from {marts}.account_alerts where as_of_date = %s", A2))
    assert texts["2026-04-01:churn_risk:C05"] == (
        "no order for 32 days (last 2026-02-28), 1 x the usual 30.6 days between orders;"
        " alert above 30.6 days (1 x the usual gap, at least 30)"
    )
    assert texts["2026-04-01:revenue_drop:C08"] == (
        "revenue of the last 180 days 200.00 CNY against 700.00 the 180 days before (-71.4%;"
        " alert at -50% or worse); revenue_bridge 2026-04 medium / 华东 / East China / online"
    )
    assert texts["2026-04-01:credit:C02"] == (
        "credit risk high: overdue share 100%, average days late 59, write-offs 0 in the credit window"
    )
    # A1 kept its own alert: C05 was already late (31 days > 30.6)
    assert _rows(url, "select alert_id from {bi}.account_alerts where as_of_date = %s", A1) == [
        ("2026-03-31:churn_risk:C05",)
    ]

    # ---- an override naming a tier that is not configured fails the build --------------
    _write(
        landing / "crm/tier_overrides/2026-04-01/overrides_gold.csv",
        OVERRIDES_HEADER,
        [["C06", "gold", "VIP programme", "Zhao Min", "2026-03-20", ""]],
    )
    run_ingest(url, landing, A2, cfg)
    with pytest.raises(DbtError):
        _build(url, cfg, A2, "--select", "stg_crm__tier_overrides", "customer_tiers")
    # the stored failures name the customer and the tier; the override was not applied
    failures = _rows(url, "select customer_id, override_tier, value_tier, is_override"
                          " from {build}_dbt_test__audit.tier_is_configured_customer_tiers_override_tier")
    assert failures == [("C06", "gold", "low", False)]

    # the failed test is what data_quality_results records for the night (the DAG's dbt tasks
    # hand their artifacts to record_dbt_test_results): critical, failed, one row, its model
    from tierflow.quality.dbt_results import read_test_results, record_dbt_results
    from tierflow.transform import _private_target

    tests = read_test_results(_private_target())
    (gold,) = [t for t in tests if not t.success]
    assert (gold.test, gold.model, gold.column, gold.severity, gold.observed) == (
        "tier_is_configured", "customer_tiers", "override_tier", "critical", "1 failing row(s)"
    )
    assert len(tests) > 20 and {t.model for t in tests} >= {"customer_tiers", "stg_crm__tier_overrides"}
    assert record_dbt_results(url, "night-a2", A2, tests) == len(tests)
    assert _rows(url, "select expectation, data_asset from tierflow_meta.data_quality_results"
                      " where suite = 'dbt' and not success") == [("tier_is_configured", "customer_tiers")]
