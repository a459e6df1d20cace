"""Allocation plans (tierflow.allocation): known answers on hand-made customers.

Why: the allocation is the decision the product exists for. Sales managers must be able to
trust that the amounts add up to the budget to the cent, that every floor and cap (the
credit-risk cap too) and the account-manager capacity hold, that the optimized plan never
promises less than the policy plan, and that each customer's action has a readable reason.
Every expected number below is worked out by hand in the comments.
"""

from __future__ import annotations

import copy
import json
import shutil
from datetime import date
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import psycopg
import pytest
import yaml
from tierflow.allocation import AllocationError, CustomerInput, build_plan, run_allocation
from tierflow.allocation.model import plan_period_label, round_to_total
from tierflow.allocation.policy import tier_policy_budgets
from tierflow.config import TierflowConfig

ROOT = Path(__file__).resolve().parents[1]
AS_OF = date(2026, 3, 31)
ALL_ONE = {
    a: 1.0
    for a in ("credit review", "win back", "convert potential", "retain", "develop", "serve at low cost")
}


def make_config(**allocation) -> TierflowConfig:
    """The shipped config with the allocation block changed (tiers: high, medium, low).

    Without a control group unless one is asked for: these tests are about how the budget is
    split; the control group has its own tests (test_control_* below, tests/test_outcomes.py).
    """
    data = yaml.safe_load((ROOT / "config" / "tierflow.yml").read_text(encoding="utf-8"))
    alloc = copy.deepcopy(data["allocation"])
    alloc["control_share"] = 0
    tiers = allocation.pop("tiers", {})
    alloc.update(allocation)
    for name, change in tiers.items():
        alloc["tiers"][name].update(change)
    data["allocation"] = alloc
    return TierflowConfig.model_validate(data)


def cust(cid: str, tier: str, score: str, monetary: str = "0", **kw) -> CustomerInput:
    return CustomerInput(cid, tier, Decimal(score), Decimal(monetary), **kw)


def cents(amount: str) -> int:
    return int(Decimal(amount) * 100)


# --- tier rounding (the rules of the former dbt model allocation_plan_tier) -------------------


def test_tier_budgets_round_each_share_and_give_the_remainder_to_the_best_tier() -> None:
    # 1000.01 x .333 = 333.00333 -> 333.00 (high, medium); x .334 = 334.00334 -> 334.00;
    # rounded sum 1000.00, remainder +0.01 to high: 333.01
    assert tier_policy_budgets(100001, [Decimal(".333"), Decimal(".333"), Decimal(".334")]) == [
        33301,
        33300,
        33400,
    ]
    # 0.05 x .5 = .025 -> .03, x .3 = .015 -> .02, x .2 = .01 (half away from zero); sum .06;
    # remainder -0.01 taken from high: .02
    assert tier_policy_budgets(5, [Decimal(".5"), Decimal(".3"), Decimal(".2")]) == [2, 2, 1]


def test_plan_period_labels() -> None:
    assert plan_period_label(date(2026, 1, 31), "quarter") == "2026-Q1"
    assert plan_period_label(date(2026, 11, 5), "quarter") == "2026-Q4"
    assert plan_period_label(date(2026, 3, 31), "month") == "2026-03"
    assert plan_period_label(date(2026, 3, 31), "year") == "2026"


# --- the policy plan on nine customers ----------------------------------------------------------
# Budget 10,000.00; shares high .5 / medium .3 / low .2 -> 5,000 / 3,000 / 2,000 (no remainder).
# Floors .25 and caps 1.5 x the tier average; credit-risk cap .5 x the tier average.
# Account-manager capacity 5 h; high customers ask 2 h, medium 1 h, low 0.
# Response: 2.0 per unit up to 10% of monetary, 1.0 up to 20%, nothing beyond; an AM hour
# returns 1% of monetary; multipliers 1 except credit review .5.
NINE = [
    cust("H1", "high", ".9", "20000", lifecycle_stage="mature", account_manager="王芳"),
    cust("H2", "high", ".3", "10000", lifecycle_stage="declining", recency_days=120),
    cust("H3", "high", ".3", "10000", credit_risk_band="high"),
    cust(
        "M1",
        "medium",
        ".7",
        "5000",
        is_high_potential=True,
        high_potential_reason="revenue up 80% on the previous 180 days",
    ),
    cust("M2", "medium", ".5", "4000", lifecycle_stage="mature", is_override=True),
    cust("M3", "medium", ".5", "3000", lifecycle_stage="churned", recency_days=200),
    cust("L1", "low", ".2", "800", is_high_potential=True, high_potential_reason="top 20% growth"),
    cust("L2", "low", ".1", "500", lifecycle_stage="declining", recency_days=90),
    cust("L3", "low", "0", "0", lifecycle_stage="never_purchased"),
]


