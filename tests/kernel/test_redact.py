"""Errors never echo secrets: what a provider, a URL or a DSN quoted is masked before it
reaches a problem+json body, the board, a chat or a log line."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import httpx
import pytest

from kernel.logs import JsonFormatter, RedactingFormatter
from kernel.redact import MASK, redact, register
from tests.fakes.llm_server import ChatLLM, error
from tests.meta_agent.test_agent_chat import chat, of

LEAKY = [
    ("Incorrect API key provided: sk-proj-abcDEF0123456789.", "sk-proj-abcDEF0123456789"),
    ("GET https://api.example.com/v1?api_key=abcd1234efgh&page=2 failed", "abcd1234efgh"),
    ("connection to postgresql://admin:hunter2pass@db:5432/prod failed", "hunter2pass"),
    ('{"user": "ada", "password": "s3cr3t-value"}', "s3cr3t-value"),
    ("Authorization: Bearer ma_0123456789ab_abcdefghijklmnopqrstuvwxyz", "abcdefghijklmnopqrstuvwxyz"),
    ("slack answered invalid_auth for xoxb-1234-5678-abcdefgh", "xoxb-1234-5678-abcdefgh"),
    ("MY_SERVICE_TOKEN=tok_live_abcdefgh ./deploy.sh", "tok_live_abcdefgh"),
    # A webhook signing secret (Stripe/Svix style, as `meta-agent hooks create` prints ours).
    (
        "verifying with whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw failed",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    ),
]


@pytest.mark.parametrize(("text", "secret"), LEAKY)
def test_credentials_are_masked(text: str, secret: str) -> None:
    out = redact(text)
    assert secret not in out and MASK in out


@pytest.mark.parametrize(
    "text",
    [
        "token: Input should be a valid integer",  # a validation message about a field
        "the API key is not valid (unknown, revoked or mistyped)",
        "task tsk_01HXYZ failed: exit code 2",
        "",
    ],
)
def test_ordinary_messages_are_left_alone(text: str) -> None:
    assert redact(text) == text


def test_registered_secrets_are_masked_wherever_they_appear() -> None:
    register("plain-looking-value-42", "short")  # too short to register: would blank out words
    assert redact("the value plain-looking-value-42 leaked") == f"the value {MASK} leaked"
    assert redact("a short answer") == "a short answer"


def test_settings_register_their_secrets() -> None:
    from kernel.settings import Settings

    Settings(llm_api_key="custom-provider-credential-1", database_url="postgresql://u:dbpass-9876@h/x")
    assert MASK in redact("refused custom-provider-credential-1") and "dbpass-9876" not in redact(
        "pw dbpass-9876"
    )


def test_log_lines_are_masked() -> None:
    try:
        raise RuntimeError("could not connect to postgresql://app:topsecretpw@db/prod")
    except RuntimeError:
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "key was %s", ("sk-abcdefghijklmnop",), None
        )
        record.exc_info = sys.exc_info()
    line = JsonFormatter().format(record)
    assert "sk-abcdefghijklmnop" not in line and "topsecretpw" not in line
    assert json.loads(line)["message"] == f"key was {MASK}"
    text = RedactingFormatter("%(message)s").format(record)
    assert "sk-abcdefghijklmnop" not in text and "topsecretpw" not in text


async def test_a_provider_quoting_the_refused_key_does_not_reach_the_chat(
    server_factory: Any, db_url: str, llm: ChatLLM
) -> None:
    secret = "sk-test-9f8e7d6c5b4a39281706"
    srv = server_factory(db_url, model="openai/fake", llm_api_base=llm.api_base, llm_api_key=secret)
    llm.play(error(401, f"Incorrect API key provided: {secret}. Find your key in the dashboard."))
    frames = await chat(srv.url, {"message": "check the cluster"})
    [err] = of(frames, "error")
    assert err["code"] == "provider_auth_failed"
    assert secret not in json.dumps(frames) and MASK in err["message"]
    # A bad key sent to the API is not echoed back either.
    async with httpx.AsyncClient(base_url=srv.url + "/api/v1") as http:
        r = await http.get("/tasks", headers={"Authorization": f"Bearer {secret}"})
    assert secret not in r.text


def _one_by_one(text: str) -> str:
    """The masking as it was before the one-pass check: every pattern substituted in turn."""
    from kernel import redact as r

    for secret in sorted(r._known, key=len, reverse=True):  # pyright: ignore[reportPrivateUsage]
        text = text.replace(secret, MASK)
    for pattern in r._PATTERNS:  # pyright: ignore[reportPrivateUsage]
        text = pattern.sub(MASK, text)
    text = r._URL_PASSWORD.sub(lambda m: f"{m['pre']}{MASK}{m['at']}", text)  # pyright: ignore[reportPrivateUsage]
    return r._ASSIGN.sub(lambda m: f"{m['key']}{m['sep']}{m['q']}{MASK}", text)  # pyright: ignore[reportPrivateUsage]


SAMPLES = [
    *(text for text, _ in LEAKY),
    "the quick brown fox",
    "token: Input should be a valid integer",
    "TOKEN=abcdefgh and BEARER   abcdefghij and bearer x",
    'headers: {"Authorization": "Bearer sk-ant-abcdefghijklmnop", "X-Api-Key": "zzzzzzzz"}',
    "redis://:p4ssw0rd@cache:6379/0 then https://user:pw@host/path?access_key=AKIAABCDEFGHIJKLMNOP",
    "ghp_0123456789abcdefghijABCDEFGHIJ github_pat_0123456789abcdefghij_xyz xapp-1-abc-def",
    "sk-short sk-abcdefgh* ma_abcdef_12345678 ma_ABCDEF_12345678 whsec_short whsec_0123456789abcdef",
    "a registered-secret-value-1 inside, and registered-secret-value-10 too",
    "password='hunter22' passwd=\"x\" secret: 'abcd' apikey=abc api-key=abcd; api_key=abcd,",
    "\u00e9t\u00e9 \u2014 pas de secret ici, juste du texte \U0001f600",
    "x" * 5000 + " sk-abcdefghijklmnop " + "y" * 5000,
]


@pytest.mark.parametrize("text", SAMPLES)
def test_the_one_pass_check_masks_exactly_as_the_patterns_one_by_one(text: str) -> None:
    register("registered-secret-value-1", "registered-secret-value-10")
    assert redact(text) == _one_by_one(text)


def test_data_is_masked_as_before() -> None:
    from kernel.redact import redact_data

    data = {
        "text": "Bearer abcdefghijkl",
        "n": 3,
        "ok": True,
        "none": None,
        "f": 1.5,
        "api_key": "abcd",
        "token": "abc",  # too short to be a credential: left to `redact`
        "Secret": 12345678,  # not a string: kept
        "nested": [{"password": "hunter22"}, ("sk-abcdefghijklmnop", 1)],
    }
    assert redact_data(data) == {
        "text": MASK,
        "n": 3,
        "ok": True,
        "none": None,
        "f": 1.5,
        "api_key": MASK,
        "token": "abc",
        "Secret": 12345678,
        "nested": [{"password": MASK}, [MASK, 1]],
    }
