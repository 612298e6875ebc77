"""kernel/failures.py: every code the code base can fail a task with has a class, and the
sentence the card, the detail and the CLI show is built from class + code + message."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from kernel import failures
from kernel.failures import FailureClass
from sdk.schemas import ErrorOut, TaskOut

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["kernel", "store", "sdk", "tools", "worker", "integrations", "board_api", "meta_agent", "cli"]
# ... and the worker's own `_fail(code, message)` (worker/task.py), which reports a failure.
RAISERS = {"TaskFailed", "ModelCallFailed", "BrokenStream", "_fail"}
# The worker reports a cancel as `fail(code="cancelled")`; the server records it as cancelled.
NOT_FAILURES = {"cancelled"}
# Listed so that a runtime from elsewhere may fail with a class's own name as its code.
CLASS_NAMES_AS_CODES = {"tool_error", "invalid_input"}


def _text(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _codes_in(tree: ast.AST) -> set[str]:
    """String codes given to the exceptions that fail a task, to the worker's `fail` call,
    as a row's `error_code`, or as a `code` variable the worker reports."""
    found: set[str] = set()
    # `code = "not_found"` in a class body is an API error's code (kernel/errors.py), not a task's.
    class_level = {id(s) for c in ast.walk(tree) if isinstance(c, ast.ClassDef) for s in c.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if name in RAISERS and node.args:
                found.add(_text(node.args[0]) or "")
            for i, arg in enumerate(node.args[:-1]):  # self.call(self.api.fail, "worker_error", ...)
                if isinstance(arg, ast.Attribute) and arg.attr == "fail":
                    found.add(_text(node.args[i + 1]) or "")
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if key is not None and _text(key) == "error_code":
                    found.add(_text(value) or "")
        elif isinstance(node, ast.Assign) and id(node) not in class_level:
            target, value = node.targets[0], node.value
            if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple):
                pairs = list(zip(target.elts, value.elts, strict=False))
            else:
                pairs = [(target, value)]
            for t, v in pairs:
                if isinstance(t, ast.Name) and t.id == "code":
                    found.add(_text(v) or "")
    found.discard("")
    return found


def produced_codes() -> set[str]:
    codes: set[str] = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            codes |= _codes_in(ast.parse(path.read_text(), str(path)))
    return codes


def test_every_code_the_code_base_produces_has_a_class() -> None:
    produced = produced_codes()
    # The walk must find the codes of every producer, or the check below proves nothing.
    assert {"worker_lost", "worker_error", "runtime_error", "policy_violation", "timeout"} <= produced
    assert {"provider_auth_failed", "empty_response", "mcp_unavailable", "command_failed"} <= produced
    unclassed = produced - NOT_FAILURES - failures.KNOWN_CODES
    assert not unclassed, f"add these codes to kernel/failures.py: {sorted(unclassed)}"
    stale = failures.KNOWN_CODES - produced - CLASS_NAMES_AS_CODES
    assert not stale, f"kernel/failures.py lists codes nothing produces: {sorted(stale)}"


def test_classes_are_the_seven_and_each_has_codes_a_label_and_a_next_step() -> None:
    assert set(failures.CLASSES) == {
        "policy_violation",
        "missing_prerequisites",
        "tool_error",
        "worker_lost",
        "provider_error",
        "timeout",
        "invalid_input",
    }
    assert failures.CLASSES == tuple(c.value for c in FailureClass)
    for cls in failures.CLASSES:
        assert failures.codes_of(cls), cls
        assert all(failures.failure_class(code) == cls for code in failures.codes_of(cls))
        assert failures.label(cls) != cls
    steps = {failures.failure_hint(failures.codes_of(c)[0], "x").split(" (")[0] for c in failures.CLASSES}
    assert len(steps) == len(failures.CLASSES), "each class has its own next step"


def test_an_unknown_code_falls_back_to_the_documented_class() -> None:
    assert failures.FALLBACK == "tool_error"
    assert failures.failure_class("something_new") == "tool_error"
    assert "falls back to `tool_error`" in (failures.__doc__ or "")


@pytest.mark.parametrize(
    ("code", "message", "hint"),
    [
        (
            "policy_violation",
            "policy rule deny_commands: the pattern `rm` blocks the command `rm -rf /`",
            "Check the agent's policy: rule `deny_commands` matched `rm -rf /` (pattern `rm`).",
        ),
        (
            "policy_violation",
            "policy rule max_steps: the task used its 3 model steps",
            "Check the agent's policy: rule `max_steps`: the task used its 3 model steps.",
        ),
        (
            "worker_lost",
            "the lease expired\n3 times.",
            "Check the worker is running and can reach the control plane, then retry "
            "(worker_lost: the lease expired 3 times).",
        ),
        ("command_not_found", "kubectl: command not found", "Install the command on the worker's machine"),
        ("timeout", "", "Raise the time limit or make the task smaller, then retry (timeout)."),
    ],
)
def test_the_sentence_is_built_from_class_code_and_message(code: str, message: str, hint: str) -> None:
    assert failures.failure_hint(code, message).startswith(hint)


def test_a_long_message_is_cut() -> None:
    assert len(failures.failure_hint("command_failed", "x" * 5000)) < 400


def _task(status: str, error: ErrorOut | None) -> TaskOut:
    return TaskOut.model_validate(
        {
            **dict.fromkeys(["agent", "team", "requested_by", "parent_id", "retry_of", "phase"]),
            **dict.fromkeys(["worker_id", "lease_expires_at", "result", "pending_input"]),
            **dict.fromkeys(["started_at", "finished_at", "duration_seconds"]),
            "id": "t",
            "queue": "q",
            "prompt": "p",
            "parameters": {},
            "source": "api",
            "status": status,
            "attempt": 1,
            "max_attempts": 1,
            "cancel_requested": False,
            "error": error,
            "inputs": {},
            "usage": {},
            "last_seq": 1,
            "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z",
        }
    )


def test_the_task_json_carries_the_class_only_when_the_task_failed() -> None:
    failed = _task("failed", ErrorOut(code="command_failed", message="exit code 2"))
    dumped = failed.model_dump(mode="json")
    assert dumped["failure_class"] == "tool_error"
    assert dumped["failure_hint"].endswith("(command_failed: exit code 2).")
    assert TaskOut.model_validate(dumped).failure_class == "tool_error"  # a client parses it back
    assert _task("completed", None).failure_class is None
    assert _task("cancelled", ErrorOut(code="cancelled", message="")).model_dump()["failure_hint"] is None
