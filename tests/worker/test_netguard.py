"""`http_request` refuses cloud metadata and link-local addresses (redirects included) and
follows the agent's http_allow / http_deny policy; private networks stay reachable."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from worker.runtime import TaskContext, TaskFailed
from worker.tools import ToolEnv, ToolError
from worker.tools.http import HttpRequest
from worker.tools.netguard import Blocked, NetGuard


@pytest.mark.parametrize(
    "host",
    [
        "169.254.169.254",
        "::ffff:169.254.169.254",
        "[fe80::1]",
        "fd00:ec2::254",
        "0.0.0.0",
        "metadata.google.internal",
    ],
)
async def test_metadata_and_link_local_are_refused(host: str) -> None:
    with pytest.raises(Blocked):
        await NetGuard().check(host)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "10.1.2.3", "192.168.0.10"])
async def test_private_networks_stay_reachable_by_default(host: str) -> None:
    await NetGuard().check(host)  # raises if refused


async def test_policy_allow_and_deny() -> None:
    only_local = NetGuard({"http_allow": ["localhost"]})
    await only_local.check("localhost")
    with pytest.raises(Blocked, match="http_allow"):
        await only_local.check("127.0.0.2")
    nets = NetGuard({"http_allow": ["127.0.0.0/8"], "http_deny": ["127.0.0.9"]})
    await nets.check("localhost")  # resolves into the allowed network
    with pytest.raises(Blocked, match="http_deny"):
        await nets.check("127.0.0.9")
    with pytest.raises(Blocked, match="http_allow"):
        await nets.check("10.0.0.1")
    with pytest.raises(Blocked, match="http_deny"):
        await NetGuard({"http_deny": ["*.example.com"]}).check("vault.example.com")
    # A network named in http_allow opens a default-denied range on purpose.
    await NetGuard({"http_allow": ["169.254.0.0/16"]}).check("169.254.10.10")


def test_a_malformed_policy_entry_is_named() -> None:
    with pytest.raises(ValueError, match=r"http_deny: '10\.0\.0\.0/33'"):
        NetGuard({"http_deny": ["10.0.0.0/33"]})


class _Redirect(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/ok":
            body = b"fine"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(302)
        self.send_header("Location", "http://169.254.169.254/latest/meta-data/iam/security-credentials/")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def redirector() -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Redirect)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)


def env(tmp_path: Path, policy: dict[str, Any] | None = None) -> ToolEnv:
    agent = {"name": "a", "policy": policy} if policy is not None else {"name": "a"}
    ctx = TaskContext(task={"id": "t1"}, agent=agent, token=1, workspace=tmp_path)
    return ToolEnv(ctx=ctx, call_id="c1", output=lambda _: None)


async def test_the_tool_checks_every_hop(redirector: str, tmp_path: Path) -> None:
    tool = HttpRequest()
    assert (await tool.run({"url": redirector + "/ok"}, env(tmp_path))).startswith("HTTP 200")
    with pytest.raises(ToolError, match=r"refused: 169\.254\.169\.254"):
        await tool.run({"url": redirector + "/steal"}, env(tmp_path))  # a redirect to metadata
    with pytest.raises(ToolError, match="refused"):
        await tool.run({"url": "http://169.254.169.254/latest/meta-data/"}, env(tmp_path))
    with pytest.raises(ToolError, match="http_allow"):
        await tool.run({"url": redirector + "/ok"}, env(tmp_path, {"http_allow": ["api.github.com"]}))
    with pytest.raises(TaskFailed) as failed:
        await tool.run({"url": redirector + "/ok"}, env(tmp_path, {"http_allow": ["a/b/c"]}))
    assert failed.value.code == "invalid_policy"
