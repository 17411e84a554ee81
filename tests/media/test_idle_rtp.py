"""Idle legs under ``--idle-rtp keepalive``, over real UDP sockets and a real Redis: a leg
with nothing to play sends one silence packet per keepalive period (marked, its timestamp
moved on by the time not sent) and its RTCP, and is off the 20 ms tick; a play or a bridge
puts it back on the tick at once. And the load a node reports to the edges."""

from __future__ import annotations

import asyncio
import struct
import time
from array import array
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from sessiond.edge.admission import MediaCapacity
from sessiond.media.codecs import SILENCE
from sessiond.media.g711 import ulaw_encode
from sessiond.media.node import MediaNode
from sessiond.media.rtp import is_rtcp
from sessiond.media.sdes_sdp import SrtpPolicy

from .node_helpers import (
    LOOPBACK,
    FarEnd,
    Harness,
    dominant,
    softphone_offer,
    start_node,
    stop_node,
    view_of_answer,
)
from .test_node_srtp import answered as srtp_answered

pytestmark = pytest.mark.redis
KEEPALIVE = 1.0
PCMU_SILENCE = ulaw_encode(SILENCE)


@dataclass
class Packet:
    at: float
    marker: bool
    seq: int
    ts: int


class _Proto(asyncio.DatagramProtocol):
    def __init__(self, listener: Listener) -> None:
        self.listener = listener

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.listener.got(data)


@dataclass
class Listener:
    """A far end that only listens: what arrives on its RTP and RTCP ports."""

    rtp: list[Packet] = field(default_factory=list)
    rtcp: list[bytes] = field(default_factory=list)
    transports: list[Any] = field(default_factory=list)

    async def open(self) -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        ports = []
        for _ in range(2):
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Proto(self), local_addr=(LOOPBACK, 0)
            )
            self.transports.append(transport)
            ports.append(transport.get_extra_info("sockname")[1])
        return ports[0], ports[1]

    def got(self, data: bytes) -> None:
        if is_rtcp(data):
            self.rtcp.append(data)
            return
        _, second, seq, ts = struct.unpack("!BBHI", data[:8])
        self.rtp.append(Packet(time.monotonic(), bool(second & 0x80), seq, ts))

    def close(self) -> None:
        for transport in self.transports:
            transport.close()


@pytest.fixture
async def node(redis_url: str) -> AsyncIterator[Harness]:
    harness = await start_node(redis_url)
    harness.node.schedule.keepalive = KEEPALIVE  # as --idle-rtp keepalive --idle-keepalive 1
    yield harness
    await stop_node(harness)


