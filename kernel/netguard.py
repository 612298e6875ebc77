"""Where `http_request` may go: a guard against server-side request forgery.

The model writes the URL, and what it reads (a web page, a ticket, a tool result) may tell
it where to send it. Agents of a self-hosted control plane are meant to reach internal
services, so private networks stay reachable by default; what is refused by default is what
no agent needs and an attacker wants: loopback (the worker's own machine: in the default
install, the control plane itself, admin when it runs without keys), the control plane's
own host wherever it is, link-local addresses (169.254.169.254 and fd00:ec2::254 are the
cloud metadata services that hand out machine credentials), the unspecified address, and
the metadata host names. An agent's policy narrows it further, or opens a refused
destination by naming it (a host written out, or a network):

    policy:
      http_allow: ["api.github.com", "*.internal.example.com", "10.20.0.0/16", "127.0.0.1"]
      http_deny:  ["10.0.0.0/8", "vault.example.com"]

`http_allow`, when set, is the whole list of destinations (host globs or networks); a
network in it, or a host named without wildcards, also opens a default-refused
destination. `http_deny` is checked first. An IPv6 address that carries an IPv4 address
(IPv4-mapped or -translated, IPv4-compatible, NAT64, 6to4, Teredo, ISATAP) is checked as
that IPv4 address too.

The check happens where the connection is made (`GuardedTransport`): the name is resolved
once, every address is checked, and the socket goes to a checked address, so a name that
answers differently the second time (DNS rebinding) gains nothing; TLS still verifies the
certificate against the name. Every connection goes through it: redirects, retries.
"""

from __future__ import annotations

import asyncio
import fnmatch
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

import httpcore
import httpx

