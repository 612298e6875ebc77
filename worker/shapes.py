"""JSON from the wire or from a model, narrowed to the shape the code is about to use.

`isinstance(value, dict)` tells the type checker only `dict[Unknown, Unknown]`; these say
what a JSON object or array is (string keys, values of any JSON type), without checking the
items, which the callers do where they use them.
"""

from __future__ import annotations

from typing import Any, cast

__all__ = ["as_dict", "as_list"]


def as_dict(value: object) -> dict[str, Any] | None:
    """`value` when it is a JSON object, else None."""
    # A dict decoded from JSON has string keys; its values are whatever JSON holds.
    return cast("dict[str, Any]", value) if isinstance(value, dict) else None


def as_list(value: object) -> list[Any] | None:
    """`value` when it is a JSON array, else None."""
    return cast("list[Any]", value) if isinstance(value, list) else None
