"""Registers the matcher the meta agent's cassettes use (tests/meta_agent/test_cassettes.py)."""

from __future__ import annotations

from typing import Any


def pytest_recording_configure(config: Any, vcr: Any) -> None:
    from tests.meta_agent.cassette_support import MATCHER, conversation_matches

    vcr.register_matcher(MATCHER, conversation_matches)
