"""Measured fixes to what dbt costs per invocation, applied where tierflow invokes dbt.

A night under ``tierflow run`` starts dbt about 27 times (``prepare``, a task per mart, the
docs), so what dbt pays per invocation regardless of the data is paid 27 times
(docs/performance.md, "Where a night's time still goes"). Each fix here leaves dbt's results
and its documented artifacts as they are; each is applied once per process, and only to the
function it was made for: if a release changes that function, it is left as shipped and dbt
runs as it comes.

1. **Behaviour-flag source.** dbt-common 1.x names the source of each adapter behaviour flag
   that declares none (15 for dbt-postgres 1.11) with ``inspect.stack()``: for every flag, at
   every invocation, it builds the frame info of the whole call stack, which reads each frame's
   source file and looks up each frame's module by walking ``sys.modules`` (4,000+ modules in an
   Airflow task with GX, Cosmos and dbt): ~0.3 s per invocation. The replacement returns the
   same name, the module of the first frame outside ``dbt_common.behavior_flags``, read from the
   frame's globals. It is only used in the text of dbt's "behaviour change" event.
2. **JSON artifacts in one go.** dbt-common's ``write_json`` (every ``manifest.json`` and
   ``run_results.json``) calls ``json.dump``, which encodes with the standard library's
   pure-Python encoder; ``json.dumps`` uses the C one. Same bytes, about 3.5x faster: the
   project's 2.1 MB manifest takes 0.06 s instead of 0.017 s, twice per invocation.
3. **One manifest write per command.** ``dbt build`` / ``run`` / ``test`` / ``seed`` /
   ``snapshot`` write ``manifest.json`` twice: once after parsing and again at the end of the
   run (the manifest then carries the compiled SQL), to the same file. The first write is
   skipped for those commands; the file the command leaves is the same. ``dbt parse``,
   ``docs generate`` and every other command write as shipped.
4. **No ``graph.gpickle``.** Every command that compiles pickles the whole graph into
   ``target/graph.gpickle``, each node first turned into a dict (``Linker.write_graph``): about
   a tenth of a warm one-mart ``dbt build`` (docs/performance.md, stop 26). Nothing reads the
   file: dbt itself never loads it, it is not one of dbt's documented artifacts (manifest,
   run results, catalog, sources, semantic manifest), and Cosmos only uploads it from its docs
   operators, which tierflow does not use; under Cosmos the target folder is a temporary one,
   deleted after the task. The file is not written where tierflow invokes dbt.
5. **One connection per thread, not per node.** dbt closes a thread's connection after every
   model and test (``BaseConnectionManager.release``) and opens a new one for the next: a
   night's ~450 nodes pay ~450 connection starts (TCP, SCRAM authentication, a new server
   process whose catalog caches start cold). The thread's connection is now kept open
   between nodes: after each node, whatever transaction the connection holds is rolled back
   (the shipped close rolls it back too, so no node's uncommitted work is kept), and the
   connection is closed as shipped when it is broken, and at the end of the invocation
   (``cleanup_all``). tierflow's models set no session state (no ``set``, no session hooks)
   that a later node on the same connection could see.
6. **The run's date out of the partial-parse check.** dbt keeps the parsed project between
   invocations (``partial_parse.msgpack``) and throws it away when a hash of the command-line
   vars changes. tierflow passes the night's ``as_of_date`` as a var, so the first dbt command
   of every new night (``prepare``), and every ``docs generate``, parsed the whole project
   again: 3-4 s on 2 cores, each night. The hash is now taken over the vars without
   ``as_of_date``; every other var still invalidates the state as shipped. This is exact
   because nothing in the project reads the date at parse time: models and tests call the
   ``as_of_date()`` macro in their SQL, which dbt renders again, with the night's vars, when
   it compiles the node (a test's ``where`` config, rendered at parse time, must not use it:
   ``tier_is_configured(on_as_of_date=true)`` filters in its SQL instead).
   ``tests/test_dbt_patches.py`` parses the project with two dates and compares every node.
7. **Each template compiled once per process.** dbt renders every node's SQL (and every
   generic test's call, the same line for all tests of a kind) through dbt-common's
   ``get_template``, which builds a new Jinja environment and compiles the text into Python
   code each time: ~4 ms a node, ~450 nodes a night, again in every invocation. The compiled
   code is now kept per process, keyed by the text and the environment's class; each call still
   gets a new environment, its own globals and a new template object made from the code
   (``Template.from_code``, what ``from_string`` does after compiling). Exact because the code
   Jinja generates depends only on the text and on environment settings that ``get_environment``
   fixes per class (extensions, filters, tests, sandboxing; the one per-call argument,
   ``capture_macros``, only sets the ``undefined`` class, which is looked up when the template
   runs). Not while dbt's macro debugging is on (it names each compiled template's source).
"""

