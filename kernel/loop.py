"""The event loop the long-running processes (`serve`, `worker start`) run on.

uvloop when it is installed (it comes with `uvicorn[standard]`, a dependency): its loop,
transports and timers are C, and the control plane and the workers spend a large part of
each request in the loop itself (profiled under issue #15: ~15% of the server's samples in
asyncio's `_run_once`/selector/transport code). `META_AGENT_LOOP=asyncio` keeps the standard
loop, e.g. to debug with asyncio's debug mode.
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["loop_factory", "run", "settle_heap"]


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's `new_event_loop` unless turned off or missing; None means asyncio's own."""
    choice = os.environ.get("META_AGENT_LOOP", "auto").strip().lower()
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise SystemExit("META_AGENT_LOOP=uvloop, but uvloop is not installed") from None
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on the loop `loop_factory` picks, the imports' objects frozen."""
    settle_heap()
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)


# The youngest generation's threshold once the heap is settled (CPython's default: 700 net
# allocations of container objects). A busy server allocates thousands per request (parsed
# bodies, rows, frames) that die young by reference counting anyway; collecting every 700
# cost the streaming bench ~5 % of the server's core in young collections, and every object
# alive at a collection is promoted towards the expensive old generation.
YOUNG_THRESHOLD = 10_000
# Middle-generation collections per full one (CPython's default: 10). Under a stream of
# events the objects in flight survive the young collections, so the default ran a full pass
# every second or so even with the start-up heap frozen: `make bench-stream` on a busy box,
# 15 full passes in 15 s, 180-500 ms each, finding no garbage; with 100, 1-2.
FULL_PASS_EVERY = 100


def settle_heap() -> int:
    """Take what start-up built (modules, the app, schemas, compiled queries: ~270,000 objects
    in `serve`) out of the cyclic GC's way, and space its passes out; returns how many
    objects are frozen. `run` calls it before the loop starts (`worker start` too), `serve`
    again once its lifespan is up.

    Every full collection traverses the old generation with the event loop stopped, and
    CPython runs one whenever the survivors since the last reach a quarter of it: in `make
    bench-stream` (10,000 events/s) that was every second or two, 0.3-0.5 s each (so every
    stream's p99 lag). Frozen objects are never traversed (nor collected: they live as long
    as the process anyway). Cycles made later are still collected: young ones as often as
    before, old ones at the rarer full passes."""
    gc.collect()
    gc.freeze()
    _, middle, _ = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, FULL_PASS_EVERY)
    return gc.get_freeze_count()
