"""Modules small enough to read in one sitting: no file over 600 lines, no function over 80.

Measured from the source with `ast` (a function runs from its `def` to its last line; a
nested function counts inside its parent too). Migrations are frozen history: not measured.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.test_floors import LEVEL, ROOT

MAX_FILE = 600
MAX_FUNCTION = 80


def sources() -> list[Path]:
    return sorted(p for pkg in LEVEL for p in (ROOT / pkg).rglob("*.py") if "migrations" not in p.parts)


def function_lengths(source: str) -> list[tuple[str, int, int]]:
    """(name, first line, length) of every function and method."""
    return [
        (node.name, node.lineno, (node.end_lineno or node.lineno) - node.lineno + 1)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    ]


def test_no_file_is_over_600_lines() -> None:
    sizes = {p.relative_to(ROOT): len(p.read_text().splitlines()) for p in sources()}
    assert {str(p): n for p, n in sizes.items() if n > MAX_FILE} == {}


def test_no_function_is_over_80_lines() -> None:
    long = [
        f"{p.relative_to(ROOT)}:{line} {name}() is {n} lines"
        for p in sources()
        for name, line, n in function_lengths(p.read_text())
        if n > MAX_FUNCTION
    ]
    assert long == []


def test_the_measure_counts_a_function_from_def_to_its_last_line() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION))
    assert function_lengths(f"def f():\n{body}\n") == [("f", 1, MAX_FUNCTION + 1)]
