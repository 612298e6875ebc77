"""Property-based checks of the whole REST API against its own OpenAPI schema.

schemathesis generates requests (valid and invalid) for every operation; the server must
never answer 5xx and every documented response must match its schema. Bounded examples per
operation keep this inside `make test`. Streams and the long polls (claim, exchange) are
excluded: a generated request could legitimately wait there for a long time.

(schemathesis' own pytest plugin does not run on pytest 9.2, so operations are
parametrised here from the app's schema and driven through Hypothesis directly.)
"""

from __future__ import annotations

import shutil

import hypothesis
import pytest
import schemathesis
from schemathesis.specs.openapi.checks import response_schema_conformance

from cli.compose import create_app
from kernel.settings import Settings
from tests.support import LiveServer

EXAMPLES = 15
# Long polls: a generated call may legitimately wait up to its `wait_seconds` (120 s) once
# another generated call has created the queue it names. The exchange, like the claim, has
# tests of its own (tests/board_api/test_exchange.py).
EXCLUDED = ("/stream", "/claim", "/exchange")

SPEC = create_app(Settings()).openapi()
SCHEMA = schemathesis.openapi.from_dict(SPEC)
LABELS = sorted(
    f"{method.upper()} {path}"
    for path, ops in SPEC["paths"].items()
    for method in ops
    if not path.endswith(EXCLUDED)
)


@pytest.fixture(scope="module")
def fuzz_server(sqlite_template, tmp_path_factory):  # type: ignore[no-untyped-def]
    from tests.support import free_port

    db = tmp_path_factory.mktemp("fuzz") / "fuzz.db"
    shutil.copy(sqlite_template, db)
    srv = LiveServer(Settings(database_url=f"sqlite:///{db}", port=free_port(), embedded_worker=False))
    srv.start()
    with srv.client() as c:  # something real to find, besides the random ids
        c.post("/worker-queues", json={"name": "q1"})
        c.post("/agents", json={"name": "echo", "runtime": "noop", "default_queue": "q1"})
        tid = c.post("/tasks", json={"agent": "echo", "prompt": "p"}).json()["id"]
        c.post(f"/tasks/{tid}/cancel")
    yield srv
    srv.stop()


@pytest.mark.parametrize("label", LABELS)
def test_api_never_errors_and_matches_its_schema(fuzz_server: LiveServer, label: str) -> None:
    operation = SCHEMA.find_operation_by_label(label)
    assert operation is not None, label

    @hypothesis.given(case=operation.as_strategy())
    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(hypothesis.HealthCheck),
        derandomize=True,
        database=None,
    )
    def check(case) -> None:  # type: ignore[no-untyped-def]
        response = case.call(base_url=fuzz_server.url, timeout=10)
        assert response.status_code < 500, f"{label}: {response.status_code} {response.text[:500]}"
        case.validate_response(response, checks=[response_schema_conformance])

    check()


def unbounded_integers(node: object, where: str) -> list[str]:
    """Paths of integer schemas without a maximum, following $refs into components."""
    found: list[str] = []
    seen: set[str] = set()

    def walk(n: object, at: str) -> None:
        if isinstance(n, list):
            for i, v in enumerate(n):
                walk(v, f"{at}/{i}")
        if not isinstance(n, dict):
            return
        ref = n.get("$ref")
        if isinstance(ref, str) and ref not in seen:
            seen.add(ref)
            walk(SPEC["components"]["schemas"][ref.rsplit("/", 1)[-1]], ref)
        if n.get("type") == "integer" and "maximum" not in n and "exclusiveMaximum" not in n:
            found.append(at)
        for key, value in n.items():
            walk(value, f"{at}/{key}")

    walk(node, where)
    return found


def test_every_integer_a_client_sends_has_an_upper_bound() -> None:
    # SQLite stores 64-bit integers: 2**63 in a body was an OverflowError, a 500 (found by
    # the fuzzing above in CI on POST /workers/{id}/heartbeat). A bound in the schema makes
    # it a 422 and documents the range.
    unbounded = []
    for path, ops in SPEC["paths"].items():
        for method, op in ops.items():
            for param in op.get("parameters", []):
                unbounded += unbounded_integers(param.get("schema", {}), f"{method} {path} ?{param['name']}")
            unbounded += unbounded_integers(op.get("requestBody", {}), f"{method} {path} body")
    assert unbounded == []
