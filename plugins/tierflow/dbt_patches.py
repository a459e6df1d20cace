"""One measured fix to a dependency's start-up cost, applied where tierflow invokes dbt.

dbt-common 1.x names the source of each adapter behaviour flag that declares none (15 for
dbt-postgres 1.11) with ``inspect.stack()``: for every flag, at every dbt invocation, it
builds the frame info of the whole call stack, which reads each frame's source file and
looks up each frame's module by walking ``sys.modules``. Inside an Airflow task (a deep stack,
4,000+ modules loaded with Airflow, GX, Cosmos and dbt) that costs ~0.3 s per flag set, once
per dbt invocation: a dbt start per mart task, about 25 a night under ``tierflow run``
(docs/performance.md, "Where a night's time still goes").

The replacement returns the same name, the module of the first frame outside
``dbt_common.behavior_flags``, read from the frame's globals instead of its source file. It is
only used in the text of dbt's "behaviour change" event. Applied once per process; if a dbt-common
release changes the function this patches, nothing is patched and dbt runs as shipped.
"""

from __future__ import annotations

import logging
import sys

log = logging.getLogger(__name__)

_applied = False
shipped_default_source = None  # dbt-common's own function, kept for the test that compares them


def _module_of_caller() -> str:
    """The ``__name__`` of the first module on the call stack that is not behavior_flags."""
    frame = sys._getframe(1)
    while frame is not None:
        name = frame.f_globals.get("__name__")
        if name and name != "dbt_common.behavior_flags":
            return name
        frame = frame.f_back
    return "Unknown"


def apply_dbt_patches() -> None:
    """Install the cheap behaviour-flag source lookup (idempotent)."""
    global _applied, shipped_default_source
    if _applied:
        return
    _applied = True
    try:
        from dbt_common.behavior_flags import BehaviorFlagRendered
    except ImportError:  # no dbt in this process: nothing to patch
        return
    current = BehaviorFlagRendered.__dict__.get("_default_source")
    # the shipped function calls inspect.stack(); anything else is a release this was not made for
    if not isinstance(current, staticmethod) or "stack" not in current.__func__.__code__.co_names:
        log.info("dbt-common's BehaviorFlagRendered._default_source has changed: left as shipped")
        return
    shipped_default_source = current.__func__
    BehaviorFlagRendered._default_source = staticmethod(_module_of_caller)
