"""The dbt-common start-up fix (tierflow.dbt_patches): same answer as the shipped function."""

from __future__ import annotations

import inspect

import psycopg
from dbt_common.behavior_flags import BehaviorFlagRendered
from tierflow import dbt_patches


def _flag_made_here() -> BehaviorFlagRendered:
    return BehaviorFlagRendered({"name": "some_flag", "default": False, "description": "d"}, {})


def test_the_patched_source_is_the_module_that_made_the_flag_as_shipped() -> None:
    dbt_patches.apply_dbt_patches()
    assert dbt_patches.shipped_default_source is not None, "dbt-common changed: the patch no longer applies"
    assert BehaviorFlagRendered._default_source is not dbt_patches.shipped_default_source

    flag = _flag_made_here()
    assert flag._behavior_change_event.flag_source == __name__

    # the shipped function, called from the same place, names the same module
    def shipped_flag() -> str:
        return dbt_patches.shipped_default_source()

    assert shipped_flag() == __name__ == dbt_patches._module_of_caller()


def test_applying_twice_keeps_the_first_shipped_function() -> None:
    dbt_patches.apply_dbt_patches()
    first = dbt_patches.shipped_default_source
    dbt_patches.apply_dbt_patches()
    assert dbt_patches.shipped_default_source is first


def test_a_function_that_is_not_the_one_a_patch_was_made_for_is_left_as_shipped() -> None:
    class Shipped:
        def close(self) -> None: ...

        def release(self) -> None:
            self.close()

        @staticmethod
        def source() -> str:
            return inspect.stack()[0].function

    def replacement(self) -> None: ...

    release, source = Shipped.release, Shipped.__dict__["source"]
    # other parameters, or code that no longer calls what the patch replaces: untouched
    assert dbt_patches._replace(Shipped, "release", replacement, ["self", "extra"], "close") is None
    assert dbt_patches._replace(Shipped, "release", replacement, ["self"], "stack") is None
    assert dbt_patches._replace(Shipped, "missing", replacement, ["self"], "close") is None
    assert Shipped.release is release and not hasattr(Shipped, "missing")
    # the function it was made for: replaced, the shipped one returned; a static method stays one
    assert dbt_patches._replace(Shipped, "release", replacement, ["self"], "close") is release
    assert Shipped.release is replacement
    assert dbt_patches._replace(Shipped, "source", lambda: "frame", [], "stack") is source.__func__
    assert isinstance(Shipped.__dict__["source"], staticmethod) and Shipped.source() == "frame"


def test_json_artifacts_are_the_bytes_the_shipped_encoder_writes(tmp_path) -> None:
    import datetime
    import decimal
    import json

    from dbt_common.clients import system
    from dbt_common.utils.encoding import JSONEncoder

    dbt_patches.apply_dbt_patches()
    assert dbt_patches.shipped_json is json, "dbt-common changed: the write_json patch no longer applies"
    assert system.json.dump is dbt_patches._dump_in_one_go
    # what dbt's encoder has to handle beyond plain JSON, nested, and non-ASCII text
    data = {
        "metadata": {"generated_at": datetime.datetime(2026, 11, 30, 17, 41, 37, 123456),
                     "dbt_version": "1.11"},
        "nodes": {f"model.p.m{i}": {"raw_code": "select 'é' as x -- ü\n", "n": i, "share": 0.1 * i,
                                    "amount": decimal.Decimal("12.50"), "tags": [], "config": None}
                  for i in range(50)},
    }
    system.write_json(str(tmp_path / "patched.json"), data)
    with open(tmp_path / "shipped.json", "w", encoding="utf-8") as f:
        json.dump(data, f, cls=JSONEncoder)  # what dbt-common's write_json does as shipped
    assert (tmp_path / "patched.json").read_bytes() == (tmp_path / "shipped.json").read_bytes()
    # the module's other json functions are the standard library's
    assert system.read_json(str(tmp_path / "patched.json"))["nodes"]["model.p.m3"]["n"] == 3


