"""The tools an `llm` agent may be given, by name (the agent's `tools` list).

A tool is a typed object: `name`, a `description` the model reads, a JSON-schema `parameters`,
and `async run(args, env) -> str`. A failure the model should see raises `ToolError` (the
call completes as `failed` with that message, and the model may act on it). `ask_user` is
not run: the loop turns it into a question for a human (Requires Input). A tool with
`resumable = True` is run again after an interruption (with its `env.state`) instead of
being reported as interrupted, and may have an `async prepare(args, env)` that the loop
calls for every such call of a turn before running any (so delegations run in parallel).

    bash           a shell command in the task workspace (process group, timeout, output cap)
    http_request   one HTTP request
    read_file      a text file inside the workspace
    write_file     a text file inside the workspace
    save_artifact  a file the task produced, uploaded to the control plane
    ask_user       a question for a human, with optional choices
"""

from __future__ import annotations

from collections.abc import Iterable

from worker.builtins.base import Tool, ToolEnv, ToolError, schema

__all__ = ["BUILTIN", "Tool", "ToolEnv", "ToolError", "schema", "toolkit"]


def _builtin() -> dict[str, Tool]:
    from worker.builtins.ask import AskUser
    from worker.builtins.files import ReadFile, SaveArtifact, WriteFile
    from worker.builtins.http import HttpRequest
    from worker.builtins.shell import Bash

    tools: list[Tool] = [Bash(), HttpRequest(), ReadFile(), WriteFile(), SaveArtifact(), AskUser()]
    return {t.name: t for t in tools}


BUILTIN: dict[str, Tool] = _builtin()


def toolkit(names: Iterable[str] | None) -> dict[str, Tool]:
    """The tools called `names` (unknown names are left out: the caller reports them)."""
    return {n: BUILTIN[n] for n in names or () if n in BUILTIN}
