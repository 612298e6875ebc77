"""Load a catalog file (queues and agents, YAML or JSON) into the store, idempotently."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

from kernel import errors
from kernel.llm_settings import provider_problem
from store import catalog
from store.db import Tx
from store.models import Agent, WorkerQueue

__all__ = ["apply_catalog", "read_catalog"]

# Whatever an agent row has, less what the store sets itself: a column added to the model
# (requires, secrets...) is settable from a catalog file without touching this list.
AGENT_FIELDS = frozenset(Agent.model_fields) - {"id", "created_at", "updated_at"}


def read_catalog(path: str | Path) -> dict[str, Any]:
    text = Path(path).read_text()
    if str(path).endswith(".json"):
        data = json.loads(text)
    else:
        import yaml

        data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise errors.Invalid(f"{path}: expected a mapping with `queues` and/or `agents`", code="bad_catalog")
    return cast(dict[str, Any], data)  # a YAML/JSON mapping: isinstance leaves its types unknown


async def apply_catalog(tx: Tx, data: dict[str, Any]) -> dict[str, list[str]]:
    """Create missing queues, then create or replace each agent. Returns what changed."""
    done: dict[str, list[str]] = {"queues": [], "agents_created": [], "agents_updated": []}
    queues: list[dict[str, Any]] = data.get("queues") or []
    agents: list[dict[str, Any]] = data.get("agents") or []
    for q in queues:
        row = await catalog.create_queue(
            tx,
            WorkerQueue(**{k: v for k, v in q.items() if k in ("name", "description", "environment")}),
            exist_ok=True,
        )
        done["queues"].append(row.name)
    for a in agents:
        unknown = set(a) - AGENT_FIELDS
        if unknown:
            raise errors.Invalid(
                f"agent {a.get('name')!r}: unknown field(s) {', '.join(sorted(unknown))}", code="bad_catalog"
            )
        problem = "provider" in a and provider_problem(a["provider"])
        if problem:
            raise errors.Invalid(f"agent {a.get('name')!r}: {problem}", code="bad_catalog")
        agent, created = await catalog.upsert_agent(tx, dict(a))
        done["agents_created" if created else "agents_updated"].append(agent.name)
    return done
