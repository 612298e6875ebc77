"""`make run` seeds the store from examples/agents.yaml (store/seed.py): the example catalog
must load, and a catalog may set every field an agent has."""

from __future__ import annotations

from pathlib import Path

import pytest

from kernel import errors
from store import seed
from store.db import Database
from store.models import Agent

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "agents.yaml"


async def test_the_example_catalog_loads(db: Database) -> None:
    data = seed.read_catalog(EXAMPLES)
    async with db.tx() as tx:
        done = await seed.apply_catalog(tx, data)
    assert sorted(done["agents_created"]) == sorted(a["name"] for a in data["agents"])


def test_a_catalog_may_set_every_field_of_an_agent() -> None:
    settable = set(Agent.model_fields) - {"id", "created_at", "updated_at"}
    assert settable <= seed.AGENT_FIELDS


async def test_an_unknown_field_is_refused_by_name(db: Database) -> None:
    with pytest.raises(errors.Invalid, match="unknown field"):
        async with db.tx() as tx:
            await seed.apply_catalog(tx, {"agents": [{"name": "a", "runtime": "noop", "colour": "red"}]})
