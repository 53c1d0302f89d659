"""The private-address guard for callback URLs (SSRF): checked at submit and at delivery.

A callback is a request the fleet makes on a tenant's behalf from inside its network, so
a host that is, or resolves to, loopback, private, link-local, CGNAT, multicast,
unspecified or cloud-metadata space is refused unless an operator allowed its network.
At delivery the resolved address that passed the check is the one connected to
(`Destination.addresses`), so a rebinding DNS cannot swap it between check and connect.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from tasks.errors import CallbackForbidden
from tasks.settings import Settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Sequence[str]]

# Named even though `is_global` already refuses them: these are what attackers aim for.
METADATA = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for `host` (A and AAAA)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def literal_address(host: str) -> Address | None:
    """The address a host names by itself, in any spelling a resolver would accept:
    `[::1]`, `127.1`, `2130706433`, `0x7f000001`, `0177.0.0.1`."""
    bare = host.strip("[]").rstrip(".")
    try:
        return ipaddress.ip_address(bare.split("%", 1)[0])
    except ValueError:
        pass
    if bare and all(c in "0123456789abcdefxABCDEFX." for c in bare):
        try:
            # inet_aton accepts the same shorthand, octal and hex forms as getaddrinfo.
            return ipaddress.IPv4Address(socket.inet_aton(bare))
        except OSError:
            return None
    return None


def _embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address inside an IPv6 one that reaches it (mapped, 6to4, NAT64, Teredo)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public(address: Address) -> bool:
    """True only for a globally routable unicast address (CGNAT is not global)."""
    if address in METADATA or address.is_multicast or address.is_reserved:
        return False
    if address.is_unspecified or address.is_loopback or address.is_link_local:
        return False
    if address.is_private or not address.is_global:
        return False
    embedded = _embedded_ipv4(address)
    return embedded is None or is_public(embedded)


@dataclass(frozen=True)
class Destination:
    """Where one delivery goes: the URL's parts and the checked addresses to connect to."""

    scheme: str
    host: str
    port: int
    target: str  # path and query, as sent
    addresses: tuple[str, ...]


class CallbackGuard:
    """Decides whether a callback URL may be called; built once from `Settings`."""

    def __init__(self, allowed: Sequence[Network] = (), resolver: Resolver = system_resolver):
        self.allowed = tuple(allowed)
        self._resolve = resolver

    @classmethod
    def from_settings(cls, settings: Settings) -> CallbackGuard:
        allowed = [
            ipaddress.ip_network(cidr.strip(), strict=False)
            for cidr in settings.callback_allowed_networks.split(",")
            if cidr.strip()
        ]
        return cls(allowed)

    def permits(self, address: Address) -> bool:
        if any(address in net for net in self.allowed):
            return True
        embedded = _embedded_ipv4(address)
        if embedded is not None and any(embedded in net for net in self.allowed):
            return True
        return is_public(address)

    def destination(self, url: str) -> Destination:
        """Parse, resolve and check `url`; raises `CallbackForbidden` if any address of its
        host is refused, `OSError` (transient) if the host does not resolve now."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise CallbackForbidden("callback_url must be an http(s) URL with a host")
        host = parts.hostname
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:
            raise CallbackForbidden("callback_url has an invalid port") from exc
        literal = literal_address(host)
        try:
            found = [str(literal)] if literal is not None else list(self._resolve(host, port))
        except UnicodeError as exc:
            raise CallbackForbidden(f"callback_url host {host!r} is not a valid name") from exc
        if not found:
            raise OSError(f"{host} resolved to no address")
        for text in found:
            if not self.permits(ipaddress.ip_address(text.split("%", 1)[0])):
                raise CallbackForbidden(
                    f"callback_url host {host!r} is or resolves to {text}, a private, loopback, "
                    "link-local or metadata address; allow it with "
                    "TTSFLEET_CALLBACK_ALLOWED_NETWORKS"
                )
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        return Destination(parts.scheme, host, port, target, tuple(found))

    def check_at_submit(self, url: str) -> None:
        """Refuse a forbidden URL at submit; a name that does not resolve right now is
        accepted (DNS may be briefly down) and checked again at every delivery."""
        try:
            self.destination(url)
        except OSError:
            return