def _tiny_project(root, url: str, monkeypatch):
    """A dbt project of one model, its profile pointing at the database of ``url`` (the password
    in the environment, not in the file)."""
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(url)
    (root / "models").mkdir(parents=True)
    (root / "models" / "one.sql").write_text("select 1 as x\n")
    (root / "dbt_project.yml").write_text(
        "name: tiny\nversion: '1.0'\nconfig-version: 2\nprofile: tiny\nmodel-paths: [models]\n"
    )
    (root / "profiles.yml").write_text(
        "tiny:\n  target: t\n  outputs:\n    t:\n      type: postgres\n"
        f"      host: {parts.hostname}\n      port: {parts.port}\n      user: {parts.username}\n"
        "      password: \"{{ env_var('TINY_DBT_PASSWORD') }}\"\n"
        f"      dbname: {parts.path.lstrip('/')}\n      schema: tiny\n      threads: 1\n"
    )
    monkeypatch.setenv("TINY_DBT_PASSWORD", unquote(parts.password or ""))
    return root


def _manifest_writes(root, *args: str) -> int:
    """Run dbt in ``root``; how many times it wrote manifest.json (dbt's own ArtifactWritten events)."""
    from dbt.cli.main import dbtRunner

    writes = []

    def on_event(event) -> None:
        if event.info.name == "ArtifactWritten" and event.data.artifact_type == "WritableManifest":
            writes.append(event.data.artifact_path)

    res = dbtRunner(callbacks=[on_event]).invoke(
        [*args, "--project-dir", str(root), "--profiles-dir", str(root), "--no-partial-parse"]
    )
    assert res.success, res.exception
    return len(writes)


def test_a_build_writes_its_manifest_once_with_the_compiled_sql(tmp_path, warehouse_url, monkeypatch) -> None:
    import json

    from dbt.cli import requires

    dbt_patches.apply_dbt_patches()
    assert dbt_patches.shipped_parse_manifest is not None, "dbt changed: the parse_manifest patch is off"
    root = _tiny_project(tmp_path / "p", warehouse_url, monkeypatch)

    assert _manifest_writes(root, "build") == 1
    manifest = json.loads((root / "target" / "manifest.json").read_text())
    # the write the build left is the one after its run: it has the model's compiled SQL
    assert manifest["nodes"]["model.tiny.one"]["compiled_code"].strip() == "select 1 as x"
    # commands that do not write at their end keep the write after parsing
    (root / "target" / "manifest.json").unlink()
    assert _manifest_writes(root, "parse") == 1
    assert (root / "target" / "manifest.json").is_file()

    # as shipped, the same build writes it twice (what the patch saves)
    patched, requires.parse_manifest = requires.parse_manifest, dbt_patches.shipped_parse_manifest
    try:
        assert _manifest_writes(root, "build") == 2
    finally:
        requires.parse_manifest = patched


def test_a_build_writes_no_graph_pickle_but_its_documented_artifacts(
    tmp_path, warehouse_url, monkeypatch
) -> None:
    from dbt.compilation import Compiler

    dbt_patches.apply_dbt_patches()
    assert dbt_patches.shipped_write_graph_file is not None, "dbt changed: the graph file patch is off"
    root = _tiny_project(tmp_path / "p", warehouse_url, monkeypatch)
    target = root / "target"

    assert _manifest_writes(root, "build") == 1
    assert not (target / "graph.gpickle").exists()
    assert {"manifest.json", "run_results.json", "graph_summary.json"} <= {p.name for p in target.iterdir()}
    with psycopg.connect(warehouse_url) as conn:  # the build itself ran
        assert conn.execute("select x from tiny.one").fetchall() == [(1,)]

    # as shipped, the same build pickles the graph (what the patch saves)
    patched, Compiler.write_graph_file = Compiler.write_graph_file, dbt_patches.shipped_write_graph_file
    try:
        _manifest_writes(root, "build")
    finally:
        Compiler.write_graph_file = patched
    assert (target / "graph.gpickle").stat().st_size > 0


