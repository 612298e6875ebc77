"""Making a schedule due without waiting for the clock: its `next_run_at` is set in the
past, as a control plane that was down would find it; the ticker does the rest."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from store.db import sync_url
from store.models import utcnow
from store.schedule_models import Schedule

_sched = Schedule.__table__


def make_due(db_url: str, *names: str, ago: float = 1.0) -> None:
    """Set `next_run_at` of the named schedules (all when none is named) `ago` seconds back."""
    engine = sa.create_engine(sync_url(db_url))
    try:
        with engine.begin() as conn:
            stmt = sa.update(_sched).values(next_run_at=utcnow() - timedelta(seconds=ago))
            if names:
                stmt = stmt.where(_sched.c.name.in_(names))
            conn.execute(stmt)
    finally:
        engine.dispose()


def schedule_body(name: str = "morning", **kw: object) -> dict[str, object]:
    body: dict[str, object] = {
        "name": name,
        "agent": "echo",
        "queue": "q1",
        "cron": "0 8 * * 1-5",
        "timezone": "Europe/Berlin",
        "prompt": "Summarise the night's alerts",
    }
    body.update(kw)
    return body