def nine_config(mode: str = "policy", value_base: str = "revenue") -> TierflowConfig:
    return make_config(
        mode=mode,
        budget=10000,
        account_manager_capacity_hours=5,
        credit_risk_cap=0.5,
        tiers={
            "high": {
                "budget_share": 0.5,
                "customer_floor": 0.25,
                "customer_cap": 1.5,
                "account_manager_hours": 2,
                "optimized_min_share": 0.8,
            },
            "medium": {
                "budget_share": 0.3,
                "customer_floor": 0.25,
                "customer_cap": 1.5,
                "account_manager_hours": 1,
                "optimized_min_share": 0.6,
            },
            "low": {
                "budget_share": 0.2,
                "customer_floor": 0.25,
                "customer_cap": 1.5,
                "account_manager_hours": 0,
                "optimized_min_share": 0.5,
            },
        },
        response={
            "segments": [
                {"up_to_share_of_value": 0.1, "return_per_unit": 2.0},
                {"up_to_share_of_value": 0.2, "return_per_unit": 1.0},
            ],
            "account_manager_hour_return": 0.01,
            "action_multipliers": {**ALL_ONE, "credit review": 0.5},
            "value_base": value_base,
        },
    )


def test_policy_plan_known_answer() -> None:
    plan = build_plan(NINE, nine_config(), AS_OF)
    got = {p.customer.customer_id: p for p in plan.customers}
    amounts = {cid: p.allocated_cents for cid, p in got.items()}
    # high: avg 5000/3 = 1666.666..: floor 416.66 (down), cap 2500.00; H3 high risk: cap
    #   .5 x 1666.666.. = 833.333.. -> 833.33 (down). Split by score .9/.3/.3 (sum 1.5):
    #   3000 / 1000 / 1000 -> H1 above its cap 2500, H3 above 833.33: both capped, and
    #   H2 takes the rest 5000 - 2500 - 833.33 = 1666.67 (level 5555.6: between its bounds).
    # medium: avg 1000, floor 250, cap 1500. Scores .7/.5/.5 (sum 1.7): 3000 x .7/1.7 =
    #   1235.294.., 3000 x .5/1.7 = 882.352.. (twice); rounded down 1235.29 + 882.35 + 882.35
    #   = 2999.99; the missing cent goes to the largest remainder (M1: .41 of a cent).
    # low: avg 666.666..: floor 166.66, cap 1000.00. L3 has score 0: its floor 166.66; the
    #   other 1833.34 split .2/.1 would give L1 1222.23 > cap: L1 1000.00, L2 833.34.
    assert amounts == {
        "H1": cents("2500.00"),
        "H2": cents("1666.67"),
        "H3": cents("833.33"),
        "M1": cents("1235.30"),
        "M2": cents("882.35"),
        "M3": cents("882.35"),
        "L1": cents("1000.00"),
        "L2": cents("833.34"),
        "L3": cents("166.66"),
    }
    assert sum(amounts.values()) == cents("10000.00")
    assert (got["H1"].floor_cents, got["H1"].cap_cents) == (cents("416.66"), cents("2500.00"))
    assert (got["H3"].cap_cents, got["H3"].is_credit_capped) == (cents("833.33"), True)
    assert (got["L3"].floor_cents, got["L1"].cap_cents) == (cents("166.66"), cents("1000.00"))
    for p in plan.customers:
        assert p.floor_cents <= p.allocated_cents <= p.cap_cents, p.customer.customer_id

    # hours by value order: H1 (.9) 2 h, H2 (.3, before H3 by id) 2 h, H3 the last 1 h; none left
    hours = {cid: p.am_hundredths for cid, p in got.items() if p.am_hundredths}
    assert hours == {"H1": 200, "H2": 200, "H3": 100}
    assert sum(hours.values()) == 500

    actions = {cid: p.primary_action for cid, p in got.items()}
    assert actions == {
        "H1": "retain",
        "H2": "win back",
        "H3": "credit review",
        "M1": "convert potential",
        "M2": "develop",
        "M3": "win back",
        "L1": "convert potential",
        "L2": "serve at low cost",
        "L3": "serve at low cost",
    }
    assert got["H3"].action_reason.startswith("High credit risk") and "833.33" in got["H3"].action_reason
    assert "last order 120 days ago" in got["H2"].action_reason
    assert "revenue up 80% on the previous 180 days" in got["M1"].action_reason
    assert got["M2"].action_reason == (
        "Tier medium set by sales management (override). "
        "Medium tier (value score 0.50, revenue 4,000.00 in the window): develop toward high."
    )
    assert "no revenue in the window" in got["L3"].action_reason

    # expected return (cents of contribution):
    #   H1: monetary 20000 -> breakpoints 2000, 4000: 2000 x 2 + 500 x 1 = 4500; 2 h x 1% x 20000
    #       = 400; total 4900
    #   H3: breakpoints 1000, 2000: 833.33 x 2 = 1666.66; 1 h x 100 = 100; x .5 = 883.33
    #   L3: no value base, no return
    assert got["H1"].expected_return == Fraction(490000)
    assert got["H3"].expected_return == Fraction(88333)
    assert got["L3"].expected_return == 0

    tiers = {t.name: t for t in plan.tiers}
    assert [tiers[n].allocated_cents for n in ("high", "medium", "low")] == [500000, 300000, 200000]
    assert tiers["high"].am_hundredths == 500 and tiers["medium"].customers == 3


