"""Suite files are code (plugins/tierflow/quality/suites.py): every file under expectations/ is
validated before a gate runs, and a suite's query runs in a read-only transaction.

Why: a suite's ``query`` runs verbatim in the warehouse, as the pipeline's (often owner or
superuser) role; a typo in an expectation's key would otherwise be a check that silently
checks something else, or nothing.
"""

from __future__ import annotations

import copy
import json
from datetime import date
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[1]
AS_OF = date(2026, 3, 31)

GOOD = {
    "name": "raw_erp_orders",
    "meta": {"tierflow": {"schema": "raw", "table": "erp__orders"}},
    "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "order_id"},
         "severity": "critical"},
        {"type": "expect_column_values_to_be_in_set",
         "kwargs": {"column": "status", "value_set": {"$PARAMETER": "tier_names"}}, "severity": "warning",
         "meta": {"why": "documentation only"}},
    ],
}
QUERY = {
    "name": "marts_revenue_reconciliation",
    "meta": {"tierflow": {
        "schema": "marts", "name": "revenue",
        "query": "select sum(x)::numeric as d from {schema}.t where as_of_date = :as_of_date",
    }},
    "expectations": [{"type": "expect_column_max_to_be_between",
                      "kwargs": {"column": "d", "min_value": 0, "max_value": 0}}],
}


def _write(folder: Path, name: str, suite: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(suite), encoding="utf-8")
    return path


def _changed(suite: dict, change) -> dict:
    suite = copy.deepcopy(suite)
    change(suite)
    return suite


def test_the_repository_suites_are_valid() -> None:
    from tierflow.quality.gates import load_suites

    assert len(load_suites("raw")) >= 5 and len(load_suites("marts")) >= 5


@pytest.mark.parametrize(
    ("suite", "key", "problem"),
    [
        (_changed(GOOD, lambda s: s["expectations"][0].update(type="expect_column_values_to_not_be_nul")),
         "expectations[0].type", "unknown expectation type 'expect_column_values_to_not_be_nul'"),
        # GX's SQL-bearing expectation is not a known type
        (_changed(GOOD, lambda s: s["expectations"].append(
            {"type": "unexpected_rows_expectation", "kwargs": {"unexpected_rows_query": "delete from x"}})),
         "expectations[2].type", "unknown expectation type 'unexpected_rows_expectation'"),
        (_changed(GOOD, lambda s: s["expectations"][0]["kwargs"].update(colum="x")),
         "expectations[0].kwargs.colum", "unknown key for expect_column_values_to_not_be_null"),
        (_changed(GOOD, lambda s: s["expectations"][0]["kwargs"].update(row_condition='status="x"')),
         "expectations[0].kwargs.row_condition", "unknown key"),
        (_changed(GOOD, lambda s: s["expectations"][1]["kwargs"].pop("value_set")),
         "expectations[1].kwargs.value_set", "missing (required by expect_column_values_to_be_in_set)"),
        (_changed(GOOD, lambda s: s["expectations"][1]["kwargs"].update(value_set={"$PARAMETER": "tiers"})),
         "expectations[1].kwargs.value_set", "unknown $PARAMETER 'tiers'"),
        (_changed(GOOD, lambda s: s["expectations"][0].update(severity="fatal")),
         "expectations[0].severity", "must be one of critical, warning, info"),
        (_changed(GOOD, lambda s: s["expectations"][0].update(sevrity="critical")),
         "expectations[0].sevrity", "unknown key"),
        (_changed(GOOD, lambda s: s.update(suite_parameters={})), "suite_parameters", "unknown key"),
        (_changed(GOOD, lambda s: s["meta"]["tierflow"].update(schema="bi")),
         "meta.tierflow.schema", "must be one of raw, marts"),
        (_changed(GOOD, lambda s: s["meta"]["tierflow"].update(table="orders; drop table x")),
         "meta.tierflow.table", "must be a lowercase SQL name"),
        (_changed(GOOD, lambda s: s.update(expectations=[])), "expectations", "must be a non-empty list"),
        (_changed(QUERY, lambda s: s["meta"]["tierflow"].update(
            query="with gone as (delete from {schema}.t returning *) select count(*) as d from gone")),
         "meta.tierflow.query", "must only read: delete is not allowed"),
        (_changed(QUERY, lambda s: s["meta"]["tierflow"].update(query="select 1 as d; drop table bi.t")),
         "meta.tierflow.query", "must be a single statement"),
        (_changed(QUERY, lambda s: s["meta"]["tierflow"].update(query="select * into bi.x from {schema}.t")),
         "meta.tierflow.query", "must only read: into is not allowed"),
        (_changed(QUERY, lambda s: s["meta"]["tierflow"].update(query="update {schema}.t set d = 0")),
         "meta.tierflow.query", "must be a SELECT"),
        (_changed(QUERY, lambda s: s["meta"]["tierflow"].update(
            query="select length(pg_catalog.pg_read_file('/etc/passwd')) as d")),
         "meta.tierflow.query", "calls pg_read_file"),
        (_changed(QUERY, lambda s: s["meta"]["tierflow"].update(
            query="select count(*) as d from {schema}.t where as_of_date = :asof")),
         "meta.tierflow.query", "unknown placeholder(s) :asof"),
        (_changed(QUERY, lambda s: s["meta"]["tierflow"].update(table="t")),
         "meta.tierflow", "must name exactly one of table or query"),
    ],
)
def test_a_bad_suite_file_is_refused_naming_the_file_and_the_key(
    tmp_path: Path, suite: dict, key: str, problem: str
) -> None:
    from tierflow.quality.gates import load_suites
    from tierflow.quality.suites import SuiteError

    gate = "raw" if suite["meta"]["tierflow"]["schema"] == "raw" else "marts"
    _write(tmp_path / gate, "a_good_one", GOOD if gate == "raw" else QUERY)
    path = _write(tmp_path / gate, "the_bad_one", suite)
    with pytest.raises(SuiteError) as excinfo:
        load_suites(gate, tmp_path)
    message = str(excinfo.value)
    assert message.startswith(f"{path}: invalid expectation suite")
    assert f"\n  {key}: {problem}" in message, message


