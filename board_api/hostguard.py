"""DNS rebinding and cross-site requests: the `Host` and `Origin` rules for every route.

A web page the user visits can point its own name at 127.0.0.1 (DNS rebinding) and then talk
to an open loopback server as a same-origin page; or it can simply post a form to it
cross-site. Both are stopped here, in front of every route (REST, SSE, /chat, the board and
its files, /healthz, /metrics, /mcp, /slack/events), keys or not:

- `Host` must name this server (else 421 `misdirected_request`). Accepted:
  - the loopback names `127.0.0.1` (all of 127/8), `localhost`, `[::1]`, any port: only a
    page served from this machine can have such an origin;
  - the bound address itself (`META_AGENT_HOST`), any port;
  - the address the connection arrived at (an IP literal cannot be rebound: it is how a
    client reaches a wildcard-bound server by one of its interface addresses);
  - on a wildcard bind (`0.0.0.0`, `::`), the machine's own host name and FQDN;
  - the host of `META_AGENT_PUBLIC_URL`, and each entry of `META_AGENT_ALLOWED_HOSTS`
    (comma-separated): `name` (any port), `name:port` (that port only), or `*.domain`
    (any name below `domain`, not `domain` itself). A bare `*` is not accepted: a proxy that
    already checks Host should forward the names it checked.
- A state-changing request (POST, PUT, PATCH, DELETE) that carries `Origin` must come from
  this server's own origin: the Origin's host and port equal the request's `Host` (the
  scheme is not compared, so a proxy that terminates TLS works without forwarded headers;
  ports 80 and 443 are implied), or it is the public URL's host or an ALLOWED_HOSTS entry
  (the origin a proxy shows may differ from the Host it forwards). Anything else, `null` included, gets
  403 `cross_origin_refused`. Requests without `Origin` (the CLI, the SDK, workers, MCP
  clients, Slack) are not browsers acting for a page, and pass.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from board_api import errors as problems
from kernel.settings import Settings

__all__ = ["HostGuard", "HostRule", "parse_allowed_hosts"]

WILDCARD_BINDS = {"0.0.0.0", "::", ""}
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
_LOOPBACK_NAMES = {"localhost", "::1"}
_ACCEPTED_MAX = 256  # (Host, local address) pairs host_ok remembers as accepted
_NAME = re.compile(r"[a-z0-9_]([a-z0-9_.-]*[a-z0-9])?|[0-9a-f:.]+")  # a DNS name or an IP


def _split_host(value: str) -> tuple[str, int | None] | None:
    """`host[:port]` (IPv6 in brackets) as (lowercase host without brackets, port)."""
    try:
        parts = urlsplit(f"//{value.strip()}")
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host or parts.username is not None or parts.password is not None or parts.path:
        return None
    return host.rstrip("."), port


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_allowed_hosts(raw: str | None) -> list[str]:
    """The entries of `META_AGENT_ALLOWED_HOSTS`; a malformed one raises ValueError."""
    entries = [e.strip().lower() for e in (raw or "").split(",") if e.strip()]
    for e in entries:
        split = _split_host(e.removeprefix("*."))
        if split is None or not _NAME.fullmatch(split[0]):
            raise ValueError(
                f"META_AGENT_ALLOWED_HOSTS entry {e!r} is not a host, host:port or *.domain "
                "(a bare * is not accepted)"
            )
    return entries


class HostRule:
    """Which `Host` names this server answers to, and which `Origin`s may change state."""

    def __init__(self, bind: str, allowed: Iterable[str] = (), public_url: str | None = None) -> None:
        bind = bind.strip().strip("[]").lower()
        self.bind = bind
        # (host, port or None for any); `declared` are the names an operator set, whose pages
        # (a proxy's public origin) may also change state, on whatever port the proxy shows.
        self.exact: set[tuple[str, int | None]] = set()
        self.declared: set[tuple[str, int | None]] = set()
        self.suffixes: list[tuple[str, int | None]] = []
        self._accepted: set[tuple[str, str | None]] = set()  # host_ok's memory
        if bind not in WILDCARD_BINDS:
            self.exact.add((bind, None))
        else:
            self.exact.update((name, None) for name in _machine_names())
        if public_url:
            parts = urlsplit(public_url)
            if parts.hostname:
                self._add(parts.hostname, None)
        for entry in allowed:
            if entry.startswith("*."):
                split = _split_host(entry[2:])
                if split:
                    self.suffixes.append(("." + split[0], split[1]))
            else:
                split = _split_host(entry)
                if split:
                    self._add(*split)

    @classmethod
    def of(cls, settings: Settings) -> HostRule:
        """The rule for a server started with `settings` (ValueError on a malformed list)."""
        return cls(settings.host, parse_allowed_hosts(settings.allowed_hosts), settings.public_url)

    def _add(self, host: str, port: int | None) -> None:
        host = host.strip("[]").lower().rstrip(".")
        self.exact.add((host, port))
        self.declared.add((host, port))

    def _declared(self, host: str, port: int | None) -> bool:
        if (host, None) in self.declared or (host, port) in self.declared:
            return True
        return any(host.endswith(s) and (p is None or p == port) for s, p in self.suffixes)

    def host_ok(self, value: str, local_addr: str | None = None) -> bool:
        """Whether a request with this `Host` (received on `local_addr`) is for us.

        A pure function of the two for a given rule, asked on every request with the same
        few values: the accepted pairs are remembered (parsing the value, urlsplit and
        ipaddress, was ~20 Python calls a request). Refused ones are not, and the memory is
        bounded, so a client sending made-up hosts costs what it did and grows nothing."""
        key = (value, local_addr)
        if key in self._accepted:
            return True
        ok = self._host_ok(value, local_addr)
        if ok and len(self._accepted) < _ACCEPTED_MAX:
            self._accepted.add(key)
        return ok

    def _host_ok(self, value: str, local_addr: str | None) -> bool:
        split = _split_host(value)
        if split is None:
            return False
        host, port = split
        if _is_loopback(host) or host == self.bind:
            return True
        if local_addr and host == local_addr.strip("[]").lower():
            return True
        return (host, None) in self.exact or (host, port) in self.exact or self._declared(host, port)

    def origin_ok(self, origin: str, host_header: str) -> bool:
        try:
            parts = urlsplit(origin.strip())
            origin_host, origin_port = parts.hostname, parts.port
        except ValueError:
            return False
        if parts.scheme not in ("http", "https") or not origin_host:
            return False
        if _netloc(origin_host, origin_port) == _normalise(host_header):
            return True
        return self._declared(origin_host.lower().rstrip("."), origin_port)


def _netloc(host: str, port: int | None) -> str:
    host = host.lower().rstrip(".")
    if ":" in host:
        host = f"[{host}]"
    return host if port in (None, 80, 443) else f"{host}:{port}"


def _normalise(host_header: str) -> str | None:
    split = _split_host(host_header)
    return None if split is None else _netloc(*split)


def _machine_names() -> set[str]:
    names = {socket.gethostname().lower()}
    try:
        names.add(socket.getfqdn().lower())
    except OSError:  # no resolver: the host name alone
        pass
    return {n for n in names if n}


class HostGuard:
    """Pure ASGI: refuses a foreign Host (421) or a cross-site state change (403)."""

    def __init__(self, app: ASGIApp, rule: HostRule) -> None:
        self.app, self.rule = app, rule

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers: dict[bytes, str] = {}
        for name, value in scope.get("headers", ()):
            if name in (b"host", b"origin"):
                headers.setdefault(name, value.decode("latin-1"))
        host = headers.get(b"host", "")
        server = scope.get("server")
        refusal = None
        if not self.rule.host_ok(host, server[0] if server else None):
            refusal = problems.problem(
                421,
                "misdirected_request",
                "Misdirected request",
                f"this server does not answer to the host {host[:200]!r}; add the name to "
                "META_AGENT_ALLOWED_HOSTS if a proxy or a public URL uses it",
            )
        elif (
            scope["type"] == "websocket" or scope.get("method", "GET") in UNSAFE_METHODS
        ) and b"origin" in headers:
            origin = headers[b"origin"]
            if not self.rule.origin_ok(origin, host):
                refusal = problems.problem(
                    403,
                    "cross_origin_refused",
                    "Cross-origin request refused",
                    f"a page from {origin[:200]!r} may not change anything on this server",
                )
        if refusal is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
        else:
            await refusal(scope, receive, send)
