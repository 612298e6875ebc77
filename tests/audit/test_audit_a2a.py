"""A2A sends and cancels (a2a-sdk's own client, live control plane, SQLite and PostgreSQL)
are recorded with the calling key and the `a2a` surface."""

from __future__ import annotations

from a2a.types.a2a_pb2 import CancelTaskRequest

from tests.a2a.conftest import Plane, a2a_client, collect, message


async def test_a2a_send_and_cancel_are_recorded(plane: Plane) -> None:
    async with a2a_client(plane, plane.operator, streaming=False) as client:
        request = message("later", skill="echo")
        request.configuration.return_immediately = True
        (sent,) = await collect(client, request)
        await client.cancel_task(CancelTaskRequest(id=sent.task.id))
    with plane.api() as c:
        items = c.get("/audit", params={"target_id": sent.task.id}).json()["items"]
    assert [(e["action"], e["actor_kind"], e["source"]) for e in items] == [
        ("task.cancel", "key", "a2a"),
        ("task.create", "key", "a2a"),
    ]
    assert items[0]["actor"] == items[1]["actor"] != "anonymous"
    assert items[1]["details"]["agent"] == "echo"