def test_response_scaled_by_predicted_clv() -> None:
    """allocation.response.value_base: clv scales the curves by predicted_clv_12m instead of
    the window's revenue; the budget split (by value score) does not change."""
    from dataclasses import replace

    with_clv = [replace(c, predicted_clv_12m=Decimal("5000")) if c.customer_id == "H1" else c for c in NINE]
    revenue_plan = build_plan(with_clv, nine_config(), AS_OF)
    clv_plan = build_plan(with_clv, nine_config(value_base="clv"), AS_OF)
    assert (revenue_plan.value_base, clv_plan.value_base) == ("revenue", "clv")
    got = {p.customer.customer_id: p for p in clv_plan.customers}
    assert {c: p.allocated_cents for c, p in got.items()} == {
        p.customer.customer_id: p.allocated_cents for p in revenue_plan.customers
    }
    # H1 (2,500.00 and 2 h, as in the known answer above), clv 5000 instead of revenue 20000:
    #   breakpoints 10% and 20% of 5000 = 500, 1000: 500 x 2 + 500 x 1 = 1500; hours
    #   2 h x 1% x 5000 = 100; total 1600 (revenue base: 4900)
    assert got["H1"].expected_return == Fraction(160000)
    assert {p.customer.customer_id: p.expected_return for p in revenue_plan.customers}["H1"] == 490000
    # H2 has no predicted_clv_12m here (in customer_clv: it never purchased) on a night with
    # predicted values: its value base is 0, so its spend returns nothing
    assert got["H2"].expected_return == 0
    assert not clv_plan.notes

    # a night without any predicted value: the curves fall back to revenue, and the plan says so
    fallback = build_plan(NINE, nine_config(value_base="clv"), AS_OF)
    assert fallback.value_base == "revenue"
    assert fallback.expected_return == build_plan(NINE, nine_config(), AS_OF).expected_return
    assert any("no CLV fit in use" in n for n in fallback.notes)


def test_a_tier_without_customers_passes_its_money_on_by_budget_share() -> None:
    # budget 1000, shares .5/.3/.2, nobody in medium: its 300 goes to high and low in the
    # ratio .5 : .2 -> 214.2857.. and 85.7142..; rounded down 214.28 + 85.71 = 299.99, the
    # cent to the larger remainder (high, .57): high 500 + 214.29, low 200 + 85.71.
    cfg = make_config(
        budget=1000,
        tiers={"high": {"budget_share": 0.5}, "medium": {"budget_share": 0.3}, "low": {"budget_share": 0.2}},
    )
    plan = build_plan([cust("A", "high", ".9", "100"), cust("C", "low", ".1", "10")], cfg, AS_OF)
    assert [(t.name, t.customers, t.policy_cents, t.allocated_cents) for t in plan.tiers] == [
        ("high", 1, 50000, 71429),
        ("medium", 0, 30000, 0),
        ("low", 1, 20000, 28571),
    ]


