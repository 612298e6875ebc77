"""What this worker has, for agents' prerequisites (see store/prereqs.py on the server).

The worker reports executables on its PATH, the names (never the values) of its
environment variables, the MCP servers it can reach (`META_AGENT_WORKER_MCP`, a comma list
of names) and its environment label (`META_AGENT_WORKER_ENVIRONMENT`; unset: its queue's).
They go with a claim in full when they changed, as a digest otherwise, and are scanned again
every `RESCAN` seconds. Right before a task runs, its needs are checked once more against
what is here now: anything gone fails the task as `missing_prerequisites`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["ENV_ENVIRONMENT", "ENV_MCP", "Inventory", "missing_message"]

ENV_ENVIRONMENT = "META_AGENT_WORKER_ENVIRONMENT"
ENV_MCP = "META_AGENT_WORKER_MCP"
RESCAN = 30.0
# Sent in full again at least this often, in case the control plane lost them (a new
# replica's cache, a worker row removed while the worker was away).
RESEND = 300.0
MAX_BINS = 20_000


def _bins(path: str) -> list[str]:
    found: set[str] = set()
    for folder in path.split(os.pathsep):
        if not folder:
            continue
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for e in entries:
            try:
                if e.is_file() and os.access(e.path, os.X_OK) and len(e.name) <= 128:
                    found.add(e.name)
            except OSError:
                continue
    return sorted(n for n in found if all(c.isalnum() or c in "_.+-" for c in n))[:MAX_BINS]


class Inventory:
    """This worker's capabilities; `environ` defaults to this process's environment."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = environ
        self._scanned: dict[str, Any] | None = None
        self._scanned_at = 0.0
        self._sent_digest: str | None = None
        self._sent_at = 0.0

    @property
    def environ(self) -> Mapping[str, str]:
        return os.environ if self._environ is None else self._environ

    @property
    def environment(self) -> str | None:
        return self.environ.get(ENV_ENVIRONMENT) or None

    @property
    def mcp(self) -> list[str]:
        return sorted({m.strip() for m in self.environ.get(ENV_MCP, "").split(",") if m.strip()})

    def scan(self) -> dict[str, Any]:
        """What is here now, with its digest (the wire's `Capabilities`)."""
        env = self.environ
        data: dict[str, Any] = {
            "bins": _bins(env.get("PATH", "")),
            "env": sorted(k for k in env if k.isidentifier() and len(k) <= 128)[:5000],
            "mcp": self.mcp,
            "environment": self.environment,
        }
        raw = json.dumps(data, sort_keys=True).encode()
        data["digest"] = hashlib.sha256(raw).hexdigest()[:32]
        return data

    async def claim_fields(self) -> dict[str, Any]:
        """What a claim carries: the capabilities when they changed, else their digest."""
        now = time.monotonic()
        if self._scanned is None or now - self._scanned_at > RESCAN:
            # Off the event loop: a stat per file on PATH takes tens of ms.
            self._scanned, self._scanned_at = await asyncio.to_thread(self.scan), now
        digest = str(self._scanned["digest"])
        if digest != self._sent_digest or now - self._sent_at > RESEND:
            return {"capabilities": self._scanned}
        return {"capabilities_digest": digest}

    def sent(self, fields: Mapping[str, Any]) -> None:
        """A claim carrying `fields` was answered: the control plane has them."""
        caps = fields.get("capabilities")
        if isinstance(caps, dict):
            self._sent_digest, self._sent_at = str(caps.get("digest")), time.monotonic()  # pyright: ignore[reportUnknownMemberType, reportUnknownArgumentType]

    def missing(self, needs: Iterable[str]) -> list[str]:
        """The tokens of `needs` this worker does not meet right now (PATH looked up anew)."""
        env = self.environ
        out: list[str] = []
        for token in needs:
            kind, _, name = token.partition(":")
            if kind == "bin":
                ok = shutil.which(name, path=env.get("PATH", "")) is not None
            elif kind == "env":
                ok = name in env
            elif kind == "mcp":
                ok = name in self.mcp
            elif kind == "environment":
                # Without a label of its own the worker runs its queue's environment, which
                # the control plane matched when it handed the task over.
                ok = self.environment in (None, name)
            else:
                ok = False
            if not ok:
                out.append(token)
        return out


_KIND_WORDS = {
    "bin": "executable",
    "env": "environment variable",
    "mcp": "MCP server",
    "environment": "environment",
}


def missing_message(tokens: Iterable[str]) -> str:
    """The failure's message: each missing item on its own."""
    items: list[str] = []
    for t in tokens:
        kind, _, name = t.partition(":")
        items.append(f"{_KIND_WORDS.get(kind, kind)} `{name}`")
    return "this worker is missing what the agent requires: " + "; ".join(items)
