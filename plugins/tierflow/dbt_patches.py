"""Measured fixes to what dbt costs per invocation, applied where tierflow invokes dbt.

A night under ``tierflow run`` starts dbt about 27 times (``prepare``, a task per mart, the
docs), so what dbt pays per invocation regardless of the data is paid 27 times
(docs/performance.md, "Where a night's time still goes"). Each fix here leaves dbt's results
and artifacts as they are; each is applied once per process, and only to the function it was
made for: if a release changes that function, it is left as shipped and dbt runs as it comes.

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


def _patch_behavior_flag_source() -> None:
    global shipped_default_source
    from dbt_common.behavior_flags import BehaviorFlagRendered

    current = BehaviorFlagRendered.__dict__.get("_default_source")
    # the shipped function calls inspect.stack(); anything else is a release this was not made for
    if not isinstance(current, staticmethod) or "stack" not in current.__func__.__code__.co_names:
        log.info("dbt-common's BehaviorFlagRendered._default_source has changed: left as shipped")
        return
    shipped_default_source = current.__func__
    BehaviorFlagRendered._default_source = staticmethod(_module_of_caller)


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

    current = requires.__dict__.get("parse_manifest")
    if current is None or list(inspect.signature(current).parameters) != _PARSE_MANIFEST_PARAMS:
        log.info("dbt's parse_manifest has changed: left as shipped")
        return
    shipped_parse_manifest = current
    requires.parse_manifest = _parse_manifest_written_once


def apply_dbt_patches() -> None:
    """Install the fixes above (idempotent; nothing when dbt is not installed)."""
    global _applied
    if _applied:
        return
    _applied = True
    try:
        import dbt.cli.requires  # noqa: F401
        import dbt_common.behavior_flags  # noqa: F401
    except ImportError:  # no dbt in this process: nothing to patch
        return
    _patch_behavior_flag_source()
    _patch_write_json()
    _patch_parse_manifest()
