"""UDP and TCP transports for SIP (RFC 3261 18), IPv4 and IPv6, on asyncio.

Each listener hands complete messages to ``on_message(data, transport, source)``: a UDP
datagram as it came, a TCP byte stream cut into messages by the sans-I/O
:class:`~sessiond.sip.framing.StreamFramer` (Content-Length framing, bounded buffers).
Sending over TCP reuses the connection the peer opened (responses go back on it) or opens one.
Connections idle for ``idle_timeout`` seconds are closed, and so are connections that hold a
partial message for longer than ``message_timeout`` seconds however slowly they trickle bytes
(a slow sender cannot pin a connection with one byte per idle period); at most
``max_connections`` are kept, never more than the open-file limit leaves room for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from sessiond.core.addresses import is_wildcard
from sessiond.edge.loops import survive
from sessiond.edge.udp_wildcard import WildcardUdp
from sessiond.sip.errors import SipParseError
from sessiond.sip.framing import StreamFramer

log = logging.getLogger("sessiond.edge.transport")
Address = tuple[str, int]
OnMessage = Callable[[bytes, str, Address], None]


@dataclass(frozen=True, slots=True)
class ListenSpec:
    transport: str  # "UDP" or "TCP"
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> ListenSpec:
        """``udp:127.0.0.1:5060``, ``tcp:[::1]:5060``."""
        proto, _, rest = text.partition(":")
        if proto.lower() not in ("udp", "tcp") or not rest:
            raise ValueError(f"listen address must be udp:HOST:PORT or tcp:HOST:PORT: {text!r}")
        host, _, port = rest.rpartition(":")
        host = host.strip("[]")
        if not host or not port.isdigit():
            raise ValueError(f"listen address must be udp:HOST:PORT or tcp:HOST:PORT: {text!r}")
        return cls(proto.upper(), host, int(port))


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, on_message: OnMessage) -> None:
        self.on_message = on_message
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # uvloop: not a subclass

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        with survive("inbound"):  # one message's failure must not reach the event loop
            self.on_message(data, "UDP", (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:  # ICMP unreachable and the like
        log.debug("udp error: %s", exc)


class _TcpConnection(asyncio.Protocol):
    def __init__(self, owner: Transports) -> None:
        self.owner = owner
        self.framer = StreamFramer()
        self.transport: asyncio.Transport | None = None
        self.peer: Address = ("", 0)
        self.last_seen = time.monotonic()
        self.partial_since: float | None = None  # when the buffered partial message began
        self._slow: asyncio.TimerHandle | None = None  # closes it message_timeout after that

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = (str(peer[0]), int(peer[1]))
        self.owner.register(self)

    def data_received(self, data: bytes) -> None:
        self.last_seen = time.monotonic()
        try:
            messages = self.framer.feed(data)
        except SipParseError as exc:  # oversize or unframeable: the stream is lost
            log.info("closing TCP %s: %s", self.peer, exc.reason)
            self.owner.dropped("tcp-framing")
            if self.transport is not None:
                self.transport.close()
            return
        if not self.framer.buffered:
            self._partial(None)
        elif self.partial_since is None or messages:
            self._partial(self.last_seen)
        for message in messages:
            with survive("inbound"):
                self.owner.on_message(message, "TCP", self.peer)

    def _partial(self, since: float | None) -> None:
        """A partial message began at ``since`` (None: none is held): arm its own timer, so
        it is closed ``message_timeout`` seconds later to the tick, not at the reaper's next
        round."""
        self.partial_since = since
        if self._slow is not None:
            self._slow.cancel()
            self._slow = None
        if since is not None:
            delay = since + self.owner.message_timeout - time.monotonic()
            self._slow = asyncio.get_running_loop().call_later(max(delay, 0.0), self._too_slow)

    def _too_slow(self) -> None:
        self._slow = None
        if self.transport is not None and not self.transport.is_closing():
            log.info(
                "closing TCP %s: partial message held for %ss",
                self.peer,
                self.owner.message_timeout,
            )
            self.owner.dropped("tcp-slow")
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._partial(None)
        self.owner.unregister(self)


class Transports:
    """The edge's sockets. ``send`` never blocks; failures are logged and counted."""

    def __init__(
        self,
        on_message: OnMessage,
        *,
        idle_timeout: float = 300.0,
        message_timeout: float = 32.0,
        max_connections: int = 10_000,
        on_drop: Callable[[str], None] | None = None,
    ) -> None:
        self.on_message = on_message
        self.idle_timeout = idle_timeout
        self.message_timeout = message_timeout
        self.max_connections = min(max_connections, _connection_room())
        self._on_drop = on_drop
        self._udp: dict[int, asyncio.DatagramTransport] = {}  # address family -> socket
        self._tcp: dict[Address, _TcpConnection] = {}
        self._servers: list[asyncio.base_events.Server] = []
        self.specs: list[ListenSpec] = []
        self._reaper: asyncio.Task[None] | None = None

    async def listen(self, spec: ListenSpec) -> ListenSpec:
        """Open a listener; returns the spec with the real port (when 0 was asked)."""
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in spec.host else socket.AF_INET
        if spec.transport == "UDP":
            if is_wildcard(spec.host):  # answers leave from the address each request came to
                transport: asyncio.DatagramTransport = WildcardUdp.open(
                    spec.host, spec.port, self.on_message, on_drop=self.dropped
                )
            else:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: _Udp(self.on_message), local_addr=(spec.host, spec.port), family=family
                )
            sock = transport.get_extra_info("socket")
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            self._udp[family] = transport
            port = int(transport.get_extra_info("sockname")[1])
        else:
            server = await loop.create_server(
                lambda: _TcpConnection(self),
                spec.host,
                spec.port,
                family=family,
                reuse_address=True,
            )
            self._servers.append(server)
            port = int(server.sockets[0].getsockname()[1])
        bound = ListenSpec(spec.transport, spec.host, port)
        self.specs.append(bound)
        if self._reaper is None:
            self._reaper = asyncio.create_task(self._reap())
        return bound

    def register(self, conn: _TcpConnection) -> None:
        if len(self._tcp) >= self.max_connections and conn.transport is not None:
            self.dropped("tcp-limit")
            conn.transport.close()
            return
        self._tcp[conn.peer] = conn

    def unregister(self, conn: _TcpConnection) -> None:
        if self._tcp.get(conn.peer) is conn:
            del self._tcp[conn.peer]

    def dropped(self, why: str) -> None:
        if self._on_drop is not None:
            self._on_drop(why)

    def send(self, transport: str, addr: Address, data: bytes) -> None:
        if transport == "TCP":
            conn = self._tcp.get(addr)
            if conn is not None and conn.transport is not None:
                conn.transport.write(data)
                return
            asyncio.get_running_loop().create_task(self._connect_and_send(addr, data))
            return
        family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        udp = self._udp.get(family)
        if udp is None:
            log.warning("no UDP socket for %s", addr)
            self.dropped("no-socket")
            return
        udp.sendto(data, addr)

    async def _connect_and_send(self, addr: Address, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        try:
            transport, conn = await loop.create_connection(lambda: _TcpConnection(self), *addr)
        except OSError as exc:
            log.info("TCP connect to %s failed: %s", addr, exc)
            self.dropped("tcp-connect")
            return
        transport.write(data)

    async def _reap(self) -> None:
        """Idle connections (partial messages have their own timer: ``_TcpConnection``)."""
        while True:
            await asyncio.sleep(min(30.0, self.idle_timeout / 2))
            now = time.monotonic()
            for conn in list(self._tcp.values()):
                with survive("reaper"):
                    if conn.last_seen < now - self.idle_timeout and conn.transport is not None:
                        self.dropped("tcp-idle")
                        conn.transport.close()

    @property
    def connections(self) -> int:
        """TCP connections open now."""
        return len(self._tcp)

    def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        for udp in self._udp.values():
            udp.close()
        for server in self._servers:
            server.close()
        for conn in list(self._tcp.values()):
            if conn.transport is not None:
                conn.transport.close()


def _connection_room(reserve: int = 256) -> int:
    """Connections the open-file limit leaves room for, after ``reserve`` descriptors for the
    listeners, Redis, logs and outbound connections (accept() failing with EMFILE would
    also stop new Redis connections)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 30
    return max(16, soft - reserve)