def test_money_a_credit_cap_frees_goes_to_the_other_tiers() -> None:
    # budget 1000, shares .5/.3/.2, one customer per tier (avg = the tier budget), caps 1.5.
    # H is high risk: cap .5 x 500 = 250; the other 250 go to medium and low as .3 : .2 =
    # 150 and 100: M 450 (= its cap 1.5 x 300), L 300 (= its cap 1.5 x 200).
    cfg = make_config(
        budget=1000,
        credit_risk_cap=0.5,
        tiers={
            "high": {"budget_share": 0.5, "customer_cap": 1.5},
            "medium": {"budget_share": 0.3, "customer_cap": 1.5},
            "low": {"budget_share": 0.2, "customer_cap": 1.5},
        },
    )
    plan = build_plan(
        [cust("H", "high", ".9", credit_risk_band="high"), cust("M", "medium", ".5"), cust("L", "low", ".5")],
        cfg,
        AS_OF,
    )
    assert [(p.customer.customer_id, p.allocated_cents, p.cap_cents) for p in plan.customers] == [
        ("H", 25000, 25000),
        ("L", 30000, 30000),
        ("M", 45000, 45000),
    ]
    # with every customer high risk nothing can take the money: the plan fails and says why
    with pytest.raises(AllocationError, match="every customer is at its cap"):
        build_plan(
            [
                cust("H", "high", ".9", credit_risk_band="high"),
                cust("L", "low", ".5", credit_risk_band="high"),
            ],
            cfg,
            AS_OF,
        )


def test_bad_input_names_the_customer() -> None:
    with pytest.raises(AllocationError, match="customer X1: value_tier 'gold' is not a tier"):
        build_plan([cust("X1", "gold", ".5")], make_config(), AS_OF)
    with pytest.raises(AllocationError, match="no tiered customers for 2026-03-31"):
        build_plan([], make_config(), AS_OF)


# --- the optimized plan -----------------------------------------------------------------------


def test_optimized_plan_meets_every_constraint_and_beats_the_policy_plan() -> None:
    policy = build_plan(NINE, nine_config("policy"), AS_OF)
    opt = build_plan(NINE, nine_config("optimized"), AS_OF)
    assert opt.mode == "optimized"
    assert sum(p.allocated_cents for p in opt.customers) == cents("10000.00")
    for p in opt.customers:
        assert p.floor_cents <= p.allocated_cents <= p.cap_cents, p.customer.customer_id
        assert 0 <= p.am_hundredths <= p.am_requested
    assert sum(p.am_hundredths for p in opt.customers) <= 500
    # per-tier minimum: optimized_min_share x the tier's policy budget (high .8 x 5000 = 4000,
    # medium .6 x 3000 = 1800, low .5 x 2000 = 1000)
    by_tier = {t.name: t.allocated_cents for t in opt.tiers}
    assert by_tier["high"] >= 400000 and by_tier["medium"] >= 180000 and by_tier["low"] >= 100000
    assert opt.policy_expected_return == policy.expected_return
    # policy spends e.g. 166.66 on L3 (no value base, no return) and 1,000 on L1 whose curve
    # ends at 20% of 800 = 160: the optimizer moves such money to where it earns
    assert opt.expected_return > policy.expected_return


