"""A UDP socket bound to a wildcard address (``0.0.0.0``, ``::``) that answers from the
address each peer reached it at.

A socket bound to ``0.0.0.0`` receives on every address of the machine, but a plain
``sendto`` leaves from whichever address the routing table picks: on a host with several
addresses (a VM with a private address and a floating one, a second interface) a response
would come from an address the peer never sent to, and a NAT or the peer drops it (RFC 3261
18.2.2: the response goes back from where the request was received). The kernel tells each
datagram's destination address when asked (``IP_PKTINFO``, ``IPV6_RECVPKTINFO``), and takes
the source address of a datagram sent with the same ancillary data. This socket remembers
the local address each peer last reached (bounded; the oldest peer is forgotten first) and
sends to that peer from it; to a peer never heard from, the kernel chooses.

Chosen over one socket per local address: it needs no list of the machine's addresses,
and keeps working when an address is added after start (DHCP, a floating IP moved here).

asyncio's datagram transports offer neither ``recvmsg`` nor ``sendmsg``, so this is a small
transport of its own over ``loop.add_reader`` (plain asyncio and uvloop alike). A send that
would block is dropped, as a full UDP buffer would (the transaction layer retransmits).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Callable

from sessiond.edge.loops import survive

log = logging.getLogger("sessiond.edge.transport")
Address = tuple[str, int]
OnMessage = Callable[[bytes, str, Address], None]
MAX_PEERS = 65_536  # peers whose local address is remembered
_READS_PER_WAKE = 64  # datagrams read per readiness callback (then the loop runs others)
_ANCILLARY = socket.CMSG_SPACE(20)  # room for in_pktinfo (12) and in6_pktinfo (20)
IP_PKTINFO: int = getattr(socket, "IP_PKTINFO", 8)  # Linux's value; Python does not name it


class WildcardUdp(asyncio.DatagramTransport):
    """The UDP socket of a wildcard listener; ``sendto`` answers from the right address."""

    def __init__(
        self,
        sock: socket.socket,
        on_message: OnMessage,
        *,
        on_drop: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(extra={"socket": sock, "sockname": sock.getsockname()})
        self._sock = sock
        self._v6 = sock.family == socket.AF_INET6
        self._on_message = on_message
        self._on_drop = on_drop
        self._local: dict[Address, bytes] = {}  # peer -> pktinfo to send to it with
        self._closing = False
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._readable)

    @classmethod
    def open(
        cls,
        host: str,
        port: int,
        on_message: OnMessage,
        *,
        on_drop: Callable[[str], None] | None = None,
    ) -> WildcardUdp:
        """Bind ``host`` (a wildcard) and ``port``; OSError when it cannot be bound."""
        v6 = ":" in host
        sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
        try:
            if v6:  # [::] takes IPv6 only, so that 0.0.0.0 can be bound beside it
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
            else:
                sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            sock.bind((host, port))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return cls(sock, on_message, on_drop=on_drop)

    # -- receiving ------------------------------------------------------------------------
    def _readable(self) -> None:
        self.read_pending(_READS_PER_WAKE)

    def read_pending(self, limit: int) -> int:
        """Read and hand on up to ``limit`` datagrams already queued; returns how many."""
        for count in range(limit):
            if self._closing:
                return count
            try:
                data, ancillary, _, addr = self._sock.recvmsg(65_535, _ANCILLARY)
            except (BlockingIOError, InterruptedError):
                return count
            except OSError as exc:  # an ICMP error reported on the socket
                log.debug("udp error: %s", exc)
                return count
            peer = (str(addr[0]), int(addr[1]))
            info = self._pktinfo(ancillary)
            if info is not None:
                self._remember(peer, info)
            with survive("inbound"):  # one message's failure must not reach the event loop
                self._on_message(data, "UDP", peer)
        return limit

    def _pktinfo(self, ancillary: list[tuple[int, int, bytes]]) -> bytes | None:
        """The ancillary data that makes a datagram leave from the address this one came to."""
        for level, kind, data in ancillary:
            if self._v6 and level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO:
                return data[:20]  # in6_pktinfo: the address and the interface (link-local)
            if not self._v6 and level == socket.IPPROTO_IP and kind == IP_PKTINFO:
                _, spec_dst, _ = struct.unpack("=I4s4s", data[:12])
                return struct.pack("=I4s4s", 0, spec_dst, bytes(4))  # source: spec_dst
        return None

    def _remember(self, peer: Address, info: bytes) -> None:
        if self._local.get(peer) == info:
            return
        self._local.pop(peer, None)
        if len(self._local) >= MAX_PEERS:
            self._local.pop(next(iter(self._local)))
        self._local[peer] = info

    def local_address(self, peer: Address) -> str | None:
        """The local address ``peer`` last reached us at (None: not heard from)."""
        info = self._local.get(peer)
        if info is None:
            return None
        if self._v6:
            return socket.inet_ntop(socket.AF_INET6, info[:16])
        return socket.inet_ntop(socket.AF_INET, info[4:8])

    # -- sending --------------------------------------------------------------------------
    def sendto(self, data: bytes | bytearray | memoryview, addr: object = None) -> None:
        if self._closing or not isinstance(addr, tuple):
            return
        peer = (str(addr[0]), int(addr[1]))
        info = self._local.get(peer)
        level, kind = (
            (socket.IPPROTO_IPV6, socket.IPV6_PKTINFO)
            if self._v6
            else (socket.IPPROTO_IP, IP_PKTINFO)
        )
        ancillary = [] if info is None else [(level, kind, info)]
        try:
            self._sock.sendmsg([data], ancillary, 0, peer)
        except (BlockingIOError, InterruptedError):
            self._drop("udp-busy")
        except OSError as exc:
            if info is None:
                log.debug("udp send to %s failed: %s", peer, exc)
                self._drop("udp-send")
                return
            # the address it came to is gone (moved away): let the kernel choose
            self._local.pop(peer, None)
            with contextlib.suppress(OSError):
                self._sock.sendmsg([data], [], 0, peer)

    def _drop(self, why: str) -> None:
        if self._on_drop is not None:
            self._on_drop(why)

    # -- the transport interface the edge uses --------------------------------------------
    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        with contextlib.suppress(Exception):
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()

    def is_closing(self) -> bool:
        return self._closing

    def abort(self) -> None:
        self.close()
