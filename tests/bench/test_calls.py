"""The hot path's Python, counted: a creation and a worker's report-and-claim stay within
their budgets of Python calls on the server (bench/calls.py, the same app, socket and store
as `meta-agent serve`). Calls, not time: the count is the same from run to run on any box, so
the budget can be tight, and a change that adds per-request Python fails here, not in a
benchmark nobody reads.

Figures when set (2026-12-06): SQLite 341 / 218-225, PostgreSQL 491-498 / 400-430; before that day's
trims (FastAPI's per-request telemetry lookups, the Host check's parsing, per-column binding
calls, enum values and metric labels looked up per report) 409 / 260 and 558 / 442-460.
Later that day PostgreSQL's reports of an exchange became one statement (store.completions),
its rows and events passed as JSON documents instead of arrays: its exchange 433 -> 295; and
JSON values went as plain text instead of psycopg `Json` wrappers: creation 486 -> 456.
On the next day the fast path's connections left psycopg's async pipeline for libpq's calls
(store.pg_lean): creation 456 -> 374, exchange 260-294 -> 223-242.
Over budget? `python -m bench.calls --top 40` lists the functions called most per unit.
"""

from __future__ import annotations

import pytest

from bench import calls

# Per unit: a `POST /tasks`; a task's share of an exchange of 4 reports and a claim of 4.
# PostgreSQL's counts move more (its replica's hellos run beside, once a second).
BUDGETS = {"sqlite": (375, 245), "postgresql": (410, 280)}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_the_hot_path_stays_within_its_python_budget(
    backend: str, request: pytest.FixtureRequest
) -> None:
    if backend == "postgresql":
        request.getfixturevalue("pg_url")  # reachable, or skipped (failed in CI) as every store test
    got = await calls.measure(backend, 200, 4, repeat=0, phases=("create", "exchange_per_task"))
    create, exchange = BUDGETS[backend]
    assert got["create_calls"] <= create, got
    assert got["exchange_per_task_calls"] <= exchange, got
    # A floor too: a phase that stopped doing its work would pass any budget.
    assert got["create_calls"] > create / 2 and got["exchange_per_task_calls"] > exchange / 2, got