def test_optimized_known_answer_where_the_policy_plan_leaves_return_on_the_table() -> None:
    # Budget 3000, shares .5/.3/.2, one customer per tier, floors .25, caps 1.5, all
    # multipliers 1; AM capacity 1 h, asked for by A (high) and B (medium), hour return 1%.
    #   A high,   monetary 1,000:   curve 2.0 to 100, 1.0 to 200 -> at most 300 of return
    #   B medium, monetary 100,000: curve 2.0 to 10,000
    #   C low,    monetary 0:       no return
    # Policy: A 1500, B 900, C 600; the hour goes to A (best tier) -> 1% x 1000 = 10.
    #   return = A 300 + B 900 x 2 = 1800 + hour 10 = 2110.
    # Optimized: B up to its cap 1.5 x 900 = 1350 (2700), C at least .5 x 600 = 300 (tier
    #   minimum), A at least .8 x 1500 = 1200 and still saturated (300); the hour to B
    #   (1% x 100,000 = 1000). return = 300 + 2700 + 1000 = 4000.
    def config(mode: str) -> TierflowConfig:
        return make_config(
            mode=mode,
            budget=3000,
            account_manager_capacity_hours=1,
            tiers={
                "high": {
                    "budget_share": 0.5,
                    "customer_floor": 0.25,
                    "customer_cap": 1.5,
                    "account_manager_hours": 1,
                    "optimized_min_share": 0.8,
                },
                "medium": {
                    "budget_share": 0.3,
                    "customer_floor": 0.25,
                    "customer_cap": 1.5,
                    "account_manager_hours": 1,
                    "optimized_min_share": 0.6,
                },
                "low": {
                    "budget_share": 0.2,
                    "customer_floor": 0.25,
                    "customer_cap": 1.5,
                    "account_manager_hours": 0,
                    "optimized_min_share": 0.5,
                },
            },
            response={
                "segments": [
                    {"up_to_share_of_value": 0.1, "return_per_unit": 2.0},
                    {"up_to_share_of_value": 0.2, "return_per_unit": 1.0},
                ],
                "account_manager_hour_return": 0.01,
                "action_multipliers": ALL_ONE,
            },
        )

    customers = [cust("A", "high", ".9", "1000"), cust("B", "medium", ".5", "100000"), cust("C", "low", "0")]
    policy = build_plan(customers, config("policy"), AS_OF)
    assert [p.allocated_cents for p in policy.customers] == [150000, 90000, 60000]
    assert policy.expected_return == Fraction(211000)
    opt = build_plan(customers, config("optimized"), AS_OF)
    a, b, c = opt.customers
    assert b.allocated_cents == 135000 and (b.am_hundredths, a.am_hundredths) == (100, 0)
    assert a.allocated_cents >= 120000 and c.allocated_cents >= 30000
    assert a.allocated_cents + c.allocated_cents == 165000
    assert opt.expected_return == Fraction(400000)
    assert opt.policy_expected_return == Fraction(211000)


# --- the database step ------------------------------------------------------------------------

TIERS_DDL = """
create schema build_marts;
create table build_marts.customer_tiers (
    customer_id text, as_of_date date, value_tier text, value_score numeric, monetary numeric,
    recency_days integer, lifecycle_stage text, credit_risk_band text, is_high_potential boolean,
    high_potential_reason text, account_manager text, is_override boolean, predicted_clv_12m numeric
);
"""


def _insert_tiers(conn: psycopg.Connection, as_of: date, customers: list[CustomerInput]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "insert into build_marts.customer_tiers values"
            " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (
                    c.customer_id,
                    as_of,
                    c.value_tier,
                    c.value_score,
                    c.monetary,
                    c.recency_days,
                    c.lifecycle_stage,
                    c.credit_risk_band,
                    c.is_high_potential,
                    c.high_potential_reason,
                    c.account_manager,
                    c.is_override,
                    c.predicted_clv_12m,
                )
                for c in customers
            ],
        )


