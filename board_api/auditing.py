"""Who acts, for the audit log (store/audit.py): a route that changes state takes `Who`
and records in its own transaction.

The actor is the caller's credential: a key (by its name), the open loopback server's
anonymous caller, or `serve`'s embedded worker. The source is the surface it came through:
the SDK sends `X-Meta-Agent-Source` (cli, mcp, slack, meta_agent...), the board sends
`board`; anything else is `api`, and then a new task's own `source` field names it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import Depends, Request

from board_api.deps import principal
from store.audit import Actor, actor_of
from store.auth import Principal
from store.models import Task, values_of

__all__ = ["SOURCE_HEADER", "Who", "actor_of", "change", "task_details", "who"]

SOURCE_HEADER = "X-Meta-Agent-Source"
_SOURCE = re.compile(r"[a-z][a-z0-9_-]{0,31}")


async def who(request: Request, p: Annotated[Principal, Depends(principal)]) -> Actor:
    """The caller as an audit actor (the principal is the one the scope check resolved:
    FastAPI caches a dependency per request)."""
    raw = request.headers.get(SOURCE_HEADER, "").strip().lower()
    return actor_of(p, raw if _SOURCE.fullmatch(raw) else "api")


Who = Annotated[Actor, Depends(who)]


def change(before: object, after: Mapping[str, Any]) -> dict[str, Any]:
    """A compact before/after of the fields a request changed (store.audit shortens long
    values and masks credentials)."""
    return {
        "before": {k: getattr(before, k, None) for k in after},
        "after": dict(after),
    }


def task_details(task: Task) -> dict[str, Any]:
    """What the audit log keeps of a new task: where it goes and for whom (not its prompt,
    which is the task's own record and may be long)."""
    fields = ("agent", "team", "queue", "source", "requested_by", "parent_id", "retry_of")
    return {k: v for k, v in values_of(task, fields).items() if v is not None}
