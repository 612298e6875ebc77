"""The audit log and exports on the wire (`/api/v1/audit`, `/api/v1/tasks/history`,
`/api/v1/tasks/export`): the models, and the `client.audit` resource."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel

from sdk.resources import Call, M, _Resource, endpoint  # pyright: ignore[reportPrivateUsage]
from sdk.transport import API, clean

__all__ = ["AUDIT_FORMATS", "Audit", "AuditOut", "AuditPage", "ExportFormat"]

ExportFormat = Literal["jsonl", "csv"]
AUDIT_FORMATS: tuple[str, ...] = ("jsonl", "csv")
# The CSV columns of `GET /audit/export?format=csv` (details as one JSON cell).
CSV_COLUMNS = ("id", "at", "actor", "actor_kind", "source", "action", "target_kind", "target_id", "details")


class AuditOut(BaseModel):
    id: str
    at: datetime
    actor: str
    actor_kind: str
    source: str
    action: str
    target_kind: str | None
    target_id: str | None
    details: dict[str, Any]


class AuditPage(BaseModel):
    items: list[AuditOut]
    next_cursor: str | None


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


class Audit(_Resource[M]):
    """The audit log (admin): `GET /audit`."""

    @endpoint
    def list(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        target_kind: str | None = None,
        target_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Call[AuditPage]:
        """A page, newest first; `action` may end in `*` (`task.*`)."""
        params = {
            "actor": actor,
            "action": action,
            "target_kind": target_kind,
            "target_id": target_id,
            "since": _iso(since),
            "until": _iso(until),
            "limit": limit,
            "cursor": cursor,
        }
        return Call("GET", f"{API}/audit", AuditPage.model_validate, params=clean(params))