def test_step_writes_both_tables_and_a_rerun_replaces_the_date(warehouse_url: str, tmp_path: Path) -> None:
    cfg = nine_config()
    earlier = date(2026, 3, 30)
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        conn.execute(TIERS_DDL)
        _insert_tiers(conn, AS_OF, NINE)
        _insert_tiers(conn, earlier, NINE[:3])
    run_allocation(warehouse_url, cfg, earlier)
    summary = run_allocation(warehouse_url, cfg, AS_OF)
    assert summary["customers"] == 9 and summary["budget"] == "10000.00"
    summary = run_allocation(warehouse_url, cfg, AS_OF)  # a rerun replaces, never appends

    with psycopg.connect(warehouse_url) as conn:
        rows = conn.execute(
            "select customer_id, allocated_budget, budget_floor, budget_cap, account_manager_hours,"
            " primary_action, plan_period, plan_mode, account_manager, roi"
            " from build_marts.allocation_plan_customer where as_of_date = %s order by customer_id",
            (AS_OF,),
        ).fetchall()
        assert len(rows) == 9
        h1 = rows[0]
        # H1: 2500.00 within [416.66, 2500.00], 2 h, return 4900 / 2500 = 1.96
        assert h1 == (
            "H1",
            Decimal("2500.00"),
            Decimal("416.66"),
            Decimal("2500.00"),
            Decimal("2.00"),
            "retain",
            "2026-03",
            "policy",
            "王芳",
            Decimal("1.9600"),
        )
        assert sum(r[1] for r in rows) == Decimal("10000.00")
        (m2_reason,) = conn.execute(
            "select action_reason from build_marts.allocation_plan_customer where customer_id = 'M2'"
            " and as_of_date = %s",
            (AS_OF,),
        ).fetchone()
        assert "(override)" in m2_reason
        tiers = conn.execute(
            "select value_tier, customers, allocated_budget, budget_per_customer, policy_budget,"
            " account_manager_hours, revenue_in_window from build_marts.allocation_plan_tier"
            " where as_of_date = %s order by tier_rank",
            (AS_OF,),
        ).fetchall()
        # per customer: 5000/3 = 1666.67, 3000/3 = 1000, 2000/3 = 666.67
        assert tiers == [
            (
                "high",
                3,
                Decimal("5000.00"),
                Decimal("1666.67"),
                Decimal("5000.00"),
                Decimal("5.00"),
                Decimal("40000"),
            ),
            (
                "medium",
                3,
                Decimal("3000.00"),
                Decimal("1000.00"),
                Decimal("3000.00"),
                Decimal("0.00"),
                Decimal("12000"),
            ),
            (
                "low",
                3,
                Decimal("2000.00"),
                Decimal("666.67"),
                Decimal("2000.00"),
                Decimal("0.00"),
                Decimal("1300"),
            ),
        ]
        # the earlier date keeps its own plan: 3 customers, all in high, which takes the whole
        # budget (medium and low have nobody); caps from the high average 10000 / 3
        # (cap 1.5 x 3333.33 = 5000.00; H3's credit cap .5 x 3333.33 = 1666.66) leave room
        earlier_tiers = conn.execute(
            "select value_tier, customers, allocated_budget, policy_budget"
            " from build_marts.allocation_plan_tier"
            " where as_of_date = %s order by tier_rank",
            (earlier,),
        ).fetchall()
        assert earlier_tiers == [
            ("high", 3, Decimal("10000.00"), Decimal("5000.00")),
            ("medium", 0, Decimal("0.00"), Decimal("3000.00")),
            ("low", 0, Decimal("0.00"), Decimal("2000.00")),
        ]
        comment = conn.execute(
            "select col_description('build_marts.allocation_plan_customer'::regclass, 1)"
        ).fetchone()[0]
        assert comment and "customer" in comment.lower()

    # the marts gate's allocation suites pass on this plan (budget parameter 10,000, 5 h)
    from tierflow.quality.gates import validate

    suites = tmp_path / "marts"
    suites.mkdir()
    for path in (ROOT / "expectations" / "marts").glob("allocation_*.json"):
        shutil.copy(path, suites / path.name)
    results = validate(warehouse_url, "marts", AS_OF, cfg, tmp_path)
    assert len(results) >= 15
    assert [(r.suite, r.expectation, r.column) for r in results if not r.success] == []

    # and they catch a broken cap and a missing customer
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        conn.execute(
            "update build_marts.allocation_plan_customer set budget_cap = 1 where customer_id = 'H2'"
        )
        _insert_tiers(conn, AS_OF, [cust("Z9", "low", ".1")])
    failed = {
        (r.expectation, json.dumps(r.details["kwargs"].get("column_A")), r.column)
        for r in validate(warehouse_url, "marts", AS_OF, cfg, tmp_path)
        if not r.success
    }
    assert ("expect_column_pair_values_a_to_be_greater_than_b", '"budget_cap"', None) in failed
    assert ("expect_column_values_to_not_be_null", "null", "customer_id") in failed


def test_customers_are_read_back_as_written_in_chunks(warehouse_url: str, monkeypatch) -> None:
    """The read streams customer_tiers in chunks (READ_CHUNK_ROWS); chunks of two give back the
    nine customers as written, in customer order, and only the as-of date's."""
    from tierflow.allocation import store

    monkeypatch.setattr(store, "READ_CHUNK_ROWS", 2)
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        conn.execute(TIERS_DDL)
        _insert_tiers(conn, AS_OF, NINE)
        _insert_tiers(conn, date(2026, 3, 30), NINE[:3])
        read = store.read_customers(conn, AS_OF)
    assert read == sorted(NINE, key=lambda c: c.customer_id)


def test_step_names_missing_input_columns(warehouse_url: str) -> None:
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        conn.execute("create schema build_marts")
        conn.execute(
            "create table build_marts.customer_tiers (customer_id text, as_of_date date,"
            " value_tier text, value_score numeric)"
        )
    with pytest.raises(AllocationError, match=r"customer_tiers lacks the column\(s\).*'monetary'"):
        run_allocation(warehouse_url, make_config(), AS_OF)


