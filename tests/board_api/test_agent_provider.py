"""An agent's `provider` settings are checked when the agent is saved (a 422 naming the
field), never hold a key, and are stored as written."""

from __future__ import annotations

from pathlib import Path

import pytest

from kernel.errors import Invalid
from kernel.llm_settings import meta_agent_config
from kernel.settings import Settings
from store.db import Database
from store.seed import apply_catalog, read_catalog
from tests.support import LiveServer

BASE = {"name": "ops", "runtime": "llm", "model": "openai/x", "tools": ["bash"]}


@pytest.mark.parametrize(
    ("provider", "field", "words"),
    [
        ({"api_key": "sk-live-123"}, "provider.api_key", "api_key_env"),
        ({"api_key_env": "sk-live-123"}, "provider.api_key_env", "NAME of an environment variable"),
        ({"api_key_env": "META_AGENT_API_KEY"}, "provider.api_key_env", "meta-agent's own"),
        ({"api_base": "file:///etc/passwd"}, "provider.api_base", "http"),
        ({"tool_choice": "any tool!"}, "provider.tool_choice", "auto, required, none, omit"),
        ({"max_tokens": 0}, "provider.max_tokens", "greater than or equal"),
        ({"retries": -1}, "provider.retries", "greater than or equal"),
        ({"timeout": 0}, "provider.timeout", "greater than"),
        ({"temperature": 3}, "provider.temperature", "less than or equal"),
        ({"input_cost_per_token": -1}, "provider.input_cost_per_token", "greater than or equal"),
        ({"base_url": "http://x"}, "provider.base_url", "Extra inputs"),
    ],
)
def test_bad_provider_settings_are_refused_naming_the_field(
    server: LiveServer, provider: dict, field: str, words: str
) -> None:
    with server.client() as c:
        r = c.post("/agents", json={**BASE, "provider": provider})
        assert r.status_code == 422, r.text
        problem = r.json()
        assert problem["code"] == "validation_error"
        assert any(e["field"] == field and words in e["message"] for e in problem["errors"]), problem
        assert "sk-live-123" not in r.text or field == "provider.api_key_env"
        assert c.get("/agents").json()["items"] == []


def test_provider_settings_are_stored_as_written_and_patched(server: LiveServer) -> None:
    provider = {
        "api_base": "http://127.0.0.1:8000/v1",
        "api_key_env": "LOCAL_API_KEY",
        "tool_choice": "auto",
        "first_tool_choice": "bash",
        "max_tokens": 512,
        "temperature": 0.0,
        "timeout": 30.0,
        "retries": 1,
        "backoff": 0.1,
        "input_cost_per_token": 0.0,
        "output_cost_per_token": 0.0,
    }
    with server.client() as c:
        assert c.post("/agents", json={**BASE, "provider": provider}).status_code == 201
        assert c.get("/agents/ops").json()["provider"] == provider
        assert c.patch("/agents/ops", json={"provider": {"max_tokens": 64}}).status_code == 200
        assert c.get("/agents/ops").json()["provider"] == {"max_tokens": 64}
        assert c.post("/agents", json={**BASE, "name": "plain"}).json()["provider"] == {}


async def test_a_catalog_file_cannot_hold_a_key(tmp_path: Path, db: Database) -> None:
    path = tmp_path / "agents.yaml"
    path.write_text("agents:\n  - {name: ops, runtime: llm, model: openai/x, provider: {api_key: sk-1}}\n")
    with pytest.raises(Invalid, match="api_key_env") as refused:
        async with db.tx() as tx:
            await apply_catalog(tx, read_catalog(path))
    assert refused.value.code == "bad_catalog" and "sk-1" not in str(refused.value)
    async with db.tx() as tx:
        done = await apply_catalog(tx, {"agents": [{**BASE, "provider": {"api_key_env": "OPENAI_API_KEY"}}]})
    assert done["agents_created"] == ["ops"]


def test_the_meta_agents_model_settings_build_its_client() -> None:
    settings = Settings(
        model="openai/local",
        llm_api_base="http://worker-default/v1",
        model_api_base="http://127.0.0.1:8000/v1",
        model_first_tool_choice="list_agents",
        model_tool_choice="omit",
        model_max_tokens=256,
        model_retries=0,
        model_timeout=20,
    )
    config = meta_agent_config(settings)
    assert (config.model, config.api_base) == ("openai/local", "http://127.0.0.1:8000/v1")
    assert (config.first_tool_choice, config.tool_choice) == ("list_agents", "omit")
    assert (config.max_tokens, config.retries, config.timeout) == (256, 0, 20)
    with pytest.raises(ValueError, match="META_AGENT_MODEL_TOOL_CHOICE"):
        meta_agent_config(Settings(model="m", model_tool_choice="not a tool!"))
