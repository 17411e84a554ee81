"""A SimplePeer hosts a conference room: it answers two calls and joins them to a room of its
own media node (``Call.join``, ``SimplePeer.rooms``); the callers, two more SimplePeers over
real SIP and RTP, hear each other; leaving and the room record through ``rooms``."""

from __future__ import annotations

import asyncio
import contextlib
import math
from array import array

import pytest

from sessiond import Call, CallEnded, MemberJoined, MemberLeft, RoomEmpty, SimplePeer

from .audio_checks import goertzel
from .helpers import free_udp_port

pytestmark = pytest.mark.timeout(90)


def _frames(hz: float) -> list[bytes]:
    step = 2 * math.pi * hz / 8000
    return [
        array("h", (int(8000 * math.sin(step * (k * 160 + i))) for i in range(160))).tobytes()
        for k in range(50)
    ]


async def _send(call: Call, hz: float) -> None:
    frames = _frames(hz)
    with contextlib.suppress(CallEnded, TimeoutError):
        while True:
            for frame in frames:
                await call.send_audio(frame)


async def _hears(call: Call, hz: float, timeout: float = 20.0) -> None:
    """Wait until ``hz`` dominates what ``call`` hears (0.4 s windows)."""
    async with asyncio.timeout(timeout):
        while True:
            samples = array("h")
            for _ in range(20):
                samples.frombytes(await call.recv_audio())
            if max(samples, default=0) > 2000 and goertzel(samples, hz) > 20 * max(
                goertzel(samples, 1000.0), goertzel(samples, 300.0), 1.0
            ):
                return


async def test_a_peer_mixes_its_calls_in_a_room() -> None:
    host = SimplePeer("host", port=free_udp_port(), rtp_ports="27000-27099")
    alice = SimplePeer("alice", port=free_udp_port(), rtp_ports="27100-27199")
    carol = SimplePeer("carol", port=free_udp_port(), rtp_ports="27200-27299", codecs=["PCMA"])
    async with host, alice, carol:
        assert await host.rooms.create("huddle")
        calls: dict[str, Call] = {}
        for name, peer in (("alice", alice), ("carol", carol)):
            placing = asyncio.create_task(peer.call(host.uri))
            incoming = await host.incoming_call(timeout=10)
            member = await incoming.accept()
            calls[name] = await placing
            joined = await member.join("huddle")
            assert isinstance(joined, MemberJoined)
            assert joined.room == "huddle"
            calls[f"host-{name}"] = member
        senders = [
            asyncio.create_task(_send(calls["alice"], 440.0)),
            asyncio.create_task(_send(calls["carol"], 880.0)),
        ]
        try:
            await _hears(calls["alice"], 880.0)
            await _hears(calls["carol"], 440.0)
            shown = await host.rooms.show("huddle")
            assert set(shown["members"]) == {calls["host-alice"].sid, calls["host-carol"].sid}
            assert shown["media_node"]
            left = await calls["host-alice"].leave_room()
            assert isinstance(left, MemberLeft)
            assert left.members == 1
            await host.client.rooms.remove(calls["host-carol"].sid)
            empty = await calls["host-carol"].wait_for(RoomEmpty)
            assert empty.room == "huddle"
            assert await host.rooms.names() == []
        finally:
            for task in senders:
                task.cancel()
