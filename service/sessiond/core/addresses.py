"""Addresses a process binds and the ones it advertises (issue 14: a real network).

A process may bind a wildcard address (``0.0.0.0``, ``::``) and be reached, through a 1:1
NAT or a load balancer, at another one: what it writes in Via, Contact and SDP is then its
*advertised* address, never the bound one. This module parses ``--advertise`` values,
tells wildcard and private addresses apart and, for a wildcard bind with nothing
advertised, guesses the address of the default route (no packet is sent: a UDP socket is
connected and asked for its own address).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

# RFC 1918 and RFC 6598 (carrier-grade NAT) for IPv4, RFC 4193 unique local addresses and
# link-local for IPv6: an SDP address in these ranges is unreachable from outside the peer's
# own network.
_PRIVATE = tuple(
    ipaddress.ip_network(net)
    for net in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "169.254.0.0/16",
        "fc00::/7",
        "fe80::/10",
    )
)


@dataclass(frozen=True, slots=True)
class HostPort:
    """An advertised address: host (an IP address or a DNS name) and, optionally, a port
    (None: the bound port)."""

    host: str
    port: int | None = None

    @classmethod
    def parse(cls, text: str, option: str = "--advertise") -> HostPort:
        """``203.0.113.7``, ``203.0.113.7:5060``, ``sip.example.com:5080``, ``[2001:db8::7]``,
        ``[2001:db8::7]:5060`` or a bare IPv6 address; ValueError naming ``option``."""
        text = text.strip()
        host, port = text, ""
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            if rest and not rest.startswith(":"):
                raise ValueError(f"{option} {text!r}: expected [IPv6]:PORT")
            port = rest[1:]
        elif text.count(":") == 1:
            host, _, port = text.partition(":")
        if not host or any(c.isspace() or c in "[]/@;<>" for c in host):
            raise ValueError(f"{option} {text!r}: expected HOST or HOST:PORT")
        if ":" in host:
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise ValueError(f"{option} {text!r}: not an IPv6 address") from None
        if port and (not port.isdigit() or not 1 <= int(port) <= 65535):
            raise ValueError(f"{option} {text!r}: the port must be 1-65535")
        if is_wildcard(host):
            raise ValueError(f"{option} {text!r}: a wildcard address cannot be advertised")
        return cls(host, int(port) if port else None)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"


def media_address(text: str, option: str) -> str:
    """An address for SDP ``c=``/``o=``: an IP literal without a port (RTP ports vary, and
    phones do not resolve names in SDP); ValueError naming ``option``."""
    shown = HostPort.parse(text, option)
    if shown.port is not None:
        raise ValueError(f"{option} {text!r}: an address without a port (RTP ports vary)")
    try:
        ipaddress.ip_address(shown.host)
    except ValueError:
        raise ValueError(f"{option} {text!r}: an IP address (SDP c= takes no names)") from None
    return shown.host


def is_wildcard(host: str) -> bool:
    """True for ``0.0.0.0`` and ``::`` (bind every address of the machine)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False


def is_private(host: str) -> bool:
    """True for an RFC 1918 / RFC 6598 / link-local IPv4 or ULA / link-local IPv6 address:
    one a peer behind NAT writes in its SDP, unreachable from here. Loopback, public
    addresses and names are not private."""
    try:
        addr = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr.version == net.version and addr in net for net in _PRIVATE)


def default_address(family: int = socket.AF_INET) -> str:
    """The local address of the default route for ``family`` (what a wildcard listener is
    reached at when nothing is advertised); loopback when there is no route. No packet is
    sent: connecting a UDP socket only picks the route."""
    probe = ("192.0.2.1", 9) if family == socket.AF_INET else ("2001:db8::1", 9)
    loopback = "127.0.0.1" if family == socket.AF_INET else "::1"
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect(probe)
            return str(sock.getsockname()[0])
    except OSError:
        return loopback


def family_of(host: str) -> int:
    """AF_INET6 for an IPv6 literal, else AF_INET."""
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def reachable_host(bound: str, advertised: HostPort | None) -> str:
    """What to write for a socket bound to ``bound``: the advertised host, else the bound
    address, else (a wildcard bind) the default route's address."""
    if advertised is not None:
        return advertised.host
    if is_wildcard(bound):
        return default_address(family_of(bound))
    return bound
