"""RTP port allocation for the media process: an even port for RTP and the next odd one for RTCP.

RFC 3550 section 11: RTP uses an even port and RTCP the next higher (odd) port. We always bind
both, even when the peer negotiates rtcp-mux, so a pair is never half-owned by another process.
Allocation walks the range round-robin from where the last one stopped, so a port just freed is
the last to be reused (late packets of an ended call do not land in a new one). A port another
process holds (bind fails) is skipped, not an error.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from sessiond.media.errors import MediaError


class NoFreePort(MediaError):
    """Every port pair of the range is in use (SIP 503 at the signalling boundary)."""


@dataclass(slots=True)
class PortPair:
    """Two bound, non-blocking UDP sockets: RTP on ``port`` (even) and RTCP on ``port + 1``."""

    port: int
    rtp: socket.socket
    rtcp: socket.socket

    def close(self) -> None:
        """Close both sockets (only for sockets no transport has taken over)."""
        self.rtp.close()
        self.rtcp.close()


def parse_range(text: str) -> tuple[int, int]:
    """``"20000-20999"`` -> ``(20000, 20999)``; :class:`ValueError` when malformed."""
    first, sep, last = text.partition("-")
    if not sep or not first.strip().isdigit() or not last.strip().isdigit():
        raise ValueError(f"port range must look like 20000-20999, got {text!r}")
    lo, hi = int(first), int(last)
    if not 1024 <= lo < hi <= 65535:
        raise ValueError(f"port range {text!r} must be within 1024-65535, first < last")
    return lo, hi


class PortAllocator:
    """Hands out bound RTP/RTCP socket pairs from ``first..last`` on ``address``."""

    def __init__(self, address: str, first: int, last: int) -> None:
        self.address = address
        self.family = socket.AF_INET6 if ":" in address else socket.AF_INET
        start = first + (first & 1)  # RTP ports are even
        self.ports = list(range(start, last, 2))  # each needs port + 1 <= last
        if not self.ports:
            raise ValueError(f"port range {first}-{last} holds no even/odd pair")
        self._in_use: set[int] = set()
        self._cursor = 0

    @property
    def capacity(self) -> int:
        """How many pairs the range holds."""
        return len(self.ports)

    @property
    def in_use(self) -> int:
        """How many pairs are allocated now."""
        return len(self._in_use)

    def allocate(self) -> PortPair:
        """Bind the next free pair; :class:`NoFreePort` when none can be bound."""
        count = len(self.ports)
        for step in range(count):
            port = self.ports[(self._cursor + step) % count]
            if port in self._in_use:
                continue
            pair = self._bind(port)
            if pair is not None:
                self._cursor = (self._cursor + step + 1) % count
                self._in_use.add(port)
                return pair
        raise NoFreePort(f"no free RTP port pair in {self.ports[0]}-{self.ports[-1] + 1}")

    def release(self, port: int) -> None:
        """Mark a pair free again (its sockets must already be closed or closing)."""
        self._in_use.discard(port)

    def _bind(self, port: int) -> PortPair | None:
        socks: list[socket.socket] = []
        try:
            for p in (port, port + 1):
                sock = socket.socket(self.family, socket.SOCK_DGRAM)
                socks.append(sock)
                sock.setblocking(False)
                sock.bind((self.address, p))
        except OSError:
            for sock in socks:
                sock.close()
            return None
        return PortPair(port, socks[0], socks[1])
