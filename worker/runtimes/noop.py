"""The `noop` runtime: echoes the prompt at once (benchmarks and smoke tests)."""

from __future__ import annotations

from worker.runtime import Outcome, TaskContext


class NoopRuntime:
    """Completes immediately with `{"output": prompt}`."""

    async def run(self, ctx: TaskContext) -> Outcome:
        return Outcome({"output": ctx.prompt})