def test_default_config_on_the_ten_customer_fixture_keeps_the_published_tier_budgets(config) -> None:
    # tests/test_pipeline_e2e.py's fixture (scores and monetary from its hand computation):
    # high C01, C02; medium C05, C03, C04; low C08, C06, C07, C09, C10. Default budget
    # 1,000,000 x .6/.3/.1 = 600,000 / 300,000 / 100,000, no rounding remainder, no credit
    # risk (no invoices), caps 3 x the tier average: nothing moves between tiers.
    fixture = [
        ("C01", "high", ".925", "2500"),
        ("C02", "high", ".8", "1600"),
        ("C05", "medium", ".73125", "1200"),
        ("C03", "medium", ".65", "3000"),
        ("C04", "medium", ".58125", "900"),
        ("C08", "low", ".36875", "700"),
        ("C06", "low", ".33125", "400"),
        ("C07", "low", ".175", "100"),
        ("C09", "low", "0", "0"),
        ("C10", "low", "0", "0"),
    ]
    plan = build_plan([cust(*row, credit_risk_band="unknown") for row in fixture], config, AS_OF)
    assert [(t.name, t.customers, t.allocated_cents) for t in plan.tiers] == [
        ("high", 2, 60_000_000),
        ("medium", 3, 30_000_000),
        ("low", 5, 10_000_000),
    ]
    assert plan.plan_period == "2026-03" and plan.mode == "policy"
    # high in cents: 60,000,000 x .925 / 1.725 = 32,173,913.04.. and x .8 / 1.725 =
    # 27,826,086.95..; rounded down they miss one cent, which goes to the larger remainder (C02)
    got = {p.customer.customer_id: p.allocated_cents for p in plan.customers}
    assert (got["C01"], got["C02"]) == (32_173_913, 27_826_087)


def test_step_in_optimized_mode_writes_plans_that_agree(warehouse_url: str) -> None:
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        conn.execute(TIERS_DDL)
        _insert_tiers(conn, AS_OF, NINE)
    summary = run_allocation(warehouse_url, nine_config("optimized"), AS_OF)
    assert summary["mode"] == "optimized"
    assert Decimal(summary["expected_return"]) > Decimal(summary["policy_expected_return"])
    with psycopg.connect(warehouse_url) as conn:
        rows = conn.execute(
            "select t.value_tier, t.plan_mode, t.allocated_budget, sum(c.allocated_budget),"
            " t.account_manager_hours, sum(c.account_manager_hours),"
            " t.expected_return, sum(c.expected_return)"
            " from build_marts.allocation_plan_tier t join build_marts.allocation_plan_customer c"
            " using (as_of_date, value_tier) group by 1, 2, 3, 5, 7"
        ).fetchall()
    assert len(rows) == 3
    for tier, mode, budget, budget_sum, hours, hours_sum, ret, ret_sum in rows:
        assert (mode, budget, hours, ret) == ("optimized", budget_sum, hours_sum, ret_sum), tier
    assert sum(r[2] for r in rows) == Decimal("10000.00")


# --- control groups (allocation.control_share) ----------------------------------------------------

TEN = [  # the ten-customer fixture on 2026-03-31 (as in the test above)
    ("C01", "high", ".925", "2500"),
    ("C02", "high", ".8", "1600"),
    ("C05", "medium", ".73125", "1200"),
    ("C03", "medium", ".65", "3000"),
    ("C04", "medium", ".58125", "900"),
    ("C08", "low", ".36875", "700"),
    ("C06", "low", ".33125", "400"),
    ("C07", "low", ".175", "100"),
    ("C09", "low", "0", "0"),
    ("C10", "low", "0", "0"),
]


