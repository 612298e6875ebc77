"""`read_file`, `write_file` (inside the task workspace only) and `save_artifact`."""

from __future__ import annotations

import asyncio
import mimetypes
from pathlib import Path
from typing import Any

from worker.builtins.base import ToolEnv, ToolError
from worker.builtins.shell import clip

__all__ = ["ReadFile", "SaveArtifact", "WriteFile", "inside"]

MAX_READ_CHARS = 100_000
MAX_WRITE_BYTES = 5_000_000


def inside(workspace: Path, path: Any) -> Path:
    """`path` resolved inside `workspace`; ToolError when it points (or links) outside."""
    if not isinstance(path, str) or not path.strip():
        raise ToolError("`path` must be a non-empty string")
    root = workspace.resolve()
    target = (root / path).resolve()  # follows symlinks: a link out of the workspace is caught too
    if target != root and not target.is_relative_to(root):
        raise ToolError(f"{path} is outside the task workspace; only paths inside it may be used")
    return target


class ReadFile:
    name = "read_file"
    description = "Read a text file in the task's working directory (relative path)."
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": {"path": {"type": "string", "description": "path relative to the working directory"}},
        "required": ["path"],
    }

    async def run(self, args: dict[str, Any], env: ToolEnv) -> str:
        env.ctx.workspace.mkdir(parents=True, exist_ok=True)
        path = inside(env.ctx.workspace, args.get("path"))
        if not path.is_file():
            raise ToolError(f"{args.get('path')}: no such file")
        data = await asyncio.to_thread(path.read_bytes)
        return clip(data.decode("utf-8", "replace"), MAX_READ_CHARS)


class WriteFile:
    name = "write_file"
    description = "Write (create or replace) a text file in the task's working directory."
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": {
            "path": {"type": "string", "description": "path relative to the working directory"},
            "content": {"type": "string"},
        },
        "required": ["path", "content"],
    }

    async def run(self, args: dict[str, Any], env: ToolEnv) -> str:
        env.ctx.workspace.mkdir(parents=True, exist_ok=True)
        path = inside(env.ctx.workspace, args.get("path"))
        content = args.get("content")
        if not isinstance(content, str):
            raise ToolError("`content` must be a string")
        data = content.encode()
        if len(data) > MAX_WRITE_BYTES:
            raise ToolError(f"content is over {MAX_WRITE_BYTES} bytes")
        path.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(path.write_bytes, data)
        return f"wrote {len(data)} bytes to {args['path']}"


class SaveArtifact:
    name = "save_artifact"
    description = (
        "Save a file as an artifact of the task (a report, a log, a diff) for the user to download. "
        "Give either `content` or the `path` of a file in the working directory."
    )
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "artifact file name, e.g. report.md"},
            "content": {"type": "string"},
            "path": {"type": "string", "description": "a file in the working directory"},
            "media_type": {"type": "string"},
        },
        "required": ["name"],
    }

    async def run(self, args: dict[str, Any], env: ToolEnv) -> str:
        name = args.get("name")
        if not isinstance(name, str) or not name.strip() or name.startswith("/") or ".." in name.split("/"):
            raise ToolError("`name` must be a relative file name")
        if isinstance(args.get("content"), str):
            data = args["content"].encode()
        elif args.get("path"):
            path = inside(env.ctx.workspace, args["path"])
            if not path.is_file():
                raise ToolError(f"{args['path']}: no such file")
            data = await asyncio.to_thread(path.read_bytes)
        else:
            raise ToolError("give `content` or `path`")
        media_type = args.get("media_type") or mimetypes.guess_type(name)[0] or "application/octet-stream"
        await env.ctx.save_artifact(name, data, str(media_type))
        return f"saved artifact {name} ({len(data)} bytes)"
