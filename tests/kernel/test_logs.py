"""JSON log lines carry the task and worker ids as top-level fields."""

from __future__ import annotations

import json
import logging

from kernel.logs import JsonFormatter


def test_json_lines_carry_context_fields() -> None:
    record = logging.LogRecord("worker.task", logging.WARNING, __file__, 1, "task %s failed", ("t1",), None)
    record.task_id = "t1"
    record.worker_id = "w9"
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "task t1 failed" and line["level"] == "warning"
    assert line["task_id"] == "t1" and line["worker_id"] == "w9" and "queue" not in line
    assert line["ts"].endswith("+00:00")