from __future__ import annotations

import inspect
import json
import logging
import sys
import types
from typing import Any

log = logging.getLogger(__name__)

_applied = False
# the shipped functions, kept for the tests that compare them with the replacements
shipped_default_source = None
shipped_parse_manifest = None
shipped_json = None
shipped_write_graph_file = None
shipped_release = None
shipped_state_check = None
shipped_get_template = None
_compiled: dict[tuple[type, str], types.CodeType] = {}  # fix 7: (environment class, text) -> code

# the var that changes every night and that nothing reads at parse time (fix 6)
RUN_DATE_VAR = "as_of_date"

# the commands whose run ends by writing manifest.json (dbt.task.runnable.GraphRunnableTask.run)
WRITES_MANIFEST_AT_END = frozenset({"build", "run", "test", "seed", "snapshot"})
_PARSE_MANIFEST_PARAMS = ["runtime_config", "write_perf_info", "write", "write_json", "active_integrations"]


def _module_of_caller() -> str:
    """The ``__name__`` of the first module on the call stack that is not behavior_flags."""
    frame = sys._getframe(1)
    while frame is not None:
        name = frame.f_globals.get("__name__")
        if name and name != "dbt_common.behavior_flags":
            return name
        frame = frame.f_back
    return "Unknown"


def _dump_in_one_go(obj: Any, fp: Any, **kwargs: Any) -> None:
    """``json.dump`` with the C encoder: the whole document encoded by ``json.dumps``, one write."""
    fp.write(json.dumps(obj, **kwargs))


def _parse_manifest_written_once(
    runtime_config: Any, write_perf_info: bool, write: bool, write_json: bool, active_integrations: Any
) -> Any:
    """dbt's ``parse_manifest``, without its write for a command that writes the manifest at its end."""
    from dbt.flags import get_flags

    if write and getattr(get_flags(), "WHICH", None) in WRITES_MANIFEST_AT_END:
        write = False
    return shipped_parse_manifest(runtime_config, write_perf_info, write, write_json, active_integrations)


def _replace(owner: Any, name: str, replacement: Any, parameters: list[str], uses: str) -> Any:
    """Install ``replacement`` as ``owner.<name>`` when the shipped function is the one it was made
    for (these parameters; its code refers to ``uses``) and return the shipped function; else
    log and return None, leaving dbt as shipped. A static method stays a static method."""
    current = vars(owner).get(name)
    function = current.__func__ if isinstance(current, staticmethod) else current
    code = getattr(function, "__code__", None)
    made_for = code is not None and list(inspect.signature(function).parameters) == parameters
    if not made_for or uses not in code.co_names:
        log.info("%s.%s has changed: left as shipped", getattr(owner, "__name__", owner), name)
        return None
    setattr(owner, name, staticmethod(replacement) if isinstance(current, staticmethod) else replacement)
    return function


def _patch_behavior_flag_source() -> None:
    global shipped_default_source
    from dbt_common.behavior_flags import BehaviorFlagRendered

    # the shipped function calls inspect.stack()
    shipped_default_source = _replace(BehaviorFlagRendered, "_default_source", _module_of_caller, [], "stack")


def _patch_write_json() -> None:
    global shipped_json
    from dbt_common.clients import system

    names = system.write_json.__code__.co_names
    if system.__dict__.get("json") is not json or not {"json", "dump"} <= set(names):
        log.info("dbt-common's write_json has changed: left as shipped")
        return
    # the module's own `json` becomes a copy whose `dump` encodes in one go: write_json keeps its
    # error handling, and every module that imported write_json by name gets the fix
    fast = types.ModuleType("json")
    fast.__dict__.update(json.__dict__)
    fast.dump = _dump_in_one_go
    shipped_json = system.json
    system.json = fast


def _patch_parse_manifest() -> None:
    global shipped_parse_manifest
    from dbt.cli import requires

    shipped_parse_manifest = _replace(
        requires, "parse_manifest", _parse_manifest_written_once, _PARSE_MANIFEST_PARAMS, "write_manifest"
    )


def _no_graph_file(self: Any, linker: Any, manifest: Any) -> None:
    """``Compiler.write_graph_file`` without the file: nothing reads ``graph.gpickle``."""


