"""Logging set-up for the long-running processes (`serve`, `worker start`).

`META_AGENT_LOG_FORMAT=json` gives one JSON object per line with the fields log
aggregators index on; `task_id`, `worker_id`, `queue` and `agent` passed as `extra=` become
top-level keys, so every line about a task can be found by its id.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from kernel.redact import redact

CONTEXT_FIELDS = ("task_id", "worker_id", "queue", "agent", "status", "code")
_QUIET = {"httpx": logging.WARNING, "alembic": logging.WARNING, "uvicorn.access": logging.WARNING}


class RedactingFormatter(logging.Formatter):
    """Text lines with secrets masked (a library's error may quote a key or a DSN)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for field in CONTEXT_FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                out[field] = value
        if record.exc_info:
            out["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(out, default=str)


def setup(fmt: str = "text", level: str = "INFO") -> None:
    """Configure the root logger once, before any library (mcp, uvicorn) does."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name, lvl in _QUIET.items():
        logging.getLogger(name).setLevel(lvl)
