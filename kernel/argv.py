"""The one rule for a `command` agent's argv template: a parameter is a whole argument or nothing.

A template element that is exactly `{name}` (or `{name:spec}`) becomes the value, as one
argv element. Every other element is passed exactly as written: a value is never spliced
into a larger string, so no form of shell (`bash -o pipefail -c`, `env bash -c`, `sudo sh
-c`, `python -c`, `ssh host ...`) can receive it as code. Inside a larger element the value
is read from the environment instead (`"$PARAM_HOST"`, `os.environ["PARAM_HOST"]`).

Shared by the store (an agent that embeds a parameter is refused when saved) and the
worker (which refuses such an agent saved before the rule, rather than run it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["WHOLE", "embedded", "env_name", "whole"]

WHOLE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([^{}]*))?\}")
# `{{` / `}}` are text (Jinja, Go templates, docker --format), so `{{host}}` is no placeholder.
_TOKEN = re.compile(r"\{\{|\}\}|" + WHOLE.pattern)


def whole(element: str) -> tuple[str, str | None] | None:
    """`(name, spec)` when the element is exactly one placeholder, else None."""
    m = WHOLE.fullmatch(element)
    return (m.group(1), m.group(2)) if m else None


def env_name(name: str) -> str:
    """The environment variable a parameter arrives in: `PARAM_<NAME>`."""
    return "PARAM_" + re.sub(r"[^A-Za-z0-9_]", "_", name).upper()


def _variable(name: str) -> str:
    return "TASK_PROMPT" if name == "prompt" else env_name(name)


def embedded(template: Iterable[str], names: Iterable[str]) -> str | None:
    """Why the template is refused, or None: the first element that embeds one of `names`."""
    wanted = set(names)
    for i, element in enumerate(template):
        if whole(element):
            continue
        for m in _TOKEN.finditer(element):
            if m.group(1) in wanted:
                return (
                    f"command[{i}] {element[:200]!r} embeds {m.group(0)} in a larger argument; a parameter "
                    f'is either a whole argument ("{{{m.group(1)}}}") or read from the environment '
                    f'("${_variable(m.group(1))}")'
                )
    return None
