"""UDP, TCP and TLS transports for SIP (RFC 3261 18, 26.2), IPv4 and IPv6, on asyncio.

Each listener hands complete messages to ``on_message(data, transport, source)``: a UDP
datagram as it came, a TCP or TLS byte stream cut into messages by the sans-I/O
:class:`~sessiond.sip.framing.StreamFramer` (Content-Length framing, bounded buffers). On a
stream a double-CRLF keepalive ping is answered with a CRLF pong (RFC 5626 4.4.1); a lone
CRLF is skipped. Connections are keyed by (transport, peer address): sending reuses the one
the peer opened (responses go back on it) or the one we opened before, and :meth:`connect`
opens one (a TLS one verifies the server's certificate and name, see
:mod:`sessiond.edge.tls`); concurrent requests to one target share one connect.

A new request to an address a peer's own connection comes from (a phone behind NAT called
us over TLS from 198.51.100.2:40123, and we call it back at
``sip:alice@198.51.100.2:40123;transport=tls``) goes over that connection (RFC 3261 18.1.1,
RFC 5923 connection reuse): behind a NAT nothing else reaches the phone. This holds for a
TLS URI naming that IP address (or none), without a server-certificate check: the far end is
whoever holds the connection from exactly that address, which is what the URI names, and
phones have no server certificate to show. A URI naming a host name still gets a connection
of its own, verified for that name (docs/security.md, "TLS connections phones opened").
Connections idle for ``idle_timeout`` seconds are closed, and so are connections that hold a
partial message for longer than ``message_timeout`` seconds however slowly they trickle bytes
(a slow sender cannot pin a connection with one byte per idle period); at most
``max_connections`` are kept, never more than the open-file limit leaves room for.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import resource
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from sessiond.core.addresses import is_wildcard
from sessiond.edge.loops import survive
from sessiond.edge.tls import TlsContexts
from sessiond.edge.udp_wildcard import WildcardUdp
from sessiond.sip.errors import SipParseError
from sessiond.sip.framing import StreamFramer

log = logging.getLogger("sessiond.edge.transport")
Address = tuple[str, int]
OnMessage = Callable[[bytes, str, Address], None]
STREAMS = ("TCP", "TLS")
CONNECT_TIMEOUT = 10.0  # seconds for a TCP connect plus TLS handshake


@dataclass(frozen=True, slots=True)
class ListenSpec:
    transport: str  # "UDP", "TCP" or "TLS"
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> ListenSpec:
        """``udp:127.0.0.1:5060``, ``tcp:[::1]:5060``, ``tls:0.0.0.0:5061``."""
        proto, _, rest = text.partition(":")
        usage = f"listen address must be udp:HOST:PORT, tcp:HOST:PORT or tls:HOST:PORT: {text!r}"
        if proto.lower() not in ("udp", "tcp", "tls") or not rest:
            raise ValueError(usage)
        host, _, port = rest.rpartition(":")
        host = host.strip("[]")
        if not host or not port.isdigit():
            raise ValueError(usage)
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


class _PendingReader:
    """Reads datagrams already queued on a UDP socket the event loop also watches, through a
    duplicate of its descriptor (one queue, two readers, never blocking): the edge reads
    them before firing retransmission timers (:meth:`Transports.read_pending`)."""

    def __init__(self, fileno: int, family: int, on_message: OnMessage) -> None:
        self.sock = socket.fromfd(fileno, family, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.on_message = on_message

    def read_pending(self, limit: int) -> int:
        for count in range(limit):
            try:
                data, addr = self.sock.recvfrom(65_535)
            except (BlockingIOError, InterruptedError):
                return count
            except OSError as exc:  # an ICMP error reported on the socket
                log.debug("udp error: %s", exc)
                return count
            with survive("inbound"):
                self.on_message(data, "UDP", (str(addr[0]), int(addr[1])))
        return limit


class _TcpConnection(asyncio.Protocol):
    """One TCP or TLS connection (``name``); ``server_name`` is the host name a TLS
    connection we opened verified (None for one the peer opened: ``inbound``)."""

    def __init__(
        self,
        owner: Transports,
        name: str = "TCP",
        server_name: str | None = None,
        *,
        inbound: bool = True,
    ) -> None:
        self.owner = owner
        self.name = name
        self.server_name = server_name
        self.inbound = inbound  # the peer opened it (accepted by a listener)
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
        pings = self.framer.pings
        try:
            messages = self.framer.feed(data)
        except SipParseError as exc:  # oversize or unframeable: the stream is lost
            log.info("closing %s %s: %s", self.name, self.peer, exc.reason)
            self.owner.dropped("tcp-framing")
            if self.transport is not None:
                self.transport.close()
            return
        if self.framer.pings != pings and self.transport is not None:
            self.transport.write(b"\r\n" * (self.framer.pings - pings))  # RFC 5626 4.4.1 pong
        if not self.framer.buffered:
            self._partial(None)
        elif self.partial_since is None or messages:
            self._partial(self.last_seen)
        for message in messages:
            with survive("inbound"):
                self.owner.on_message(message, self.name, self.peer)

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
                "closing %s %s: partial message held for %ss",
                self.name,
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
        tls: TlsContexts | None = None,
        on_closed: Callable[[str, Address], None] | None = None,
    ) -> None:
        self.on_message = on_message
        self.idle_timeout = idle_timeout
        self.message_timeout = message_timeout
        self.max_connections = min(max_connections, _connection_room())
        self.tls = tls
        self._on_drop = on_drop
        self._on_closed = on_closed
        self._udp: dict[int, asyncio.DatagramTransport] = {}  # address family -> socket
        self._pending: list[_PendingReader | WildcardUdp] = []  # read_pending's readers
        self._tcp: dict[tuple[str, Address], _TcpConnection] = {}  # the one each send uses
        self._open: set[_TcpConnection] = set()  # every connection, for the reaper
        self._connecting: dict[tuple[str, Address, str | None], asyncio.Task[bool]] = {}
        self._servers: list[asyncio.base_events.Server] = []
        self.specs: list[ListenSpec] = []
        self._reaper: asyncio.Task[None] | None = None

    async def listen(self, spec: ListenSpec) -> ListenSpec:
        """Open a listener; returns the spec with the real port (when 0 was asked)."""
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in spec.host else socket.AF_INET
        if spec.transport == "UDP":
            if is_wildcard(spec.host):  # answers leave from the address each request came to
                wildcard = WildcardUdp.open(
                    spec.host, spec.port, self.on_message, on_drop=self.dropped
                )
                self._pending.append(wildcard)
                transport: asyncio.DatagramTransport = wildcard
            else:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: _Udp(self.on_message), local_addr=(spec.host, spec.port), family=family
                )
            sock = transport.get_extra_info("socket")
            if not is_wildcard(spec.host):
                self._pending.append(_PendingReader(sock.fileno(), family, self.on_message))
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            self._udp[family] = transport
            port = int(transport.get_extra_info("sockname")[1])
        else:
            context = None
            if spec.transport == "TLS":
                if self.tls is None:
                    raise ValueError("a TLS listener needs a certificate (--tls-cert, --tls-key)")
                context = self.tls.server
            name = spec.transport
            server = await loop.create_server(
                lambda: _TcpConnection(self, name),
                spec.host,
                spec.port,
                family=family,
                reuse_address=True,
                ssl=context,
                ssl_handshake_timeout=self.message_timeout if context is not None else None,
            )
            self._servers.append(server)
            port = int(server.sockets[0].getsockname()[1])
        bound = ListenSpec(spec.transport, spec.host, port)
        self.specs.append(bound)
        if self._reaper is None:
            self._reaper = asyncio.create_task(self._reap())
        return bound

    def read_pending(self, limit: int) -> int:
        """Hand on up to ``limit`` datagrams per UDP socket that are queued there already,
        before the event loop would get to them; returns how many. Called before firing
        retransmission timers: a response waiting in the socket stops its Timer A or E
        (RFC 3261 17.1.1.2, 17.1.2.2) instead of the request going out again, which under
        load reached a callee after its 200 and made it drop the call."""
        return sum(reader.read_pending(limit) for reader in self._pending)

    def register(self, conn: _TcpConnection) -> None:
        if len(self._open) >= self.max_connections and conn.transport is not None:
            self.dropped("tcp-limit")
            conn.transport.close()
            return
        self._open.add(conn)
        self._tcp[(conn.name, conn.peer)] = conn

    def unregister(self, conn: _TcpConnection) -> None:
        self._open.discard(conn)
        key = (conn.name, conn.peer)
        if self._tcp.get(key) is conn:
            del self._tcp[key]
            if self._on_closed is not None:
                self._on_closed(conn.name, conn.peer)

    def dropped(self, why: str) -> None:
        if self._on_drop is not None:
            self._on_drop(why)

    def has(self, transport: str, addr: Address) -> bool:
        """Whether a connection to or from ``addr`` is open (and would carry a send)."""
        conn = self._tcp.get((transport, addr))
        return conn is not None and conn.transport is not None and not conn.transport.is_closing()

    def send(self, transport: str, addr: Address, data: bytes) -> None:
        if transport in STREAMS:
            conn = self._tcp.get((transport, addr))
            if conn is not None and conn.transport is not None:
                conn.transport.write(data)
                return
            asyncio.get_running_loop().create_task(self._connect_and_send(transport, addr, data))
            return
        family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        udp = self._udp.get(family)
        if udp is None:
            log.warning("no UDP socket for %s", addr)
            self.dropped("no-socket")
            return
        udp.sendto(data, addr)

    async def connect(self, transport: str, addr: Address, server_name: str | None = None) -> bool:
        """Make sure a connection to ``addr`` is open, reusing one (a TLS one only when it
        verified ``server_name``); False (logged) when it cannot be opened. Requests to
        one target while the first connect is under way wait for that one."""
        if transport not in STREAMS:
            return True
        conn = self._tcp.get((transport, addr))
        if conn is not None and conn.transport is not None and not conn.transport.is_closing():
            if transport == "TCP" or server_name is None or conn.server_name == server_name:
                return True
            if conn.inbound and _same_address(server_name, addr[0]):
                return True  # the peer's own connection from exactly that address (module)
        key = (transport, addr, server_name)
        task = self._connecting.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._open_connection(*key))
            self._connecting[key] = task
            task.add_done_callback(lambda _: self._connecting.pop(key, None))
        return await asyncio.shield(task)

    async def _open_connection(
        self, transport: str, addr: Address, server_name: str | None
    ) -> bool:
        loop = asyncio.get_running_loop()
        context: ssl.SSLContext | None = None
        name = None
        if transport == "TLS":
            context = self.tls.client if self.tls is not None else _default_client()
            name = server_name or addr[0]
        try:
            await asyncio.wait_for(
                loop.create_connection(
                    lambda: _TcpConnection(self, transport, name, inbound=False),
                    *addr,
                    ssl=context,
                    server_hostname=name,
                ),
                CONNECT_TIMEOUT,
            )
        except ssl.SSLCertVerificationError as exc:
            log.warning(
                "TLS to %s:%s (%s): certificate not accepted: %s",
                *addr,
                name,
                exc.verify_message or exc.reason,
            )
            self.dropped("tls-verify")
            return False
        except (OSError, TimeoutError) as exc:
            log.info("%s connect to %s failed: %s", transport, addr, exc or "timeout")
            self.dropped("tcp-connect")
            return False
        return True

    async def _connect_and_send(self, transport: str, addr: Address, data: bytes) -> None:
        if await self.connect(transport, addr):
            conn = self._tcp.get((transport, addr))
            if conn is not None and conn.transport is not None:
                conn.transport.write(data)

    async def _reap(self) -> None:
        """Idle connections (partial messages have their own timer: ``_TcpConnection``)."""
        while True:
            await asyncio.sleep(min(30.0, self.idle_timeout / 2))
            now = time.monotonic()
            for conn in list(self._open):
                with survive("reaper"):
                    if conn.last_seen < now - self.idle_timeout and conn.transport is not None:
                        self.dropped("tcp-idle")
                        conn.transport.close()

    @property
    def connections(self) -> int:
        """TCP and TLS connections open now."""
        return len(self._open)

    def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        for udp in self._udp.values():
            udp.close()
        for reader in self._pending:
            if isinstance(reader, _PendingReader):
                reader.sock.close()
        self._pending.clear()
        for server in self._servers:
            server.close()
        for conn in list(self._open):
            if conn.transport is not None:
                conn.transport.close()


def _same_address(host: str, ip: str) -> bool:
    """Whether ``host`` is an IP address literal and the same address as ``ip``."""
    try:
        return ipaddress.ip_address(host.strip("[]")) == ipaddress.ip_address(ip)
    except ValueError:
        return False


_DEFAULT_CLIENT: list[ssl.SSLContext] = []


def _default_client() -> ssl.SSLContext:
    """The client context without any --tls-* flag: the system's trust store."""
    if not _DEFAULT_CLIENT:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        _DEFAULT_CLIENT.append(ctx)
    return _DEFAULT_CLIENT[0]


def _connection_room(reserve: int = 256) -> int:
    """Connections the open-file limit leaves room for, after ``reserve`` descriptors for the
    listeners, Redis, logs and outbound connections (accept() failing with EMFILE would
    also stop new Redis connections)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 30
    return max(16, soft - reserve)
