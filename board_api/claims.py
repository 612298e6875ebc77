"""A worker's claim answer (`claim`, `exchange`): built as it goes out, or ahead of time.

A task handed to a worker's parked claim on PostgreSQL is inserted already claimed
(store/born.py). Its commit then keeps PostgreSQL busy for ~0.7 ms of a dispatch on a
2-core box, and this process has nothing else to do for the request meanwhile. So the
worker's answer for that task (the task as claimed, its agent, its lease) is built then
(`ahead`, run by store.db.Tx.meanwhile) instead of after the commit, on the worker's way:
measured under issue #15, the claim's answer was written ~0.15 ms sooner.

The agent's part comes from answers built before (`_agents`, by agent name), for every
claim answer: built from the row once, and again only when the row has changed (~9 fewer
Python calls per exchanged task). An answer built ahead is used only if the agent row the
creation's statement read is the very row it was built with (`items`): an agent edited
meanwhile gets its answer built anew. The answer's JSON is the models' own (`ClaimOut`,
`ExchangeOut`), assembled from each claimed task's `ClaimedOut`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from pydantic import TypeAdapter
from starlette.responses import Response

from board_api import wire
from sdk.exchange import ReportOut
from sdk.schemas import AgentOut, ClaimedOut
from store.models import Agent, Task, values_of
from store.work import Claimed

__all__ = ["Ahead", "ahead", "claim_answer", "exchange_answer", "items"]

# Agents whose answer part is kept for answers built ahead: the agents in use.
AGENTS_KEPT = 256

_AGENT_COLS = tuple(c.name for c in Agent.__table__.columns)  # pyright: ignore[reportAttributeAccessIssue]
_REPORTS = TypeAdapter(list[ReportOut])
_ITEM = TypeAdapter(ClaimedOut)
# Agent name: (the row an answer part was built from, that part).
_agents: dict[str, tuple[dict[str, Any], AgentOut]] = {}


class Ahead(NamedTuple):
    """One claimed task's answer, built before its commit ended."""

    json: bytes  # its ClaimedOut
    agent: dict[str, Any]  # the agent row it was built with


def ahead(lease_seconds: float) -> Callable[[Task, str], Ahead | None]:
    """store.handoff.Parked's `render`: a task's answer from its agent's last known row,
    None when that is not known yet (the first claim of the agent in this process)."""

    def render(task: Task, token: str) -> Ahead | None:
        known = _agents.get(task.agent) if task.agent is not None else None
        if known is None:
            return None
        row, agent = known
        return Ahead(_one(task, agent, token, lease_seconds), row)

    return render


def items(claimed: Sequence[Claimed], lease_seconds: float) -> list[bytes]:
    """Each claimed task's answer (its ClaimedOut's JSON): the one built ahead where it
    still holds, else built now."""
    out: list[bytes] = []
    built: dict[int, AgentOut] = {}  # tasks of one agent share its row (store.work)
    for c in claimed:
        agent = c.agent
        row = values_of(agent, _AGENT_COLS) if agent is not None else None
        ready = c.rendered
        if isinstance(ready, Ahead) and ready.agent == row:
            out.append(ready.json)
            continue
        part = None
        if agent is not None and row is not None:
            part = built.get(id(agent))
            if part is None:
                known = _agents.get(agent.name)
                if known is not None and known[0] == row:  # unchanged: its part as built
                    part = known[1]
                else:
                    part = _remember(agent.name, row, wire.agent_out(agent))
                built[id(agent)] = part
        out.append(_one(c.task, part, c.token, lease_seconds))
    return out


def claim_answer(parts: Sequence[bytes]) -> Response:
    """`ClaimOut(tasks=...)`, from its items' JSON."""
    return _json(b'{"tasks":[' + b",".join(parts) + b"]}")


def exchange_answer(reports: list[ReportOut], parts: Sequence[bytes]) -> Response:
    """`ExchangeOut(reports=..., tasks=...)`, from its items' JSON."""
    return _json(b'{"reports":' + _REPORTS.dump_json(reports) + b',"tasks":[' + b",".join(parts) + b"]}")


def _one(task: Task, agent: AgentOut | None, token: str, lease_seconds: float) -> bytes:
    item = ClaimedOut(
        task=wire.task_out(task),
        agent=agent,
        token=token,
        lease_seconds=lease_seconds,
        checkpoint=task.checkpoint,
    )
    return _ITEM.dump_json(item)


def _remember(name: str, row: dict[str, Any], part: AgentOut) -> AgentOut:
    _agents.pop(name, None)  # re-inserted: the most recent last
    if len(_agents) >= AGENTS_KEPT:
        del _agents[next(iter(_agents))]
    _agents[name] = (row, part)
    return part


def _json(body: bytes) -> Response:
    return Response(body, media_type="application/json")