def _patch_graph_file() -> None:
    global shipped_write_graph_file
    from dbt.compilation import Compiler

    shipped_write_graph_file = _replace(
        Compiler, "write_graph_file", _no_graph_file, ["self", "linker", "manifest"], "write_graph"
    )


def _release_keeping_connection(self: Any) -> None:
    """``BaseConnectionManager.release`` that keeps a healthy open connection for the thread's
    next node, with no transaction left open; anything else is released as shipped."""
    with self.lock:
        conn = self.get_if_exists()
    handle = getattr(conn, "_handle", None)  # the handle itself, not the lazy opener
    status = getattr(handle, "get_transaction_status", None)
    if conn is None or conn.state != "open" or getattr(handle, "closed", 1) or status is None:
        return shipped_release(self)
    import psycopg2.extensions as ext

    try:
        if status() != ext.TRANSACTION_STATUS_IDLE:
            handle.rollback()
        conn.transaction_open = False
        healthy = status() == ext.TRANSACTION_STATUS_IDLE
    except Exception:  # a broken connection: closed as shipped
        healthy = False
    if not healthy:
        return shipped_release(self)


def _patch_release() -> None:
    global shipped_release
    from dbt.adapters.base.connections import BaseConnectionManager
    from dbt.adapters.postgres.connections import PostgresConnectionManager

    if "release" in vars(PostgresConnectionManager):  # dbt-postgres releases its own way
        log.info("dbt-postgres has its own release: left as shipped")
        return
    shipped_release = _replace(
        BaseConnectionManager, "release", _release_keeping_connection, ["self"], "close"
    )


def _state_check_without_run_date(self: Any) -> Any:
    """``ManifestLoader.build_manifest_state_check`` over the command-line vars without the
    run's date: a new night's date keeps the parsed project (see fix 6)."""
    config = self.root_project
    cli_vars = config.cli_vars
    if RUN_DATE_VAR not in cli_vars:
        return shipped_state_check(self)
    config.cli_vars = {k: v for k, v in cli_vars.items() if k != RUN_DATE_VAR}
    try:
        return shipped_state_check(self)
    finally:
        config.cli_vars = cli_vars


def _patch_state_check() -> None:
    global shipped_state_check
    from dbt.parser.manifest import ManifestLoader

    shipped_state_check = _replace(
        ManifestLoader, "build_manifest_state_check", _state_check_without_run_date, ["self"], "cli_vars"
    )


def _get_template_compiled_once(
    string: str, ctx: dict, node: Any = None, capture_macros: bool = False, native: bool = False
) -> Any:
    """dbt-common's ``get_template`` with each text compiled once per environment class (fix 7)."""
    from dbt_common.clients import jinja

    if jinja.MACRO_DEBUGGING:  # set by dbt's flags per invocation: it names each compiled source
        return shipped_get_template(string, ctx, node, capture_macros, native)
    with jinja.catch_jinja(node):
        env = jinja.get_environment(node, capture_macros, native=native)
        source = str(string)
        key = (type(env), source)
        code = _compiled.get(key)
        if code is None:
            code = _compiled[key] = env.compile(source)
        return env.template_class.from_code(env, code, env.make_globals(ctx), None)


def _patch_get_template() -> None:
    global shipped_get_template
    import dbt.clients.jinja
    from dbt_common.clients import jinja

    if dbt.clients.jinja.__dict__.get("get_template") is not jinja.get_template:
        log.info("dbt's get_template is not dbt-common's: left as shipped")
        return
    # the shipped function compiles with the environment's from_string
    shipped_get_template = _replace(
        jinja, "get_template", _get_template_compiled_once,
        ["string", "ctx", "node", "capture_macros", "native"], "from_string",
    )
    if shipped_get_template is not None:
        dbt.clients.jinja.get_template = _get_template_compiled_once  # imported there by name


def apply_dbt_patches() -> None:
    """Install the fixes above (idempotent; nothing when dbt is not installed)."""
    global _applied
    if _applied:
        return
    _applied = True
    try:
        import dbt.adapters.postgres.connections  # noqa: F401
        import dbt.cli.requires  # noqa: F401
        import dbt.compilation  # noqa: F401
        import dbt.parser.manifest  # noqa: F401
        import dbt_common.behavior_flags  # noqa: F401
    except ImportError:  # no dbt in this process: nothing to patch
        return
    _patch_behavior_flag_source()
    _patch_write_json()
    _patch_parse_manifest()
    _patch_graph_file()
    _patch_release()
    _patch_state_check()
    _patch_get_template()