__all__ = ["Blocked", "GuardedTransport", "NetGuard", "embedded_ipv4"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
IP = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_DENY: tuple[Network, ...] = (
    ipaddress.ip_network("169.254.0.0/16"),  # link-local: AWS/GCP/Azure metadata
    ipaddress.ip_network("fe80::/10"),
    ipaddress.ip_network("fd00:ec2::254/128"),  # AWS metadata over IPv6
    ipaddress.ip_network("127.0.0.0/8"),  # loopback: this machine, the control plane of `make run`
    ipaddress.ip_network("::1/128"),
    ipaddress.ip_network("0.0.0.0/8"),  # "this host": 0.0.0.0 reaches loopback services
    ipaddress.ip_network("::/128"),
)
DEFAULT_DENY_HOSTS = ("metadata.google.internal", "metadata", "instance-data", "metadata.azure.internal")

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_COMPATIBLE = ipaddress.ip_network("::/96")
_TRANSLATED = ipaddress.ip_network("::ffff:0:0/96")
_ISATAP_IDS = (0x00005EFE, 0x02005EFE)
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")


def _rfc6052(ip: ipaddress.IPv6Address, prefix: int) -> ipaddress.IPv4Address:
    """The IPv4 address after a NAT64 prefix of `prefix` bits (bits 64-71 are skipped)."""
    bits = f"{int(ip):0128b}"
    bits = bits[:64] + bits[72:] if prefix < 96 else bits
    return ipaddress.IPv4Address(int(bits[prefix : prefix + 32], 2))


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """Every IPv4 address `ip` may stand for on some path (a translator, a tunnel, the kernel)."""
    out: list[ipaddress.IPv4Address] = []
    low = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.ipv4_mapped is not None:
        out.append(ip.ipv4_mapped)
    if ip in _TRANSLATED or ip in _NAT64 or ip in _COMPATIBLE:
        out.append(low)
    if ip in _NAT64_LOCAL:
        # The operator picks the prefix length inside the /48, so every layout counts; the
        # wrong ones mostly read zeros, and 0.0.0.0/8 means nothing past a translator.
        found = (_rfc6052(ip, n) for n in (48, 56, 64, 96))
        out.extend(v4 for v4 in found if v4 not in _THIS_NETWORK)
    if ip.sixtofour is not None:
        out.append(ip.sixtofour)
    if ip.teredo is not None:
        out.extend(ip.teredo)
    if (int(ip) >> 32) & 0xFFFFFFFF in _ISATAP_IDS:
        out.append(low)
    return out


class Blocked(Exception):
    """The destination is not allowed; the message says which rule refused it."""


@dataclass(frozen=True)
class _Rules:
    hosts: tuple[str, ...] = ()
    networks: tuple[Network, ...] = ()

    @classmethod
    def of(cls, items: Iterable[Any], rule: str) -> _Rules:
        hosts: list[str] = []
        nets: list[Network] = []
        for raw in items:
            item = str(raw).strip().lower()
            try:
                nets.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                if not item or "/" in item:
                    raise ValueError(f"policy.{rule}: {raw!r} is neither a host name nor a network") from None
                hosts.append(item)
        return cls(tuple(hosts), tuple(nets))

    def host(self, host: str) -> bool:
        return any(fnmatch.fnmatchcase(host, pattern) for pattern in self.hosts)

    def address(self, ip: IP) -> bool:
        return any(ip.version == n.version and ip in n for n in self.networks)


class NetGuard:
    """Checks one destination (`await guard.check(host)`) against the defaults and a policy.

    `control_plane`: the URL of the control plane the worker serves; its host is refused
    like loopback (the agent would act on the plane with whatever the plane grants it).
    """

    def __init__(self, policy: dict[str, Any] | None = None, control_plane: str | None = None) -> None:
        policy = policy or {}
        allow = policy.get("http_allow")
        self.allow = None if allow is None else _Rules.of(allow, "http_allow")
        self.deny = _Rules.of(policy.get("http_deny") or (), "http_deny")
        host = urlsplit(control_plane).hostname if control_plane else None
        self.control_plane = _norm(host) if host else None
        self._plane_ips: set[IP] | None = None

    async def check(self, host: str, port: int | None = None) -> list[IP]:
        """The addresses of `host`, every one of them allowed; raises Blocked otherwise."""
        host = _norm(host)
        literal = _literal(host)
        if self.deny.host(host) or (literal is not None and self.deny.address(literal)):
            raise Blocked(f"{host} is denied by the agent's policy (http_deny)")
        if (
            self.allow is not None
            and not self.allow.host(host)
            and not (literal and self.allow.address(literal))
        ):
            if not self.allow.networks:
                raise Blocked(f"{host} is not in the agent's policy http_allow list")
        if host in DEFAULT_DENY_HOSTS and not (self.allow and self.allow.host(host)):
            raise Blocked(f"{host} is a cloud metadata service; requests to it are refused")
        ips = [literal] if literal is not None else await _resolve(host, port)
        if not ips:
            raise Blocked(f"{host} has no address")
        plane = await self._plane()
        for ip in ips:
            self._check_address(host, ip, plane)
        return ips

    async def _plane(self) -> set[IP]:
        if self.control_plane is None:
            return set()
        if self._plane_ips is None:
            literal = _literal(self.control_plane)
            try:
                found = [literal] if literal is not None else await _resolve(self.control_plane, None)
            except Blocked:
                found = []
            self._plane_ips = set(found)
        return self._plane_ips

    def _named(self, host: str) -> bool:
        """The policy names this host outright (a glob does not open a refused destination)."""
        return self.allow is not None and host in self.allow.hosts

    def _check_address(self, host: str, ip: IP, plane: set[IP]) -> None:
        if self.deny.address(ip):
            raise Blocked(f"{host} ({ip}) is denied by the agent's policy (http_deny)")
        allowed = self.allow is not None and (self.allow.address(ip) or self.allow.host(host))
        if self.allow is not None and not allowed:
            raise Blocked(f"{host} ({ip}) is not in the agent's policy http_allow list")
        self._refused_by_default(host, ip, plane)
        for v4 in embedded_ipv4(ip) if isinstance(ip, ipaddress.IPv6Address) else ():
            if self.deny.address(v4):
                raise Blocked(f"{host} ({ip}, carrying {v4}) is denied by the agent's policy (http_deny)")
            self._refused_by_default(f"{host} ({ip}, carrying {v4})", v4, plane, host)

    def _refused_by_default(self, label: str, ip: IP, plane: set[IP], host: str | None = None) -> None:
        """Loopback, link-local, unspecified and the control plane: open only when named."""
        opened = self._named(host or label) or (self.allow is not None and self.allow.address(ip))
        if opened:
            return
        if (host or label) == self.control_plane or ip in plane:
            raise Blocked(
                f"{label} ({ip}) is the control plane; requests to it are refused unless the agent's "
                "policy http_allow names it"
            )
        if any(ip.version == n.version and ip in n for n in DEFAULT_DENY):
            raise Blocked(
                f"{label} ({ip}) is a loopback, link-local or unspecified address (the worker's own "
                "machine, cloud metadata); requests to it are refused unless the agent's policy "
                "http_allow names it"
            )


def _norm(host: str) -> str:
    return host.strip("[]").lower().rstrip(".")


def _literal(host: str) -> IP | None:
    try:
        return ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return None


async def _resolve(host: str, port: int | None) -> list[IP]:
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port or 443, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise Blocked(f"cannot resolve {host}: {exc}") from None
    out: list[IP] = []
    for info in infos:
        ip = _literal(str(info[4][0]))
        if ip is not None and ip not in out:
            out.append(ip)
    return out


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to an address the guard has just checked, never resolving again."""

    def __init__(self, guard: NetGuard) -> None:
        self._guard = guard
        # httpcore defines AnyIOBackend only if anyio imports, with a bare stand-in
        # otherwise; type checkers see the stand-in. anyio is a dependency of httpx.
        self._inner = cast(httpcore.AsyncNetworkBackend, httpcore.AnyIOBackend())

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        ips = await self._guard.check(host, port)
        last: Exception | None = None
        for ip in ips:
            try:
                return await self._inner.connect_tcp(str(ip), port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        raise Blocked("unix sockets are not an http_request destination")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """An httpx transport whose every connection goes through `guard`. No proxies: a proxy
    would resolve the name itself, out of the guard's sight."""

    def __init__(self, guard: NetGuard) -> None:
        super().__init__(trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            network_backend=_GuardedBackend(guard),
        )
