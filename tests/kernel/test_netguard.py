"""`http_request` refuses loopback, the control plane, cloud metadata and link-local
addresses (redirects included, IPv4 carried in IPv6 too) unless the policy names them,
follows the agent's http_allow / http_deny policy, and connects to the address it checked;
private networks stay reachable."""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from kernel.netguard import Blocked, NetGuard, embedded_ipv4
from worker.builtins import ToolEnv, ToolError
from worker.builtins.http import HttpRequest
from worker.runtime import TaskContext, TaskFailed


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


@pytest.mark.parametrize("host", ["10.1.2.3", "192.168.0.10", "172.16.5.4", "fd12::1"])
async def test_private_networks_stay_reachable_by_default(host: str) -> None:
    await NetGuard().check(host)  # raises if refused


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "localhost", "127.1.2.3", "::1", "[::1]", "0.0.0.0", "0.1.2.3"]
)
async def test_loopback_is_refused_by_default(host: str) -> None:
    with pytest.raises(Blocked, match="loopback"):
        await NetGuard().check(host)


async def test_loopback_is_reachable_when_the_policy_names_it() -> None:
    await NetGuard({"http_allow": ["127.0.0.1"]}).check("127.0.0.1")
    await NetGuard({"http_allow": ["127.0.0.0/8", "::1"]}).check("localhost")
    await NetGuard({"http_allow": ["localhost"]}).check("localhost")
    with pytest.raises(Blocked, match="loopback"):  # a glob opens nothing refused by default
        await NetGuard({"http_allow": ["local*"]}).check("localhost")


async def test_the_control_plane_is_refused_unless_named(fake_dns: dict[str, list[str]]) -> None:
    fake_dns["plane.internal"] = ["10.9.8.7"]
    fake_dns["alias.internal"] = ["10.9.8.7"]
    for plane in ("http://10.9.8.7:8080", "http://plane.internal:8080/"):
        guard = NetGuard(control_plane=plane)
        for host in ("10.9.8.7", "plane.internal", "alias.internal"):
            with pytest.raises(Blocked, match="control plane"):
                await guard.check(host)
        await guard.check("10.9.8.6")
        await NetGuard({"http_allow": ["10.9.8.7"]}, control_plane=plane).check("plane.internal")


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


def carrying(v4: str) -> dict[str, str]:
    """`v4` inside every IPv6 form that embeds an IPv4 address."""
    n = int(ipaddress.IPv4Address(v4))
    six = ipaddress.IPv6Address
    return {
        "mapped": f"::ffff:{v4}",
        "translated": str(six((0xFFFF << 32) | n)),
        "compatible": str(six(n)),
        "nat64": f"64:ff9b::{v4}",
        "nat64-local/96": str(six((0x64FF9B0001 << 80) | n)),
        "nat64-local/48": str(six((0x64FF9B0001 << 80) | ((n >> 16) << 64) | ((n & 0xFFFF) << 40))),
        "nat64-local/64": str(six((0x64FF9B0001 << 80) | (n << 24))),
        "6to4": str(six((0x2002 << 112) | (n << 80) | 1)),
        "teredo-server": str(six((0x20010000 << 96) | (n << 64) | 1)),
        "teredo-client": str(six((0x20010000 << 96) | (0x08080808 << 64) | (n ^ 0xFFFFFFFF))),
        "isatap": str(six((0x20010DB8 << 96) | (0x00005EFE << 32) | n)),
        "isatap-global": str(six((0x20010DB8 << 96) | (0x02005EFE << 32) | n)),
    }


@pytest.mark.parametrize("v4", ["169.254.169.254", "127.0.0.1"])
@pytest.mark.parametrize("form", list(carrying("1.2.3.4")))
async def test_an_ipv4_address_inside_ipv6_is_checked_as_ipv4(v4: str, form: str) -> None:
    address = carrying(v4)[form]
    assert ipaddress.IPv4Address(v4) in embedded_ipv4(ipaddress.IPv6Address(address))
    with pytest.raises(Blocked, match=re.escape(v4)):
        await NetGuard().check(address)
    with pytest.raises(Blocked, match=re.escape(v4)):  # opening IPv6 does not open what it carries
        await NetGuard({"http_allow": ["::/0"]}).check(f"[{address}]")
    await NetGuard().check(carrying("8.8.8.8")[form])  # a public address inside stays reachable


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
    local = {"http_allow": ["127.0.0.1", "169.254.0.0/16"]}
    with pytest.raises(ToolError, match=r"refused: .*loopback"):
        await tool.run({"url": redirector + "/ok"}, env(tmp_path))
    assert (await tool.run({"url": redirector + "/ok"}, env(tmp_path, local))).startswith("HTTP 200")
    with pytest.raises(ToolError, match=r"refused: 169\.254\.169\.254"):
        await tool.run({"url": redirector + "/steal"}, env(tmp_path, {"http_allow": ["127.0.0.1"]}))
    with pytest.raises(ToolError, match="refused"):
        await tool.run({"url": "http://169.254.169.254/latest/meta-data/"}, env(tmp_path))
    with pytest.raises(ToolError, match="http_allow"):
        await tool.run({"url": redirector + "/ok"}, env(tmp_path, {"http_allow": ["api.github.com"]}))
    with pytest.raises(TaskFailed) as failed:
        await tool.run({"url": redirector + "/ok"}, env(tmp_path, {"http_allow": ["a/b/c"]}))
    assert failed.value.code == "invalid_policy"


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Names this test's resolver answers (each answer list is served in turn, the last one
    repeating); everything else goes to the real resolver. The process edge: every lookup
    of this process (the guard's and any HTTP library's) goes through socket.getaddrinfo."""
    answers: dict[str, list[str]] = {}
    real = socket.getaddrinfo
    lookups: dict[str, int] = {}

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in answers:
            return real(host, port, *args, **kwargs)
        i = lookups[name] = lookups.get(name, -1) + 1
        ip = answers[name][min(i, len(answers[name]) - 1)]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, int(port or 0)))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


class _Says(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = self.server.says  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def two_servers() -> Iterator[int]:
    """One port, two servers: 127.0.0.2 says `checked`, 127.0.0.1 (the control plane, say) `rebound`."""
    checked = ThreadingHTTPServer(("127.0.0.2", 0), _Says)
    port = checked.server_address[1]
    rebound = ThreadingHTTPServer(("127.0.0.1", port), _Says)
    checked.says, rebound.says = b"checked", b"rebound"  # type: ignore[attr-defined]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (checked, rebound)]
    for t in threads:
        t.start()
    try:
        yield port
    finally:
        for srv in (checked, rebound):
            srv.shutdown()
            srv.server_close()
        for t in threads:
            t.join(5)


async def test_the_connection_goes_to_the_address_that_was_checked(
    fake_dns: dict[str, list[str]], two_servers: int, tmp_path: Path
) -> None:
    # The first answer passes the policy; any later one points at loopback (DNS rebinding).
    fake_dns["rebind.test"] = ["127.0.0.2", "127.0.0.1"]
    policy = {"http_allow": ["127.0.0.2"]}
    text = await HttpRequest().run({"url": f"http://rebind.test:{two_servers}/"}, env(tmp_path, policy))
    assert text.startswith("HTTP 200") and text.endswith("checked")
