"""A2A test harness: a live control plane with keys, an in-process worker, and the
a2a-sdk's own client (`a2a.client`) over real HTTP."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from a2a.client import Client, ClientConfig, create_client
from a2a.types.a2a_pb2 import ROLE_USER, Message, Part, SendMessageRequest, StreamResponse
from google.protobuf import struct_pb2
from google.protobuf.json_format import ParseDict

from sdk.client import AsyncControlPlaneClient
from tests.support import LiveServer
from worker.main import Worker

GREET = {
    "name": "greet",
    "description": "Greets someone by name",
    "runtime": "command",
    "default_queue": "q1",
    "command": ["python3", "-c", "import sys; print('hello', sys.argv[1])", "{who}"],
    "parameters": {"who": {"required": True, "description": "whom to greet"}},
}
SH = {
    "name": "sh",
    "description": "Runs a bash script",
    "runtime": "command",
    "default_queue": "q1",
    "command": ["bash", "-c", 'eval "$PARAM_SCRIPT"'],
    "parameters": {"script": {"required": True, "description": "bash code"}},
}
ECHO = {"name": "echo", "description": "Echoes the prompt", "runtime": "noop", "default_queue": "q1"}


@dataclass
class Plane:
    server: LiveServer
    admin: str
    operator: str
    viewer: str
    worker: str

    def api(self) -> httpx.Client:
        return self.server.client(headers={"authorization": f"Bearer {self.admin}"})


@pytest.fixture
def plane(server: LiveServer) -> Plane:
    """A live control plane (SQLite and PostgreSQL) with keys, queue q1, agents echo, greet, sh."""
    with server.client() as c:
        admin = c.post("/keys", json={"name": "root", "scopes": ["admin"]}).json()["key"]
    with server.client(headers={"authorization": f"Bearer {admin}"}) as c:
        keys = {
            s: c.post("/keys", json={"name": s, "scopes": [s]}).json()["key"]
            for s in ("operator", "viewer", "worker")
        }
        assert c.post("/worker-queues", json={"name": "q1"}).status_code == 201
        for agent in (ECHO, GREET, SH):
            assert c.post("/agents", json=agent).status_code == 201, agent
    return Plane(server, admin, keys["operator"], keys["viewer"], keys["worker"])


@asynccontextmanager
async def running_worker(plane: Plane, workspace: Path) -> AsyncIterator[Worker]:
    """An in-process worker on q1 against the live server, stopped cleanly at the end."""
    async with AsyncControlPlaneClient(plane.server.url, api_key=plane.worker, timeout=10) as client:
        worker = Worker(client, "q1", workspace_root=workspace, heartbeat_interval=0.5, claim_wait=1)
        stop = asyncio.Event()
        run = asyncio.create_task(worker.run(stop))
        try:
            yield worker
        finally:
            stop.set()
            await asyncio.wait_for(run, 20)


@asynccontextmanager
async def a2a_client(plane: Plane, key: str, *, streaming: bool) -> AsyncIterator[Client]:
    """The SDK's client, resolved from our agent card, with `key` as the bearer token."""
    async with httpx.AsyncClient(headers={"authorization": f"Bearer {key}"}, timeout=60) as http:
        client = await create_client(
            plane.server.url, client_config=ClientConfig(httpx_client=http, streaming=streaming)
        )
        try:
            yield client
        finally:
            await client.close()


def message(
    text: str, *, skill: str | None = None, task_id: str = "", data: dict[str, Any] | None = None
) -> SendMessageRequest:
    parts = [Part(text=text)]
    if data is not None:
        parts.append(Part(data=ParseDict(data, struct_pb2.Value())))
    metadata = ParseDict({"skill": skill}, struct_pb2.Struct()) if skill else None
    msg = Message(
        message_id=str(uuid.uuid4()), role=ROLE_USER, parts=parts, task_id=task_id, metadata=metadata
    )
    return SendMessageRequest(message=msg)


async def collect(client: Client, request: SendMessageRequest) -> list[StreamResponse]:
    return [item async for item in client.send_message(request)]
