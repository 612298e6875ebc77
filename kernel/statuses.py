"""A task's statuses: the one list every floor uses (the store's state machine decides the
moves between them, `store/statemachine.py`)."""

from __future__ import annotations

import enum

__all__ = ["TERMINAL", "UNFINISHED", "TaskStatus"]


class TaskStatus(enum.StrEnum):
    pending = "pending"
    running = "running"
    requires_input = "requires_input"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"


# StrEnum members hash and compare as their values: `"failed" in TERMINAL` holds.
TERMINAL = frozenset({TaskStatus.completed, TaskStatus.failed, TaskStatus.cancelled})
UNFINISHED = (TaskStatus.pending, TaskStatus.running, TaskStatus.requires_input)
