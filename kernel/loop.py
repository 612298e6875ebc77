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

__all__ = ["loop_factory", "run", "settle"]


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
    settle()
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)


def settle() -> None:
    """Make the garbage collector's full passes rare and cheap for a long-running server.

    A full collection walks every tracked object with the event loop stopped. At start that
    is ~190,000 objects (modules, classes, functions, the app): frozen here, they are never
    walked again. And under a stream of events the objects in flight survive the young
    collections, so CPython's default (a full pass after 10 middle ones, once enough have
    survived) ran one every second or so: measured in `make bench-stream` on a busy box,
    15-16 full passes in 15 s, 180-800 ms each, finding no garbage, lag p99 3.2-3.4 s; after
    100 middle ones instead: 1-2 passes, p99 0.9-1.4 s. Cycles are still collected, young
    ones as before, old ones at the rarer full passes."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_PASS_EVERY)


FULL_PASS_EVERY = 100  # middle-generation collections per full one (CPython's default: 10)
