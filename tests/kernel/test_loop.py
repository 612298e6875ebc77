"""`serve` and `worker start` run on kernel.loop.run, which freezes what is alive at start."""

from __future__ import annotations

import gc

from kernel import loop


def test_the_long_running_loop_starts_with_its_imports_frozen() -> None:
    async def main() -> int:
        return gc.get_freeze_count()

    try:
        frozen = loop.run(main())
    finally:
        gc.unfreeze()  # the rest of the test session collects as usual
    assert frozen > 10_000  # pytest, the project's modules and their dependencies
