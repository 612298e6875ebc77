from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.llm_server import FakeLLM


@pytest.fixture
def llm() -> Iterator[FakeLLM]:
    """A scripted fake OpenAI-compatible provider on a real socket."""
    with FakeLLM() as fake:
        yield fake
