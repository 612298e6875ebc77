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
    """Move every object alive now (modules, classes, functions, the app: ~190,000 once the
    control plane is imported) out of the garbage collector's sight. A full collection
    walks them all: 80-250 ms with the event loop stopped, measured here, whenever enough
    new objects have survived (a streaming server's feeds get there). Frozen, they are
    never walked again; what the process makes later is collected as before."""
    gc.collect()
    gc.freeze()
