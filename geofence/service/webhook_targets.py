"""Where a webhook may go: no request into the operator's own network unless a setting allows it.

A target name is resolved **once per attempt**; every address it resolves to must be public, and the
connection is made to the first of those checked addresses, with the URL's host kept in the ``Host``
header and, for https, as the TLS server name (SNI and certificate check). A second resolution by the
HTTP client — which a DNS-rebinding attacker answers with ``127.0.0.1`` — never happens.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

# (host, port) -> the addresses it resolves to now; tests pass their own (the resolver seam)
Resolver = Callable[[str, int], list[str]]


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(i[4][0]) for i in infos))  # in the resolver's order, once each


def is_private(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return not ip.is_global or ip.is_multicast


def _literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def target_refusal(url: str, *, allow_private: bool) -> str | None:
    """Why ``url`` may not be a target (None when it may): http(s) with a host, and no private,
    loopback or link-local address unless ``allow_private``. Names are checked at each attempt."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "the target must be an http or https URL with a host"
    if allow_private:
        return None
    host = parts.hostname
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        return f"{host} is a local name (webhooks.allow_private_targets is off)"
    if _literal(host) and is_private(host):
        return f"{host} is a private or loopback address (webhooks.allow_private_targets is off)"
    return None


@dataclass(frozen=True)
class PinnedTarget:
    """One attempt's request: the URL with the checked address in place of the name, and what keeps
    the name for the receiver (``Host``) and for TLS (``sni_hostname``: server name and certificate)."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    extensions: dict[str, str] = field(default_factory=dict)


def pin(url: str, address: str) -> PinnedTarget:
    """``url`` sent to ``address`` (an IP) with its host name preserved."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if _literal(host):
        return PinnedTarget(url)
    netloc_ip = f"[{address}]" if ":" in address else address
    port = f":{parts.port}" if parts.port else ""
    pinned = urlunsplit((parts.scheme, netloc_ip + port, parts.path or "/", parts.query, ""))
    extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
    return PinnedTarget(pinned, {"host": host + port}, extensions)


def resolve_target(
    url: str, *, allow_private: bool, resolve: Resolver = system_resolver
) -> tuple[PinnedTarget | None, str | None]:
    """(the request to make, None) or (None, why not): one resolution, every address checked."""
    if reason := target_refusal(url, allow_private=allow_private):
        return None, reason
    parts = urlsplit(url)
    host = parts.hostname or ""
    if _literal(host):
        return PinnedTarget(url), None
    try:
        addresses = resolve(host, parts.port or (443 if parts.scheme == "https" else 80))
    except OSError as exc:
        return None, f"cannot resolve {host}: {exc}"
    if not addresses:
        return None, f"{host} resolves to no address"
    bad = sorted(a for a in addresses if is_private(a))
    if bad and not allow_private:
        return None, f"{host} resolves to private addresses {bad}"
    return pin(url, addresses[0]), None
