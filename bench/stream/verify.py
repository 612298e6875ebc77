""" "Every event stored once": the task_events rows against what the senders sent."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from store.db import sync_url
from store.models import Task, TaskEvent


def check(
    db_url: str, sent: dict[str, int], seen: dict[str, int], follower_problems: dict[str, Any]
) -> dict[str, Any]:
    """Per task: log seqs 1..N without gap or repeat, the sender's numbers 1..sent exactly once,
    the task completed; per followed task: the follower saw every one, in order."""
    events, tasks = TaskEvent.__table__, Task.__table__
    engine = sa.create_engine(sync_url(db_url))
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(events.c.task_id, events.c.seq, events.c.kind, events.c.data).where(
                    events.c.task_id.in_(list(sent))
                )
            ).all()
            status = dict(
                conn.execute(sa.select(tasks.c.id, tasks.c.status).where(tasks.c.id.in_(list(sent)))).all()
            )
    finally:
        engine.dispose()
    return judge(rows, status, sent, seen, follower_problems)


def judge(
    rows: Sequence[Any],
    status: dict[str, Any],
    sent: dict[str, int],
    seen: dict[str, int],
    follower_problems: dict[str, Any],
) -> dict[str, Any]:
    """`rows`: (task_id, seq, kind, data) of the stored events; `status`: task id -> status."""
    seqs: dict[str, list[int]] = {tid: [] for tid in sent}
    numbers: dict[str, list[int]] = {tid: [] for tid in sent}
    for tid, seq, kind, data in rows:
        seqs[tid].append(seq)
        if kind == "message_delta":
            numbers[tid].append(int(data["n"]))
    problems: dict[str, str] = {}
    for tid, n in sent.items():
        s, got = sorted(seqs[tid]), sorted(numbers[tid])
        if s != list(range(1, len(s) + 1)):
            problems[tid] = f"log seqs not 1..{len(s)} without gaps or repeats"
        elif got != list(range(1, n + 1)):
            dup = len(got) - len(set(got))
            problems[tid] = f"stored {len(got)} deltas ({dup} duplicates) for {n} sent"
        elif getattr(status.get(tid), "value", status.get(tid)) != "completed":
            problems[tid] = f"task {status.get(tid)}, not completed"
    missed = {tid: f"follower saw {seen[tid]} of {sent[tid]}" for tid in seen if seen[tid] != sent.get(tid)}
    stored = sum(len(v) for v in numbers.values())
    return {
        "sent": sum(sent.values()),
        "stored": stored,
        "tasks_ok": len(sent) - len(problems),
        "store_problems": dict(list(problems.items())[:10]),
        "followers_ok": len(seen) - len(missed.keys() | follower_problems.keys()),
        "follower_problems": dict(list({**missed, **follower_problems}.items())[:10]),
        "ok": not problems and not missed and not follower_problems and stored == sum(sent.values()),
    }