def test_every_problem_of_a_file_is_listed_at_once(tmp_path: Path) -> None:
    from tierflow.quality.suites import SuiteError, validate_suite

    def breaks(s: dict) -> None:
        s["expectations"][0]["kwargs"]["colum"] = "x"
        s["expectations"][1]["type"] = "expect_nothing"
        s["meta"]["tierflow"]["schema"] = "public"

    with pytest.raises(SuiteError) as excinfo:
        validate_suite(tmp_path / "x.json", _changed(GOOD, breaks))
    lines = str(excinfo.value).splitlines()[1:]
    assert [line.split(":")[0].strip() for line in lines] == [
        "meta.tierflow.schema", "expectations[0].kwargs.colum", "expectations[1].type"
    ]


@pytest.mark.parametrize(
    "query",
    [
        "select 'delete; drop' as d, \"comment\" from {schema}.t -- insert into x\n",
        "select $$;update$$ as d /* delete /* nested */ */ from {schema}.t",
        "with x as (select 1::numeric as d) select d from x where :as_of_date >= date '2026-01-01';",
        "select e'it\\'s; into' as d",
    ],
)
def test_read_only_queries_pass(query: str) -> None:
    from tierflow.quality.suites import query_problems

    assert query_problems(query) == []


def test_the_gate_checks_every_file_before_running_any(
    warehouse_url: str, tmp_path: Path, config
) -> None:
    from tierflow.quality.gates import validate
    from tierflow.quality.suites import SuiteError

    # the good suite reads a table that does not exist: had it run, GX would fail on that
    _write(tmp_path / "raw", "a_good_one", GOOD)
    _write(tmp_path / "raw", "z_bad_one", _changed(GOOD, lambda s: s.update(name="x", extra=1)))
    with pytest.raises(SuiteError, match=r"z_bad_one\.json: invalid expectation suite:\n  extra: unknown"):
        validate(warehouse_url, "raw", AS_OF, config, tmp_path)


def test_a_query_that_writes_through_a_function_is_stopped_by_the_read_only_transaction(
    warehouse_url: str, tmp_path: Path, config
) -> None:
    """What the text check cannot see (a function that writes) the read-only session stops."""
    from tierflow.quality.gates import validate
    from tierflow.quality.suites import query_problems

    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        conn.execute("create table written (n int)")
        conn.execute("create function sneaky() returns int language sql"
                     " as $$ insert into written values (1) returning 1 $$")
    query = "select sneaky() as n"
    assert query_problems(query) == []  # passes the text check
    _write(tmp_path / "raw", "raw_sneaky", {
        "name": "raw_sneaky",
        "meta": {"tierflow": {"schema": "raw", "query": query}},
        "expectations": [
            {"type": "expect_column_max_to_be_between", "kwargs": {"column": "n", "min_value": 1}}
        ],
    })
    results = validate(warehouse_url, "raw", AS_OF, config, tmp_path)
    # the check fails (critical: the gate would stop the run) with PostgreSQL's reason
    assert [(r.suite, r.success) for r in results] == [("raw_sneaky", False)]
    assert "cannot execute INSERT in a read-only transaction" in json.dumps(results[0].details, default=str)
    with psycopg.connect(warehouse_url) as conn:
        assert conn.execute("select count(*) from written").fetchone() == (0,)


def test_read_only_url_keeps_existing_options(warehouse_url: str) -> None:
    from tierflow.quality.suites import read_only_url

    url = f"{warehouse_url}?options=-c%20search_path%3Dpublic&application_name=t"
    with psycopg.connect(read_only_url(url)) as conn:
        assert conn.execute("show transaction_read_only").fetchone() == ("on",)
        assert conn.execute("show search_path").fetchone() == ("public",)
        assert conn.execute("show application_name").fetchone() == ("t",)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("create table t (x int)")


def test_the_known_expectations_are_gx_ones_without_sql() -> None:
    import great_expectations.expectations as gxe
    from great_expectations.expectations.expectation import Expectation
    from tierflow.config import load_config
    from tierflow.quality.gates import suite_parameters
    from tierflow.quality.suites import EXPECTATIONS, SUITE_PARAMETERS

    assert set(suite_parameters(load_config(ROOT / "config" / "tierflow.yml"))) == set(SUITE_PARAMETERS)
    for kind, (required, optional) in EXPECTATIONS.items():
        cls = getattr(gxe, "".join(part.title() if part not in ("a", "b") else part.upper()
                                   for part in kind.split("_")), None)
        assert cls is not None and issubclass(cls, Expectation), kind
        fields = set(cls.__fields__)
        assert set(required) | set(optional) <= fields, (kind, set(required) | set(optional) - fields)
        assert not {k for k in (*required, *optional) if "query" in k or "condition" in k}, kind