def _opened_connections(root, *args: str) -> list[int]:
    """Run dbt in ``root``; per thread that opened a database connection, how many it opened
    (dbt's own events, fired in the thread that opens)."""
    import collections
    import threading

    from dbt.cli.main import dbtRunner

    opened: collections.Counter = collections.Counter()

    def on_event(event) -> None:
        if event.info.name == "NewConnectionOpening":
            opened[threading.get_ident()] += 1

    res = dbtRunner(callbacks=[on_event]).invoke(
        [*args, "--project-dir", str(root), "--profiles-dir", str(root), "--no-partial-parse"]
    )
    assert res.success, res.exception
    return sorted(opened.values())


def test_a_thread_keeps_its_connection_between_nodes_with_no_transaction_left(
    tmp_path, warehouse_url, monkeypatch
) -> None:
    from dbt.adapters.base.connections import BaseConnectionManager

    dbt_patches.apply_dbt_patches()
    assert dbt_patches.shipped_release is not None, "dbt changed: the connection patch is off"
    root = _tiny_project(tmp_path / "p", warehouse_url, monkeypatch)  # threads: 1
    (root / "models" / "schema.yml").write_text(
        "version: 2\nmodels:\n  - name: one\n    columns:\n      - name: x\n"
        "        data_tests: [not_null, unique, {accepted_values: {arguments: {values: [1]}}}]\n"
    )
    # built after one's three tests, on the same thread and connection: the locks on `one` that
    # any backend still holds then (none: no node's transaction outlives it on a kept connection)
    (root / "models" / "two.sql").write_text(
        "{{ config(materialized='table') }}-- {{ ref('one') }}\nselect count(*) as locks"
        " from pg_locks l join pg_class c on c.oid = l.relation"
        " where c.relname = 'one' and c.relnamespace = 'tiny'::regnamespace\n"
    )

    patched = _opened_connections(root, "build")
    with psycopg.connect(warehouse_url) as conn:
        assert conn.execute("select locks from tiny.two").fetchall() == [(0,)]
    # as shipped, every node opens a connection of its own (what the patch saves)
    kept, BaseConnectionManager.release = BaseConnectionManager.release, dbt_patches.shipped_release
    try:
        shipped = _opened_connections(root, "build")
    finally:
        BaseConnectionManager.release = kept
    # each thread that ran a query (dbt's main thread, its metadata threads, the one worker
    # thread of the five nodes) opened one connection; as shipped, the worker opened one per node
    assert set(patched) == {1}, patched
    assert max(shipped) >= 5, shipped
    with psycopg.connect(warehouse_url) as conn:
        assert conn.execute("select locks from tiny.two").fetchall() == [(0,)]


def _parse(url: str, target, as_of: str, *flags: str, publish_schema: str = "bi") -> list[str]:
    """``dbt parse`` of tierflow's project with the run vars of ``as_of``; the reasons dbt gave
    for parsing the whole project instead of its saved state (empty: it reused the state)."""
    import json

    from tierflow.config import load_config
    from tierflow.settings import load_settings
    from tierflow.transform import run_dbt, run_vars

    reasons: list[str] = []

    def on_event(event) -> None:
        if event.info.name == "UnableToPartialParse":
            reasons.append(event.data.reason)

    cfg = load_config(load_settings().config_path)
    run_vars_ = run_vars(cfg, as_of, publish_schema)
    run_dbt(["parse", "--vars", json.dumps(run_vars_), *flags], url, target, callbacks=[on_event])
    return reasons


def _parsed_nodes(target) -> dict:
    """Every parsed resource of a manifest, without what differs between two parses of the same
    files (when each node was made)."""
    import json

    manifest = json.loads((target / "manifest.json").read_text())
    parsed = {}
    for kind in ("nodes", "sources", "macros", "unit_tests", "exposures", "metrics", "semantic_models"):
        for uid, node in (manifest.get(kind) or {}).items():
            parsed[uid] = {k: v for k, v in node.items() if k != "created_at"}
    return parsed


