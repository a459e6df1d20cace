"""The garbage collector in a process that runs whole nights (`tierflow run`,
tierflow.pipeline.freeze_for_the_night): what is alive at a task's start is frozen, what the
night leaves in reference cycles is still collected, at the next task's start or between
nights, and a process that does not run nights keeps the shipped collector."""

from __future__ import annotations

import gc
import weakref

import pytest
from tierflow import pipeline


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def _cycle() -> tuple[Node, weakref.ref]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return a, weakref.ref(b)


@pytest.fixture
def night():
    threshold = gc.get_threshold()
    try:
        pipeline.freeze_for_the_night()
        yield
    finally:
        pipeline._night_frozen = False
        gc.unfreeze()
        gc.set_threshold(*threshold)


def test_a_night_freezes_what_is_alive_and_still_collects_its_cycles(night) -> None:
    assert gc.get_freeze_count() > 0 and gc.get_threshold()[0] == 10_000

    # garbage a task left in a cycle: the next task's start collects it before freezing
    a, b = _cycle()
    del a
    pipeline.refreeze_for_the_task()
    assert b() is None

    # alive at a task's start: frozen; freed later only in a cycle, collected between nights
    a, b = _cycle()
    pipeline.refreeze_for_the_task()
    del a
    gc.collect()
    assert b() is not None  # frozen: no pass walks it during the night
    pipeline.thaw_between_nights()
    assert b() is None
    assert gc.get_freeze_count() > 0  # and frozen again for the next night

    # a dbt task's callback leaves the night frozen
    frozen = gc.get_freeze_count()
    pipeline.record_dbt_test_results("/nonexistent", context=None)  # records nothing, logs why
    assert gc.get_freeze_count() > frozen // 2 > 0  # (frozen objects freed by refcount leave it)


def test_outside_a_night_a_task_changes_nothing_and_a_dbt_task_unfreezes() -> None:
    assert not pipeline._night_frozen
    threshold, frozen = gc.get_threshold(), gc.get_freeze_count()
    pipeline.refreeze_for_the_task()
    assert gc.get_threshold() == threshold and gc.get_freeze_count() == frozen
    gc.freeze()  # what the interceptor does before dbt starts
    try:
        assert gc.get_freeze_count() > 0
        pipeline.record_dbt_test_results("/nonexistent", context=None)
        assert gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()
