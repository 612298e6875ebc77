"""Fixtures for the Slack tests: the fake Slack, the fake model providers (the meta agent's
and the worker's), and a live control plane with Slack configured against the fake."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.fakes.llm_server import ChatLLM, FakeLLM
from tests.fakes.slack_server import FakeSlack
from tests.integrations.slack_support import SECRET
from tests.support import LiveServer, wait_for


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def worker_llm() -> Iterator[FakeLLM]:
    """The model of the `llm` agents the worker runs."""
    with FakeLLM() as fake:
        yield fake


@pytest.fixture
def slack_db(db_url: str) -> str:
    """The test's database (tests/conftest.py empties every table between tests)."""
    return db_url


@pytest.fixture
def start_plane(
    server_factory: Any, slack_db: str, slack: FakeSlack, llm: ChatLLM
) -> Iterator[Callable[..., LiveServer]]:
    """Start a control plane with Slack (HTTP mode unless told) on the test's database."""

    started: list[LiveServer] = []

    def start(**overrides: Any) -> LiveServer:
        settings: dict[str, Any] = {
            "model": "openai/fake",
            "llm_api_base": llm.api_base,
            "llm_api_key": "sk-test",
            "slack_bot_token": "xoxb-test",
            "slack_signing_secret": SECRET,
            "slack_api_base": slack.api_base,
            "slack_update_interval": 0.3,
            **overrides,
        }
        plane: LiveServer = server_factory(slack_db, **settings)
        started.append(plane)
        return plane

    yield start
    # Let meta-agent turns still in flight end before the servers stop (a turn cut off at
    # shutdown is a different test's business).
    for plane in started:
        slack = getattr(plane.app.state, "slack", None)
        service = getattr(slack, "service", None)
        if plane.thread.is_alive() and service is not None:
            wait_for(lambda service=service: not service._jobs, 30, "Slack turns in flight to end")
