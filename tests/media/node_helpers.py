"""Helpers of the media node tests: a node in-process, a far-end softphone, a Goertzel filter."""

from __future__ import annotations

import asyncio
import random
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack

from api.audio_checks import dominant, goertzel  # noqa: F401 - for test_node
from sessiond.core.ids import new_sid
from sessiond.core.types import Event
from sessiond.media.codecs import SILENCE
from sessiond.media.commands import Executor
from sessiond.media.dtmf import DtmfDigit
from sessiond.media.errors import SrtpError
from sessiond.media.node import MediaNode, available_codecs
from sessiond.media.offer_answer import NegotiatedStream, is_telephone_event
from sessiond.media.ports import PortAllocator
from sessiond.media.rtp import is_rtcp
from sessiond.media.sdp import Direction, SessionDescription
from sessiond.media.srtp import SrtpSession
from sessiond.media.stream import MediaStream
from sessiond.media.tones import ToneGenerator
from sessiond.store import Keys
from sessiond.store.client import connect
from sessiond.store.store import decode_event, delete_namespace

LOOPBACK = "127.0.0.1"


def softphone_offer(port: int, rtcp_port: int, codecs: str = "8 0 101") -> str:
    """A Linphone-like offer: ICE attributes, a=rtcp, RTCP feedback, a video stream."""
    rtpmaps = {
        "8": "a=rtpmap:8 PCMA/8000",
        "0": "a=rtpmap:0 PCMU/8000",
        "101": "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15",
        "18": "a=rtpmap:18 G729/8000",
    }
    lines = [
        "v=0",
        f"o=alice 3724394400 3724394405 IN IP4 {LOOPBACK}",
        "s=Talk",
        f"c=IN IP4 {LOOPBACK}",
        "b=AS:380",
        "t=0 0",
        "a=ice-pwd:31ec21eb38b2ec6d36e8dc7b",
        "a=ice-ufrag:1f7d2c05",
        f"m=audio {port} RTP/AVP {codecs}",
        *(rtpmaps[pt] for pt in codecs.split()),
        f"a=rtcp:{rtcp_port}",
        "a=rtcp-fb:* trr-int 1000",
        f"a=candidate:1 1 UDP 2130706431 {LOOPBACK} {port} typ host",
        "a=sendrecv",
        "m=video 9078 RTP/AVP 96",
        "a=rtpmap:96 VP8/90000",
    ]
    return "\r\n".join(lines) + "\r\n"


def view_of_answer(answer: str, rtcp_mux: bool = False) -> NegotiatedStream:
    """What the far end (the offerer) agreed to, read from the node's answer."""
    sdp = SessionDescription.parse(answer)
    section = sdp.media[0]
    codecs = section.codecs()
    audio = tuple(c for c in codecs if not is_telephone_event(c))
    event = next((c for c in codecs if is_telephone_event(c)), None)
    return NegotiatedStream(
        0,
        audio[0],
        audio,
        event,
        sdp.media_connection(section).host,
        section.port,
        section.port + 1,
        rtcp_mux,
        20,
        Direction.SENDRECV,
        False,
    )


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, far: FarEnd) -> None:
        self.far = far

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.far.receive(data, (addr[0], addr[1]))


@dataclass
class FarEnd:
    """A softphone over real UDP sockets, driven by the media core's MediaStream."""

    tone: float | None = None
    stream: MediaStream | None = None
    heard: list[bytes] = field(default_factory=list)
    digits: list[str] = field(default_factory=list)
    received: int = 0
    sending: bool = True
    srtp: SrtpSession | None = None  # set: SRTP on the wire (what the node sends is kept)
    wire: list[bytes] = field(default_factory=list)  # datagrams as received (with srtp)
    refused: int = 0  # datagrams SRTP refused
    _transports: list[asyncio.DatagramTransport] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    async def open(self) -> tuple[int, int]:
        """Bind RTP and RTCP sockets on loopback; their ports."""
        loop = asyncio.get_running_loop()
        ports = []
        for _ in range(2):
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Protocol(self), local_addr=(LOOPBACK, 0)
            )
            self._transports.append(transport)
            ports.append(transport.get_extra_info("sockname")[1])
        return ports[0], ports[1]

    def start(self, negotiated: NegotiatedStream) -> None:
        """Start the 20 ms loop: send the tone (or silence), collect what we hear."""
        loop = asyncio.get_running_loop()
        self.stream = MediaStream(
            negotiated, now=loop.time(), rng=random.Random(7), inactivity_timeout=None
        )
        self._task = asyncio.create_task(self._run())

    def receive(self, data: bytes, source: tuple[str, int]) -> None:
        if self.stream is None:
            return
        self.received += 1
        if self.srtp is not None:
            self.wire.append(data)
            try:
                data = (
                    self.srtp.unprotect_rtcp(data) if is_rtcp(data) else self.srtp.unprotect(data)
                )
            except SrtpError:
                self.refused += 1
                return
        for event in self.stream.receive(data, source, asyncio.get_running_loop().time()):
            if isinstance(event, DtmfDigit):
                self.digits.append(event.digit)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        gen = ToneGenerator((self.tone,)) if self.tone else None
        due = loop.time()
        while True:
            assert self.stream is not None
            frame = gen.frame() if gen is not None else SILENCE
            heard, out = self.stream.tick(frame if self.sending else None, loop.time())
            self.heard.append(heard)
            for transmit in out:
                data = self.srtp.protect(transmit.data) if self.srtp else transmit.data
                self._transports[0].sendto(data, transmit.address)
            due += 0.02
            await asyncio.sleep(max(0.0, due - loop.time()))

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for transport in self._transports:
            transport.close()


