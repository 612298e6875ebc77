"""`ask_user`: a question for a human. The loop parks the task in Requires Input; the answer
comes back as this call's result when the task resumes (on any worker)."""

from __future__ import annotations

from typing import Any

from worker.builtins.base import ToolEnv, ToolError
from worker.shapes import as_list

__all__ = ["AskUser", "question_of"]


def question_of(args: dict[str, Any]) -> tuple[str, list[str] | None]:
    """The question and the choices of an ask_user call (ToolError when malformed)."""
    question = args.get("question")
    if not isinstance(question, str) or not question.strip():
        raise ToolError("`question` must be a non-empty string")
    raw = args.get("choices")
    choices = as_list(raw)
    if raw is not None and not (choices is not None and all(isinstance(c, str) for c in choices)):
        raise ToolError("`choices` must be a list of strings")
    return question, [str(c) for c in choices or ()] or None


class AskUser:
    name = "ask_user"
    description = (
        "Ask the user a question and wait for the answer (may take hours). Use it when you need "
        "a decision or information only the user has. Give `choices` when the answer is one of a few."
    )
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": {
            "question": {"type": "string", "description": "the question, self-contained"},
            "choices": {"type": "array", "items": {"type": "string"}, "description": "possible answers"},
        },
        "required": ["question"],
    }

    async def run(self, args: dict[str, Any], env: ToolEnv) -> str:
        raise ToolError("ask_user is answered by a human, not run")  # the loop handles it
