"""Matching and replaying recorded meta-agent conversations (vcrpy) despite volatile ids.

A model request of the meta agent carries the tool results it has seen so far: task ids,
timestamps, board links with the test server's port. None of that is the same twice, so a
request is matched on its *shape*: the person's messages, what the assistant said and which
tools it called, where the tool results are, and the tools offered; not on the tool results'
content, the tool-call arguments or the system prompt (a reworded prompt replays; re-record
to see how a real model takes it).

The replayed model then asks for, say, `stream_task` on the task id of the recording run.
`IdMap` learns, while matching, which recorded id stands for which live id (the ids in the
tool results, in order) and rewrites the ids in each replayed response, as a model reading
this run's tool results would have written them.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from typing import Any

__all__ = ["IDS", "MATCHER", "IdMap", "conversation_matches", "shape"]

MATCHER = "meta_agent_conversation"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _body(request: Any) -> dict[str, Any]:
    raw = request.body
    if isinstance(raw, bytes):
        raw = raw.decode()
    try:
        data = json.loads(raw or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def shape(request: Any) -> Any:
    """What identifies a model request of the conversation, without volatile values."""
    data = _body(request)
    messages: list[Any] = []
    for m in data.get("messages") or []:
        role = m.get("role")
        if role == "user":
            messages.append(("user", m.get("content")))
        elif role == "assistant":
            names = tuple((c.get("function") or {}).get("name") for c in m.get("tool_calls") or [])
            messages.append(("assistant", (m.get("content") or "").strip(), names))
        elif role == "tool":
            messages.append(("tool",))
    tools = sorted((t.get("function") or {}).get("name", "") for t in data.get("tools") or [])
    return messages, tools


def _tool_ids(request: Any) -> list[str]:
    ids: list[str] = []
    for m in _body(request).get("messages") or []:
        if m.get("role") == "tool":
            ids.extend(UUID.findall(str(m.get("content") or "")))
    return ids


class IdMap:
    """Recorded id -> live id, learnt from matched requests; applied to replayed responses."""

    def __init__(self) -> None:
        self.ids: dict[str, str] = {}

    def reset(self) -> None:
        self.ids.clear()

    def learn(self, live: Any, recorded: Any) -> None:
        now, then = _tool_ids(live), _tool_ids(recorded)
        if len(now) == len(then):
            for old, new in zip(then, now, strict=True):
                self.ids.setdefault(old, new)

    def rewrite(self, response: dict[str, Any]) -> dict[str, Any]:
        if not self.ids:
            return response
        out = copy.deepcopy(response)
        body = out.get("body") or {}
        text = body.get("string")
        if isinstance(text, bytes):
            body["string"] = self._sub(text.decode()).encode()
        elif isinstance(text, str):
            body["string"] = self._sub(text)
        return out

    def _sub(self, text: str) -> str:
        if not text.lstrip().startswith("data:"):
            return self._ids(text)
        return _rewrite_stream(text, self._ids)

    def _ids(self, text: str) -> str:
        return UUID.sub(lambda m: self.ids.get(m.group(0), m.group(0)), text)


def _rewrite_stream(body: str, sub: Callable[[str], str]) -> str:
    """`sub` applied to the streamed text and tool-call arguments of an SSE completion.

    A model streams an id in pieces (`"01a2"`, `"1b37-..."`), so each streamed string is
    joined, rewritten, and sent whole in its first chunk (the later chunks carry "").
    """
    events: list[Any] = []
    for block in body.split("\n\n"):
        line = block.strip()
        if line.startswith("data:") and line[5:].strip() != "[DONE]":
            try:
                events.append(json.loads(line[5:]))
                continue
            except ValueError:
                pass
        events.append(block)
    pieces: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for ev in events:
        if not isinstance(ev, dict):
            continue
        for choice in ev.get("choices") or []:
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str):
                pieces.setdefault((choice.get("index"), "content"), []).append(delta)
            for call in delta.get("tool_calls") or []:
                fn = call.get("function") or {}
                if isinstance(fn.get("arguments"), str):
                    pieces.setdefault((choice.get("index"), "call", call.get("index")), []).append(fn)
    for key, holders in pieces.items():
        field = "content" if key[1] == "content" else "arguments"
        whole = "".join(h[field] for h in holders)
        fixed = sub(whole)
        if fixed != whole:
            holders[0][field] = fixed
            for h in holders[1:]:
                h[field] = ""
    out = []
    for ev in events:
        out.append(f"data: {json.dumps(ev)}" if isinstance(ev, dict) else ev)
    return "\n\n".join(out)


IDS = IdMap()


def conversation_matches(live: Any, recorded: Any) -> None:
    """A vcrpy matcher: raises AssertionError when the two requests differ in shape."""
    a, b = shape(live), shape(recorded)
    if a != b:
        raise AssertionError(f"conversation differs: {a!r} != {b!r}")
    IDS.learn(live, recorded)
