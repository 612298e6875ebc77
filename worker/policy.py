"""An agent's policy (`agent["policy"]`), enforced by the `llm` runtime on every tool call.

    allowed_tools     [names]   calls to any other tool fail the task
    deny_commands     [regex]   a bash command matching one fails the task (re.search)
    require_approval  [names]   the call waits for a human: approve runs it, deny tells the model
    max_steps         int       model calls per task
    max_seconds       number    active run time (time spent waiting for a human not counted)
    max_cost          number    model cost in USD, as litellm prices it
    http_allow        [hosts/networks]  the only destinations of http_request (kernel.netguard)
    http_deny         [hosts/networks]  destinations http_request refuses (checked first)

A violation is `TaskFailed("policy_violation", ...)` naming the rule: the model does not get
to try around a deny rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from worker.runtime import TaskFailed
from worker.shapes import as_dict

__all__ = ["Policy"]


def _violation(rule: str, detail: str) -> TaskFailed:
    return TaskFailed("policy_violation", f"policy rule {rule}: {detail}")


def _number(policy: dict[str, Any], key: str) -> float | None:
    value = policy.get(key)
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise TaskFailed("invalid_policy", f"policy.{key} must be a number, not {value!r}") from exc


@dataclass
class Policy:
    allowed_tools: frozenset[str] | None = None
    deny_commands: list[re.Pattern[str]] = field(default_factory=list[re.Pattern[str]])
    require_approval: frozenset[str] = frozenset()
    max_steps: int | None = None
    max_seconds: float | None = None
    max_cost: float | None = None

    @classmethod
    def of(cls, agent: dict[str, Any]) -> Policy:
        """The agent's policy; `TaskFailed("invalid_policy")` when it cannot be read."""
        raw = as_dict(agent.get("policy") or {})
        if raw is None:
            raise TaskFailed("invalid_policy", "the agent's policy must be an object")
        patterns: list[re.Pattern[str]] = []
        for pattern in raw.get("deny_commands") or ():
            try:
                patterns.append(re.compile(str(pattern)))
            except re.error as exc:
                raise TaskFailed("invalid_policy", f"deny_commands pattern {pattern!r}: {exc}") from exc
        allowed = raw.get("allowed_tools")
        steps = _number(raw, "max_steps")
        return cls(
            allowed_tools=None if allowed is None else frozenset(map(str, allowed)),
            deny_commands=patterns,
            require_approval=frozenset(map(str, raw.get("require_approval") or ())),
            max_steps=None if steps is None else int(steps),
            max_seconds=_number(raw, "max_seconds"),
            max_cost=_number(raw, "max_cost"),
        )

    def allows_tool(self, name: str) -> bool:
        return self.allowed_tools is None or name in self.allowed_tools

    def check_call(self, name: str, args: dict[str, Any]) -> None:
        """Raise the violation this call would be, if any."""
        if not self.allows_tool(name):
            allowed = ", ".join(sorted(self.allowed_tools or ())) or "none"
            raise _violation("allowed_tools", f"the tool `{name}` is not allowed (allowed: {allowed})")
        if name == "bash":
            command = str(args.get("command") or "")
            for pattern in self.deny_commands:
                if pattern.search(command):
                    raise _violation(
                        "deny_commands", f"the pattern `{pattern.pattern}` blocks the command `{command}`"
                    )

    def needs_approval(self, name: str) -> bool:
        return name in self.require_approval

    def check_budget(self, steps: int, seconds: float, cost: float) -> None:
        """Before another model call: raise when a budget is spent."""
        if self.max_steps is not None and steps >= self.max_steps:
            raise _violation("max_steps", f"the task used its {self.max_steps} model steps")
        if self.max_seconds is not None and seconds >= self.max_seconds:
            raise _violation("max_seconds", f"the task ran longer than {self.max_seconds:g} s")
        if self.max_cost is not None and cost >= self.max_cost:
            raise _violation("max_cost", f"the task cost ${cost:.4f}, over its ${self.max_cost:g} budget")