def test_nothing_in_the_project_reads_the_run_date_at_parse_time(tmp_path, warehouse_url) -> None:
    """Fix 6 keeps the parsed project across nights: exact only if two full parses with two
    different as-of dates give the same resources (a test's ``where`` or a model's config
    rendering ``var('as_of_date')`` would differ here)."""
    dbt_patches.apply_dbt_patches()
    _parse(warehouse_url, tmp_path / "a", "2026-01-31", "--no-partial-parse")
    _parse(warehouse_url, tmp_path / "b", "2019-07-04", "--no-partial-parse")
    a, b = _parsed_nodes(tmp_path / "a"), _parsed_nodes(tmp_path / "b")
    assert len(a) > 100 and a.keys() == b.keys()
    differ = sorted(uid for uid in a if a[uid] != b[uid])
    assert differ == [], f"parsed differently with another as_of_date: {differ[:5]}"


def test_a_new_night_keeps_the_parsed_project_and_other_vars_still_reparse(tmp_path, warehouse_url) -> None:
    from dbt.parser.manifest import ManifestLoader

    dbt_patches.apply_dbt_patches()
    assert dbt_patches.shipped_state_check is not None, "dbt changed: the state-check patch is off"
    target = tmp_path / "t"
    _parse(warehouse_url, target, "2026-01-30")
    assert _parse(warehouse_url, target, "2026-01-31") == []  # the next night: the saved state
    # any other var still throws the state away, as shipped
    assert _parse(warehouse_url, target, "2026-01-31", publish_schema="bi_other") != []

    # as shipped, the next night parses the whole project again (what the patch saves)
    patched = ManifestLoader.build_manifest_state_check
    ManifestLoader.build_manifest_state_check = dbt_patches.shipped_state_check
    try:
        assert _parse(warehouse_url, target, "2026-02-01") != []
    finally:
        ManifestLoader.build_manifest_state_check = patched


def _compiled_nodes(url: str, target, as_of: str) -> dict[str, str]:
    """``dbt compile`` of tierflow's project for ``as_of``: every node's compiled SQL."""
    import json

    from tierflow.config import load_config
    from tierflow.settings import load_settings
    from tierflow.transform import run_dbt, run_vars

    run_vars_ = run_vars(load_config(load_settings().config_path), as_of, "bi")
    run_dbt(["compile", "--vars", json.dumps(run_vars_)], url, target)
    manifest = json.loads((target / "manifest.json").read_text())
    return {uid: node["compiled_code"] for uid, node in manifest["nodes"].items() if "compiled_code" in node}


def test_each_template_compiled_once_renders_what_dbt_renders(tmp_path, warehouse_url) -> None:
    """Fix 7: every model and test of the project compiles to the same SQL with the compiled
    templates kept as with dbt-common's own get_template, also when a second invocation takes
    every template from the kept code."""
    import dbt.clients.jinja
    from dbt_common.clients import jinja

    dbt_patches.apply_dbt_patches()
    assert dbt_patches.shipped_get_template is not None, "dbt-common changed: the template patch is off"
    assert jinja.get_template is dbt.clients.jinja.get_template is dbt_patches._get_template_compiled_once
    dbt_patches._compiled.clear()
    first = _compiled_nodes(warehouse_url, tmp_path / "a", "2026-01-31")
    kept = len(dbt_patches._compiled)
    again = _compiled_nodes(warehouse_url, tmp_path / "b", "2026-01-31")  # every template from the kept code
    jinja.get_template = dbt.clients.jinja.get_template = dbt_patches.shipped_get_template
    try:
        shipped = _compiled_nodes(warehouse_url, tmp_path / "c", "2026-01-31")
    finally:
        jinja.get_template = dbt.clients.jinja.get_template = dbt_patches._get_template_compiled_once
    tests = [uid for uid in shipped if uid.startswith("test.")]
    assert len(shipped) > 300 and len(tests) > 200
    assert first == shipped and again == shipped
    assert kept > 0 and len(dbt_patches._compiled) == kept  # the second invocation compiled nothing new
