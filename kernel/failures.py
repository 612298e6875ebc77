"""Failure classes: what kind of failure a failed task's `error_code` is, and what to do next.

The class is a pure function of the code, so it is never stored: the Task JSON computes it
(`sdk.schemas.TaskOut.failure_class`), `GET /tasks?failure=CLASS` becomes
`error_code IN (codes_of(CLASS))`, and `/metrics` counts failures by it as they happen.

Every code a runtime, the worker, the model layer or the reaper can give a failed task is
listed below (`tests/failures/test_classes.py` walks the source for them). A code nobody
listed (a runtime registered from outside, a newer worker) falls back to `tool_error`:
something the agent ran failed, which is what an unknown code is most likely to be.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping

__all__ = [
    "CLASSES",
    "FALLBACK",
    "KNOWN_CODES",
    "FailureClass",
    "codes_of",
    "failure_class",
    "failure_hint",
    "label",
]


class FailureClass(enum.StrEnum):
    """The classes, for typed options (CLI `--failure`, MCP `list_tasks(failure=...)`)."""

    policy_violation = "policy_violation"
    missing_prerequisites = "missing_prerequisites"
    tool_error = "tool_error"
    worker_lost = "worker_lost"
    provider_error = "provider_error"
    timeout = "timeout"
    invalid_input = "invalid_input"


# class -> (label, the codes of that class). The order is the order of the board's filter.
_TABLE: dict[str, tuple[str, tuple[str, ...]]] = {
    "policy_violation": ("Policy violation", ("policy_violation", "unsafe_command")),
    "missing_prerequisites": (
        "Missing prerequisites",
        (
            "no_agent",
            "unknown_runtime",
            "model_not_configured",
            "provider_key_missing",
            "team_unavailable",
            "sandbox_unavailable",
            "command_not_found",
            "mcp_unavailable",
            "missing_secret",
            "missing_prerequisites",
        ),
    ),
    "tool_error": ("Tool error", ("tool_error", "command_failed", "runtime_error", "invalid_result")),
    "worker_lost": ("Worker lost", ("worker_lost", "worker_error")),
    "provider_error": (
        "Model provider error",
        (
            "provider_error",
            "provider_unavailable",
            "provider_auth_failed",
            "model_not_found",
            "empty_response",
            "max_tokens",
        ),
    ),
    "timeout": ("Timeout", ("timeout",)),
    "invalid_input": (
        "Invalid input",
        (
            "invalid_input",
            "invalid_command",
            "invalid_policy",
            "invalid_mcp_server",
            "invalid_tool_choice",
            "context_overflow",
        ),
    ),
}

CLASSES: tuple[str, ...] = tuple(c.value for c in FailureClass)
FALLBACK = "tool_error"
_CLASS_OF: Mapping[str, str] = {code: cls for cls, (_, codes) in _TABLE.items() for code in codes}
KNOWN_CODES: frozenset[str] = frozenset(_CLASS_OF)


def failure_class(code: str) -> str:
    """The class of a failed task's error code; `FALLBACK` for a code nobody listed."""
    return _CLASS_OF.get(code, FALLBACK)


def codes_of(cls: str) -> tuple[str, ...]:
    """The known codes of a class (`KeyError` for an unknown class)."""
    return _TABLE[cls][1]


def label(cls: str) -> str:
    """The class in words, e.g. "Policy violation"."""
    return _TABLE[cls][0] if cls in _TABLE else cls


# The next step per class, and for a few codes a more precise one. Each reads as an order
# to the person looking at the failed task.
_NEXT_STEP: dict[str, str] = {
    "policy_violation": "Check the agent's policy",
    "missing_prerequisites": "Set up what the task needs, then retry",
    "tool_error": "Look at the tool's output in the steps, fix the cause, then retry",
    "worker_lost": "Check the worker is running and can reach the control plane, then retry",
    "provider_error": "Check the model provider (model name, key, status page), then retry",
    "timeout": "Raise the time limit or make the task smaller, then retry",
    "invalid_input": "Fix the agent's definition or the task's parameters, then retry",
}
_BY_CODE: dict[str, str] = {
    "unsafe_command": "Check the agent's command template",
    "provider_auth_failed": "Check the model provider's API key on the worker, then retry",
    "provider_key_missing": "Give the worker the model provider's API key, then retry",
    "model_not_found": "Check the agent's model name, then retry",
    "model_not_configured": "Set the agent's model, then retry",
    "command_not_found": "Install the command on the worker's machine, then retry",
    "missing_secret": "Set the secret (`meta-agent secrets set`) or the worker's variable, then retry",
    "missing_prerequisites": "Give the worker what the agent requires (`meta-agent agents check`), then retry",
    "max_tokens": "Raise max_tokens in the agent's provider settings, or ask for a shorter answer",
    "context_overflow": "Shorten the prompt or use a model with a larger context, then retry",
}
_RULE = re.compile(r"^policy rule (\w+): (.*)$", re.S)
_DENIED = re.compile(r"^the pattern `(.*)` blocks the command `(.*)`$", re.S)


def failure_hint(code: str, message: str) -> str:
    """One sentence from class + code + message: the next step, then what happened.

    "Check the agent's policy: rule `deny_commands` matched `rm -rf /` (pattern `rm`)."
    "Check the worker is running and can reach the control plane, then retry (worker_lost: ...)."
    """
    cls = failure_class(code)
    step = _BY_CODE.get(code) or _NEXT_STEP[cls]
    message = " ".join(message.split())
    if len(message) > 300:
        message = message[:299] + "…"
    rule = _RULE.match(message) if cls == FailureClass.policy_violation else None
    if rule is None:
        return f"{step} ({code}: {message.rstrip('.')})." if message else f"{step} ({code})."
    name, detail = rule.groups()
    denied = _DENIED.match(detail) if name == "deny_commands" else None
    if denied:
        return f"{step}: rule `{name}` matched `{denied.group(2)}` (pattern `{denied.group(1)}`)."
    return f"{step}: rule `{name}`: {detail.rstrip('.')}."
