"""Where `http_request` may go: a guard against server-side request forgery.

The model writes the URL, and what it reads (a web page, a ticket, a tool result) may tell
it where to send it. Agents of a self-hosted control plane are meant to reach internal
services, so private networks stay reachable by default; what is refused by default is what
no agent needs and an attacker wants: link-local addresses (169.254.169.254 and fd00:ec2::254
are the cloud metadata services that hand out machine credentials), the unspecified address,
and the metadata host names. An agent's policy narrows it further:

    policy:
      http_allow: ["api.github.com", "*.internal.example.com", "10.20.0.0/16"]
      http_deny:  ["10.0.0.0/8", "vault.example.com"]

`http_allow`, when set, is the whole list of destinations (host globs or networks); a
network in it also opens a default-denied range explicitly. `http_deny` is checked first.
Every hop is checked, redirects included, on every address the name resolves to.
"""

from __future__ import annotations

import asyncio
import fnmatch
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["Blocked", "NetGuard"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
IP = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_DENY: tuple[Network, ...] = (
    ipaddress.ip_network("169.254.0.0/16"),  # link-local: AWS/GCP/Azure metadata
    ipaddress.ip_network("fe80::/10"),
    ipaddress.ip_network("fd00:ec2::254/128"),  # AWS metadata over IPv6
    ipaddress.ip_network("0.0.0.0/32"),
    ipaddress.ip_network("::/128"),
)
DEFAULT_DENY_HOSTS = ("metadata.google.internal", "metadata", "instance-data", "metadata.azure.internal")


class Blocked(Exception):
    """The destination is not allowed; the message says which rule refused it."""


@dataclass(frozen=True)
class _Rules:
    hosts: tuple[str, ...] = ()
    networks: tuple[Network, ...] = ()

    @classmethod
    def of(cls, items: Iterable[Any], rule: str) -> _Rules:
        hosts, nets = [], []
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
    """Checks one destination (`await guard.check(host)`) against the defaults and a policy."""

    def __init__(self, policy: dict[str, Any] | None = None) -> None:
        policy = policy or {}
        allow = policy.get("http_allow")
        self.allow = None if allow is None else _Rules.of(allow, "http_allow")
        self.deny = _Rules.of(policy.get("http_deny") or (), "http_deny")

    async def check(self, host: str, port: int | None = None) -> None:
        host = host.strip("[]").lower().rstrip(".")
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
        for ip in [literal] if literal is not None else await _resolve(host, port):
            self._check_address(host, ip)

    def _check_address(self, host: str, ip: IP) -> None:
        if self.deny.address(ip):
            raise Blocked(f"{host} ({ip}) is denied by the agent's policy (http_deny)")
        allowed = self.allow is not None and (self.allow.address(ip) or self.allow.host(host))
        if self.allow is not None and not allowed:
            raise Blocked(f"{host} ({ip}) is not in the agent's policy http_allow list")
        if any(ip.version == n.version and ip in n for n in DEFAULT_DENY) and not (
            self.allow is not None and self.allow.address(ip)
        ):
            raise Blocked(
                f"{host} ({ip}) is a link-local or unspecified address (cloud metadata lives there); "
                "requests to it are refused unless the agent's policy http_allow names the network"
            )


def _literal(host: str) -> IP | None:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    # ::ffff:169.254.169.254 is the IPv4 address in disguise.
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


async def _resolve(host: str, port: int | None) -> list[IP]:
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port or 443, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise Blocked(f"cannot resolve {host}: {exc}") from None
    out: list[IP] = []
    for info in infos:
        ip = _literal(str(info[4][0]).split("%")[0])
        if ip is not None:
            out.append(ip)
    return out