async def _until(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def _answer(node: Harness, port: int, rtcp: int) -> tuple[str, str, str]:
    sid, media_id = node.new_session()
    offer = softphone_offer(port, rtcp, "0 101")
    await node.command("create", sid, pool=True, media_id=media_id, mode="answer", remote_sdp=offer)
    ready = await node.event(sid, "MediaReady")
    return sid, media_id, str(ready.data["sdp"])


async def test_an_idle_leg_sends_keepalives_and_rtcp_only(node: Harness) -> None:
    far = Listener()
    try:
        sid, media_id, _ = await _answer(node, *await far.open())
        await _until(lambda: node.node.schedule.sleeping == 1)
        await _until(lambda: len(far.rtp) >= 4)  # the first packet, then keepalives
        start, first = time.monotonic(), len(far.rtp)
        await _until(lambda: far.rtcp != [], timeout=15.0)  # RTCP at its own interval
        await asyncio.sleep(max(0.0, 3.0 - (time.monotonic() - start)))
        elapsed = time.monotonic() - start
        # the send policy would have sent 50 a second; at most one per second here
        assert len(far.rtp) - first <= elapsed / KEEPALIVE + 1
        packets = far.rtp
        for before, after in zip(packets, packets[1:], strict=False):
            assert after.seq == (before.seq + 1) & 0xFFFF  # consecutive: nothing else sent
            assert after.marker  # each starts a talkspurt after frames not sent
            frames = (after.ts - before.ts) % 2**32 // 160
            gap = (after.at - before.at) / 0.02
            assert abs(frames - gap) <= 0.3 * gap + 5  # the clock ran while nothing was sent
        leg = node.executor.legs[media_id]
        assert leg not in node.node.schedule.active

        # a play wakes it at once: 20 ms frames, then asleep again
        before = len(far.rtp)
        await node.command("play", sid, media_id=media_id, tone=1000, seconds=0.6)
        await node.event(sid, "PlayFinished")
        assert len(far.rtp) - before >= 20
        await _until(lambda: node.node.schedule.sleeping == 1)
        await node.command("destroy", sid, media_id=media_id)
        await _until(lambda: not node.executor.legs)
        await _until(lambda: any(p[1] == 203 for p in _parts(far.rtcp)))  # RTCP BYE
    finally:
        far.close()


def _parts(compounds: list[bytes]) -> list[bytes]:
    """Every RTCP packet of the compounds received (to find the BYE, type 203)."""
    out = []
    for data in compounds:
        while len(data) >= 4:
            length = (struct.unpack("!H", data[2:4])[0] + 1) * 4
            out.append(data[:length])
            data = data[length:]
    return out


async def test_a_bridge_wakes_sleeping_legs_and_relays_audio(node: Harness) -> None:
    alice, bob = FarEnd(tone=440.0), FarEnd()
    try:
        sids = []
        for far in (alice, bob):
            sid, media_id, answer = await _answer(node, *await far.open())
            far.sending = far is alice
            far.start(view_of_answer(answer))
            sids.append((sid, media_id))
        await _until(lambda: node.node.schedule.sleeping == 2)
        (sid_a, media_a), (sid_b, media_b) = sids
        await node.command("bridge", sid_a, media_id=media_a, other=media_b)
        await _until(lambda: len([f for f in bob.heard if max(array("h", f)) > 2000]) >= 25)
        loud = [f for f in bob.heard if max(array("h", f)) > 2000]
        assert dominant(array("h", b"".join(loud)), (300.0, 440.0, 1000.0)) == 440.0
        await node.command("unbridge", sid_b, media_id=media_b)
        await _until(lambda: node.node.schedule.sleeping == 2)
    finally:
        alice.close()
        bob.close()


async def test_a_node_falling_behind_reports_no_free_legs(node: Harness) -> None:
    """Two heartbeats in a row over the limit (here: any tick at all) and the node reports
    0 free, which the edges read as full; the report names its load for operators."""
    mine: MediaNode = node.node
    key, name = node.keys.media_capacity(), mine.name

    async def report() -> str:
        raw = await node.redis.hget(key, name)
        return raw.decode() if raw else ""

    deadline = time.monotonic() + 10
    while not await report():  # the first heartbeat
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    first = (await report()).split()
    assert int(first[0]) == mine.ports.capacity
    assert first[3] == "legs=0"
    mine.max_tick_busy = -1.0
    deadline = time.monotonic() + 10
    while not (await report()).startswith("0 "):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    assert mine.overloaded
    capacity = MediaCapacity()
    capacity.observe({name: await report()}, 0.0)
    assert capacity.known
    assert (capacity.free, capacity.capacity) == (0, mine.ports.capacity)
    mine.max_tick_busy = 0.7
    deadline = time.monotonic() + 10
    while (await report()).startswith("0 "):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)


async def test_keepalives_of_an_srtp_leg_are_protected(redis_url: str) -> None:
    """SRTP stays on the send path of a sleeping leg: its keepalives authenticate at the far
    end, and a tone played afterwards too (the SRTP index follows the sequence numbers)."""
    harness = await start_node(redis_url, srtp=SrtpPolicy.REQUIRE)
    harness.node.schedule.keepalive = KEEPALIVE
    far = FarEnd()
    far.sending = False
    try:
        sid, media_id, _ = await srtp_answered(harness, far)
        await _until(lambda: harness.node.schedule.sleeping == 1)
        await _until(lambda: len(far.wire) >= 3)  # the first packet and keepalives
        assert far.refused == 0
        await harness.command("play", sid, media_id=media_id, tone=1000, seconds=0.4)
        await harness.event(sid, "PlayFinished")
        await _until(lambda: len([f for f in far.heard if max(array("h", f)) > 2000]) >= 10)
        assert far.refused == 0
    finally:
        far.close()
        await stop_node(harness)


