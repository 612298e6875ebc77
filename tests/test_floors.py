"""The shape of the house: each floor imports only the floors below it, and nothing imports
in a circle. Read from the source with `ast` (every import, also those inside functions),
so an arrow back up fails here the day it is written, whoever writes it.

    kernel  <-  store  <-  sdk  <-  tools | worker | integrations | board_api  <-  meta_agent  <-  cli

`kernel` holds what every floor shares (settings, errors, statuses, redaction, network
rules, the model call); `sdk` is the typed HTTP client and the wire models. Two rules on
top of the floors: the worker and the MCP tools reach the control plane only over HTTP (no
`store`; `/mcp`'s key check is handed in by cli/compose.py), and the SDK does not need the
store's database code to talk to the API.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLOORS: list[set[str]] = [
    {"kernel"},
    {"store"},
    {"sdk"},
    {"tools", "worker", "integrations", "board_api"},
    {"meta_agent"},
    {"cli"},
]
LEVEL = {pkg: i for i, floor in enumerate(FLOORS) for pkg in floor}
FORBIDDEN = {("worker", "store"), ("sdk", "store"), ("tools", "store")}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Dotted names this file imports; `from pkg import name` gives `pkg.name`, which
    `graph` resolves to the submodule when there is one and to `pkg` otherwise."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            found.update(f"{stem}.{a.name}" for a in node.names)
    return {name for name in found if name.split(".")[0] in LEVEL}


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for pkg in LEVEL for p in (ROOT / pkg).rglob("*.py")}
    edges: dict[str, set[str]] = defaultdict(set)
    for mod, path in modules.items():
        for target in imports_of(path):
            while target not in modules and "." in target:
                target = target.rpartition(".")[0]
            if target in modules and target != mod:
                edges[mod].add(target)
    return edges


def floor_violations(edges: dict[str, set[str]]) -> list[str]:
    bad = []
    for mod, targets in edges.items():
        src = mod.split(".")[0]
        for target in targets:
            dst = target.split(".")[0]
            if src == dst:
                continue
            if LEVEL[dst] >= LEVEL[src] or (src, dst) in FORBIDDEN:
                bad.append(f"{mod} -> {target}")
    return sorted(bad)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for start in list(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on.add(start)
        while work:
            node, it = work[-1]
            nxt = next(it, None)
            if nxt is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        m = stack.pop()
                        on.discard(m)
                        comp.append(m)
                        if m == node:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
            elif nxt not in index:
                index[nxt] = low[nxt] = counter
                counter += 1
                stack.append(nxt)
                on.add(nxt)
                work.append((nxt, iter(sorted(edges.get(nxt, ())))))
            elif nxt in on:
                low[node] = min(low[node], index[nxt])
    return out


def test_every_floor_imports_only_the_floors_below_it() -> None:
    assert floor_violations(graph()) == []


def test_no_modules_import_each_other_in_a_circle() -> None:
    assert cycles(graph()) == []


def test_the_checks_catch_an_arrow_up_and_a_circle() -> None:
    # The checks themselves, on a made-up graph: they must be able to fail.
    edges = {"store.tasks": {"meta_agent.agent"}, "cli.a": {"cli.b"}, "cli.b": {"cli.a"}}
    assert floor_violations(edges) == ["store.tasks -> meta_agent.agent"]
    assert cycles(edges) == [["cli.a", "cli.b"]]
    assert floor_violations({"worker.main": {"store.db"}}) == ["worker.main -> store.db"]


if __name__ == "__main__":  # a quick look: python tests/test_floors.py
    edges = graph()
    print("\n".join(floor_violations(edges)) or "floors hold")
    for c in cycles(edges):
        print("circle:", " <-> ".join(c))
    sys.exit(0)