@dataclass
class Harness:
    """A media node running in-process on a real Redis, in its own key namespace."""

    node: MediaNode
    redis: Any
    keys: Keys
    task: asyncio.Task[None]
    counter: int = 0

    @property
    def executor(self) -> Executor:
        return self.node.executor

    def new_session(self) -> tuple[str, str]:
        sid = new_sid(f"{uuid.uuid4()}@test")
        return sid, f"{sid}.m"

    async def command(
        self, ctype: str, sid: str, cid: str | None = None, *, pool: bool = False, **data: Any
    ) -> str:
        """XADD a command to the pool or to the node's own stream; its id."""
        self.counter += 1
        cid = cid or f"{sid}:cmd/{self.counter}"
        stream = self.keys.media_pool() if pool else self.keys.media_commands(self.node.name)
        fields = {"id": cid, "type": ctype, "sid": sid, "data": msgpack.packb(data)}
        await self.redis.xadd(stream, fields)
        return cid

    async def events(self, sid: str) -> list[Event]:
        """Every event published so far to the session's partition."""
        stream = self.keys.events(self.keys.partition_of(sid))
        found = [decode_event(fields) for _, fields in await self.redis.xrange(stream)]
        return [e for e in found if e.sid == sid]

    async def wait_for(
        self, sid: str, predicate: Callable[[list[Event]], bool], timeout: float = 5.0
    ) -> list[Event]:
        """Poll the partition stream until ``predicate(events of sid)`` holds."""
        deadline = time.monotonic() + timeout
        while True:
            events = await self.events(sid)
            if predicate(events):
                return events
            assert time.monotonic() < deadline, f"timed out; events so far: {events}"
            await asyncio.sleep(0.02)

    async def event(self, sid: str, event_type: str, timeout: float = 5.0) -> Event:
        """The first event of ``event_type`` for ``sid`` (waiting for it)."""
        events = await self.wait_for(sid, lambda es: any(e.type == event_type for e in es), timeout)
        return next(e for e in events if e.type == event_type)

    async def stop(self) -> None:
        self.node.stop()
        self.node.stop()
        await asyncio.wait_for(self.task, 10)


def free_range(size: int = 20) -> tuple[int, int]:
    """A loopback port range nobody seems to use (probed by binding its first port)."""
    rng = random.Random()
    for _ in range(50):
        first = rng.randrange(30000, 60000 - size, 2)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind((LOOPBACK, first))
            except OSError:
                continue
        return first, first + size - 1
    raise AssertionError("no free port range")


async def start_node(
    url: str, name: str = "m1", keys: Keys | None = None, **executor: Any
) -> Harness:
    """Start a node on a fresh namespace (or ``keys``'); ``executor`` overrides Executor
    arguments."""
    redis = connect(url)
    keys = keys or Keys(f"t{uuid.uuid4().hex[:8]}")
    first, last = free_range()
    args = {"sdp_address": LOOPBACK, "codecs": available_codecs(), **executor}
    node = MediaNode(
        redis, keys, args, name=name, ports=PortAllocator(LOOPBACK, first, last), block_ms=20
    )
    return Harness(node, redis, keys, asyncio.create_task(node.run()))


async def stop_node(harness: Harness) -> None:
    """Stop the node if it still runs, delete its keys, close Redis."""
    if not harness.task.done():
        await harness.stop()
    await delete_namespace(harness.redis, harness.keys.ns)
    await harness.redis.aclose()
