"""`serve` and `worker start` run on kernel.loop.run, which settles the garbage collector."""

from __future__ import annotations

import gc

from kernel import loop


def test_the_long_running_loop_starts_with_its_imports_frozen_and_rare_full_passes() -> None:
    before = gc.get_threshold()

    async def main() -> tuple[int, tuple[int, int, int]]:
        return gc.get_freeze_count(), gc.get_threshold()

    try:
        frozen, threshold = loop.run(main())
    finally:
        gc.unfreeze()  # the rest of the test session collects as usual
        gc.set_threshold(*before)
    assert frozen > 10_000  # pytest, the project's modules and their dependencies
    assert threshold == (loop.YOUNG_THRESHOLD, before[1], loop.FULL_PASS_EVERY)
