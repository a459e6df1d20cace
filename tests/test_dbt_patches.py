"""The dbt-common start-up fix (tierflow.dbt_patches): same answer as the shipped function."""

from __future__ import annotations

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