@dataclass
class _Recording(FarEnd):
    """A far end that also keeps the header of every RTP packet it receives."""

    packets: list[Packet] = field(default_factory=list)
    silent: set[int] = field(default_factory=set)  # indexes of the PCMU silence packets

    def receive(self, data: bytes, source: tuple[str, int]) -> None:
        if not is_rtcp(data):
            _, second, seq, ts = struct.unpack("!BBHI", data[:8])
            if data[12:] == PCMU_SILENCE:
                self.silent.add(len(self.packets))
            self.packets.append(Packet(time.monotonic(), bool(second & 0x80), seq, ts))
        super().receive(data, source)


def _loud(frames: list[bytes]) -> list[bytes]:
    return [f for f in frames if max(array("h", f)) > 2000]


@pytest.mark.parametrize("policy", ["keepalive", "send"])
async def test_a_bridge_relays_what_arrives_and_nothing_for_a_silent_end(
    redis_url: str, policy: str
) -> None:
    """Two bridged legs, Alice sending a tone, Bob sending no RTP: under ``keepalive`` the
    node sends Alice nothing but keepalives (``send``: 50 silence packets a second); Bob
    gets Alice's audio complete and in order either way; when Bob starts sending, Alice gets
    his audio at once, its first packet marked and its timestamp moved on by the time not
    sent (RFC 3550 5.1, RFC 3551 4.1)."""
    harness = await start_node(redis_url)
    if policy == "keepalive":
        harness.node.schedule.keepalive = KEEPALIVE
    alice, bob = _Recording(tone=440.0), _Recording(tone=1000.0)
    try:
        legs = []
        for far in (alice, bob):
            sid, media_id, answer = await _answer(harness, *await far.open())
            far.sending = far is alice
            far.start(view_of_answer(answer))
            legs.append((sid, media_id))
        (sid_a, media_a), (_, media_b) = legs
        await harness.command("bridge", sid_a, media_id=media_a, other=media_b)
        await _until(lambda: len(_loud(bob.heard)) >= 10)
        await asyncio.sleep(0.5)  # what was sent before the bridge is out of the way
        start, to_alice, to_bob = time.monotonic(), len(alice.packets), len(bob.packets)
        await asyncio.sleep(2.0)
        elapsed = time.monotonic() - start
        silent = alice.packets[to_alice:]
        if policy == "keepalive":
            assert 1 <= len(silent) <= elapsed / KEEPALIVE + 1  # keepalives (NAT) only
            assert all(p.marker for p in silent)
        else:
            assert len(silent) >= 0.7 * elapsed / 0.02  # a silence frame every 20 ms
        relayed = bob.packets[to_bob:]
        assert len(relayed) >= 0.7 * elapsed / 0.02
        for before, after in zip(relayed, relayed[1:], strict=False):
            assert after.seq == (before.seq + 1) & 0xFFFF  # complete, in order
            assert (after.ts - before.ts) % 2**32 == 160
            assert not after.marker
        assert dominant(array("h", b"".join(_loud(bob.heard))), (440.0, 1000.0)) == 440.0

        # Bob starts talking: his audio reaches Alice at once
        talk, sent = time.monotonic(), len(alice.packets)
        bob.sending = True
        await _until(lambda: len(_loud(alice.heard)) >= 25)
        assert dominant(array("h", b"".join(_loud(alice.heard))), (440.0, 1000.0)) == 1000.0
        assert time.monotonic() - talk < 1.5
        at = next(i for i in range(sent, len(alice.packets)) if i not in alice.silent)
        before, after = alice.packets[at - 1], alice.packets[at:]
        first = after[0]  # the first packet of Bob's audio (keepalives may come before)
        assert first.seq == (before.seq + 1) & 0xFFFF
        frames = (first.ts - before.ts) % 2**32 // 160
        gap = (first.at - before.at) / 0.02
        assert abs(frames - gap) <= 0.3 * gap + 5  # the clock ran while nothing was sent
        if policy == "keepalive":
            assert first.marker  # the talkspurt's first packet
            assert first.at - talk < 0.5
        for one, two in zip(after, after[1:], strict=False):
            assert two.seq == (one.seq + 1) & 0xFFFF
            assert (two.ts - one.ts) % 2**32 == 160
            assert not two.marker
    finally:
        alice.close()
        bob.close()
        await stop_node(harness)
