"""`GET /tasks?failure=CLASS` as SQL: failed tasks whose error code is one of the class's.

A pure function of the code (kernel/failures.py), so nothing is stored. A common class is
served by `ix_tasks_status_id` (status, id), newest first, filtering as it reads; a rare one
by the partial `ix_tasks_error_code` (error_code, id) (migration 0010 has the figures). The
explicit `error_code IS NOT NULL` lets the planner use that partial index.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlmodel import col

from kernel import errors, failures
from kernel.statuses import TaskStatus
from store.models import Task

__all__ = ["failure_clause"]


def failure_clause(cls: str) -> sa.ColumnElement[Any]:
    """The WHERE clause for tasks that failed with a code of class `cls`."""
    if cls not in failures.CLASSES:
        raise errors.Invalid(
            f"unknown failure class {cls!r}; use one of {', '.join(failures.CLASSES)}",
            code="invalid_failure_class",
        )
    code = col(Task.error_code)
    match = code.in_(failures.codes_of(cls))
    if cls == failures.FALLBACK:  # a code nobody listed falls back to this class
        match = sa.or_(match, code.not_in(sorted(failures.KNOWN_CODES)))
    return sa.and_(col(Task.status) == TaskStatus.failed.value, code.is_not(None), match)
