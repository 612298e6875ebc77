"""Plays a worker that holds a key (in its environment and on its command line): runs the
probe script as a `command` task and as a `bash` tool call and prints, as JSON, all they saw.

    python sandbox_probe.py WORKSPACE PROBE --api-key=KEY
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from tests.worker.helpers import make_ctx
from worker.builtins import ToolEnv, ToolError
from worker.builtins.shell import Bash
from worker.runtime import TaskFailed
from worker.runtimes.command import CommandRuntime
from worker.sandbox import not_dumpable


async def main(workspace: Path, probe: str) -> dict[str, str]:
    ctx, rec = make_ctx(workspace / "command", ["bash", "-c", probe])
    try:
        await CommandRuntime().run(ctx)
    except TaskFailed as exc:
        rec.emit("log", {"line": f"failed: {exc.code}: {exc.message}"})
    command = "\n".join(str(d.get("line", "")) for kind, d in rec.events if kind == "log")
    chunks: list[str] = []
    tool_ctx, _ = make_ctx(workspace / "bash", None)
    try:
        said = await Bash().run({"command": probe}, ToolEnv(tool_ctx, "call_1", chunks.append))
    except (ToolError, TaskFailed) as exc:
        said = str(exc)
    return {"command": command, "bash": said + "".join(chunks)}


if __name__ == "__main__":
    not_dumpable()  # as the real worker does
    print(json.dumps(asyncio.run(main(Path(sys.argv[1]), sys.argv[2]))))
