"""A worker's claim answer (board_api/claims.py): assembled from its items exactly as the
models' own JSON, and built ahead, while a hand-off's commit is awaited, only where the
agent's row it was built from still holds."""

from __future__ import annotations

import json
from typing import Any

import pytest

from board_api import claims
from sdk.exchange import ExchangeOut, Problem, ReportOut
from sdk.schemas import ClaimedOut, ClaimOut
from store import catalog
from store.db import Database
from store.handoff import create_handing_off
from store.work import Claimed
from tests.board_api.test_parked_claim import Worker, _create, _park, _parked, _setup
from tests.store.test_pg_round_trips import _alone


@pytest.fixture(autouse=True)
def _no_agent_known(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts as a new server does: no agent's answer part known (a test before
    may have left one of the same name, which the row check would refuse anyway)."""
    monkeypatch.setattr(claims, "_agents", {})


async def _hand_off(db: Database) -> Claimed:
    """A task created while the worker's claim is parked (the route's own `_parked`)."""
    claim = _park(db, Worker())
    await _parked(db, claim)
    task = await create_handing_off(db, _create)
    (handed,) = claim.result()
    assert handed.task.id == task.id
    return handed


def _model(c: Claimed, lease_seconds: float = 60) -> ClaimedOut:
    """The item as the route built it before board_api/claims.py."""
    return ClaimedOut.model_validate(json.loads(claims.items([_fresh(c)], lease_seconds)[0]))


def _fresh(c: Claimed) -> Claimed:
    return Claimed(c.task, c.agent, c.token)


async def test_answers_are_the_models_own_json(db: Database) -> None:
    await _setup(db)
    first, second = await _hand_off(db), await _hand_off(db)
    second.task.checkpoint = {"step": 2}  # a retried task's: carried in the answer
    parts = claims.items([first, second], 60)
    models = [_model(first), _model(second)]
    assert models[1].checkpoint == {"step": 2} and models[0].agent is not None
    assert claims.claim_answer(parts).body == ClaimOut(tasks=models).model_dump_json().encode()
    reports = [
        ReportOut(id="t1", status="completed"),
        ReportOut(id="t2", problem=Problem(status=409, code="stale_lease", detail="x")),
    ]
    assert (
        claims.exchange_answer(reports, parts).body
        == ExchangeOut(reports=reports, tasks=models).model_dump_json().encode()
    )
    assert claims.claim_answer([]).body == b'{"tasks":[]}'


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_a_handed_off_answer_is_built_while_the_commit_is_awaited(db: Database) -> None:
    """PostgreSQL (store/born.py): from the agent's second hand-off on, the answer comes
    built; it is the one built after the commit would be."""
    _alone(db)  # rows read after the commit: the wait to build in (store.db.Tx.deferrable)
    await _setup(db)
    first = await _hand_off(db)
    assert first.rendered is None  # the agent's answer part is not known yet
    claims.items([first], 60)  # the route's answer: now it is
    handed = await _hand_off(db)
    assert isinstance(handed.rendered, claims.Ahead)
    assert claims.items([handed], 60) == [handed.rendered.json]
    assert ClaimedOut.model_validate_json(handed.rendered.json) == _model(handed)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_an_agent_edited_since_gets_its_answer_built_anew(db: Database) -> None:
    _alone(db)
    await _setup(db)
    claims.items([await _hand_off(db)], 60)
    async with db.tx() as tx:
        await catalog.update_agent(tx, "a", {"instructions": "edited"})
    handed = await _hand_off(db)
    assert isinstance(handed.rendered, claims.Ahead)  # built with the agent's row before
    (part,) = claims.items([handed], 60)
    agent: Any = json.loads(part)["agent"]
    assert agent["instructions"] == "edited"
    assert part != handed.rendered.json
    # And the next one is built ahead with the edited row.
    again = await _hand_off(db)
    assert isinstance(again.rendered, claims.Ahead)
    assert claims.items([again], 60) == [again.rendered.json]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_a_failing_build_ahead_leaves_the_answer_to_the_route(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    _alone(db)
    await _setup(db)
    claims.items([await _hand_off(db)], 60)

    def broken(lease_seconds: float) -> Any:
        def render(*_: Any) -> Any:
            raise RuntimeError("boom")

        return render

    monkeypatch.setattr(claims, "ahead", broken)
    handed = await _hand_off(db)
    assert handed.rendered is None
    assert ClaimedOut.model_validate_json(claims.items([handed], 60)[0]) == _model(handed)


async def test_an_unchanged_agents_part_is_built_once(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every claim answer carries its agent: built from the row once, and again only when
    the row has changed."""
    await _setup(db)
    built: list[str] = []
    real = claims.wire.agent_out

    def counted(agent: Any) -> Any:
        built.append(agent.name)
        return real(agent)

    monkeypatch.setattr(claims.wire, "agent_out", counted)
    for _ in range(3):
        (part,) = claims.items([_fresh(await _hand_off(db))], 60)
    assert built == ["a"] and json.loads(part)["agent"]["instructions"] is None
    async with db.tx() as tx:
        await catalog.update_agent(tx, "a", {"instructions": "edited"})
    (part,) = claims.items([_fresh(await _hand_off(db))], 60)
    assert built == ["a", "a"] and json.loads(part)["agent"]["instructions"] == "edited"