def test_control_group_is_held_out_and_the_treated_customers_share_the_budget() -> None:
    # draws u = sha256('<period>:<customer_id>')[:8] / 2**64, computed once with hashlib:
    #   2026-03: C01 .0912, C06 .0405 are below .1 (the next lowest: C04 .1888)
    #   2026-04: C08 .0749 is below .1 (the next lowest: C09 .3053)
    cfg = make_config(control_share=0.1)
    plan = build_plan([cust(*row, credit_risk_band="unknown") for row in TEN], cfg, AS_OF)
    got = {p.customer.customer_id: p for p in plan.customers}
    assert {c for c, p in got.items() if p.is_control} == {"C01", "C06"}
    for cid, action in (("C01", "retain"), ("C06", "serve at low cost")):
        p = got[cid]
        assert (p.primary_action, p.assigned_action) == ("control group", action)
        assert (p.allocated_cents, p.am_hundredths, p.expected_return) == (0, 0, 0)
        assert p.action_reason.startswith("Control group of 2026-03 (allocation.control_share 0.1): no")
    # high: C02 alone is treated and gets the tier's 600,000 (its cap is 3 x 600,000)
    assert got["C02"].allocated_cents == 60_000_000 and got["C02"].primary_action == "retain"
    # low: 100,000 over the treated C08, C07, C09, C10 (avg 25,000: floor 6,250, cap 75,000).
    # C09 and C10 (score 0) get their floor: 87,500 left for C08 and C07 by score
    # .36875 : .175 = 59 : 28 -> C08 87,500 x 59 / 87 = 59,339.0804..,
    # C07 87,500 x 28 / 87 = 28,160.9195..; the missing cent goes to C07 (remainder .95 > .04)
    assert [got[c].allocated_cents for c in ("C08", "C07", "C09", "C10")] == [
        5_933_908, 2_816_092, 625_000, 625_000]
    # still to the cent over the treated customers, per tier and in total
    assert sum(p.allocated_cents for p in plan.customers) == 100_000_000
    assert [(t.name, t.customers, t.control_customers, t.allocated_cents) for t in plan.tiers] == [
        ("high", 2, 1, 60_000_000), ("medium", 3, 0, 30_000_000), ("low", 5, 1, 10_000_000)]
    # another night of the same period draws the same customers; the next period anew
    again = build_plan([cust(*row, credit_risk_band="unknown") for row in TEN], cfg, date(2026, 3, 5))
    assert {p.customer.customer_id for p in again.customers if p.is_control} == {"C01", "C06"}
    april = build_plan([cust(*row, credit_risk_band="unknown") for row in TEN], cfg, date(2026, 4, 1))
    assert {p.customer.customer_id for p in april.customers if p.is_control} == {"C08"}
    # 0 disables it
    none = build_plan([cust(*row, credit_risk_band="unknown") for row in TEN], make_config(), AS_OF)
    assert not any(p.is_control for p in none.customers)


def test_control_group_that_takes_every_customer_is_an_error() -> None:
    # C01's draw for 2026-03 is .0912 < .5: the only customer is in control
    with pytest.raises(AllocationError, match=r"allocation.control_share 0.5: all 1 customers of 2026-03"):
        build_plan([cust("C01", "high", ".9", "100")], make_config(control_share=0.5), AS_OF)


def test_largest_remainder_rounding_ranks_fractional_parts_across_denominators() -> None:
    """round_to_total compares the fractional parts exactly, whatever their denominators.

    5/2 + 7/4 + 3/4 + 2 = 7; floors 2 + 1 + 0 + 2 = 5, so 2 cents are missing. Fractional
    parts 1/2, 3/4, 3/4, 0: the two 3/4 get a cent each, not the 1/2. The second case has
    parts whose numerators rank the other way than the parts (333 > 2 but 333/1000 < 2/3).
    """
    values = [Fraction(5, 2), Fraction(7, 4), Fraction(3, 4), Fraction(2)]
    assert round_to_total(values, 7, lambda i: i) == [2, 2, 1, 2]
    # 1/3 + 333/1000 + 2/3 + 667/1000 = 2: floors 0, parts 1/3 > 333/1000 and 667/1000 > 2/3:
    # the two cents go to 667/1000 (largest) and 2/3 (next), ties never reached
    values = [Fraction(1, 3), Fraction(333, 1000), Fraction(2, 3), Fraction(667, 1000)]
    assert round_to_total(values, 2, lambda i: i) == [0, 0, 1, 1]
    # equal parts: the tie order decides (smallest key first), here the reverse of the index
    values = [Fraction(1, 3)] * 3
    assert round_to_total(values, 1, lambda i: -i) == [0, 0, 1]
    # whole values and negative ones: floor(-1/2) = -1 with part 1/2
    values = [Fraction(-1, 2), Fraction(3, 2), Fraction(1)]
    assert round_to_total(values, 2, lambda i: i) == [0, 1, 1]
