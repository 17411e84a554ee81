"""The media node over real UDP sockets and a real Redis: audio, DTMF, record, play, bridge."""

from __future__ import annotations

import asyncio
import socket
import wave
from array import array
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sessiond.media.offer_answer import MediaNegotiator
from sessiond.media.sdp import SessionDescription

from .node_helpers import (
    LOOPBACK,
    FarEnd,
    Harness,
    dominant,
    goertzel,
    softphone_offer,
    start_node,
    stop_node,
    view_of_answer,
)

pytestmark = pytest.mark.redis


@pytest.fixture
async def node(redis_url: str) -> AsyncIterator[Harness]:
    harness = await start_node(redis_url)
    yield harness
    await stop_node(harness)


@pytest.fixture
async def far() -> AsyncIterator[FarEnd]:
    far_end = FarEnd()
    yield far_end
    far_end.close()


async def answered(node: Harness, far: FarEnd, codecs: str = "8 0 101") -> tuple[str, str, str]:
    """Offer from ``far`` to the node through the pool; (sid, media_id, answer SDP)."""
    sid, media_id = node.new_session()
    port, rtcp = await far.open()
    offer = softphone_offer(port, rtcp, codecs)
    await node.command("create", sid, pool=True, media_id=media_id, mode="answer", remote_sdp=offer)
    ready = await node.event(sid, "MediaReady")
    assert ready.data["media_node"] == node.node.name
    assert ready.data["media_id"] == media_id
    answer = str(ready.data["sdp"])
    far.start(view_of_answer(answer))
    return sid, media_id, answer


def samples(frames: list[bytes]) -> array[int]:
    return array("h", b"".join(frames))


async def test_answer_record_tone_and_receive_dtmf(
    node: Harness, far: FarEnd, tmp_path: Path
) -> None:
    far.tone = 440.0
    sid, media_id, answer = await answered(node, far)
    sdp = SessionDescription.parse(answer)
    audio, video = sdp.media
    assert audio.formats == ("8", "0", "101")  # the offerer's order, its payload types
    assert video.port == 0  # the video stream is rejected, in place
    assert audio.port in node.node.ports.ports
    assert f"c=IN IP4 {LOOPBACK}" in answer
    path = tmp_path / "in.wav"
    await node.command("record", sid, media_id=media_id, path=str(path), direction="in")
    await asyncio.sleep(1.0)
    assert far.stream is not None
    far.stream.send_dtmf("15#")
    await node.wait_for(sid, lambda es: sum(e.type == "DtmfReceived" for e in es) >= 3)
    await asyncio.sleep(0.3)  # redundant end packets arrive meanwhile: no repeats
    await node.command("stop_record", sid, media_id=media_id)
    stopped = await node.event(sid, "RecordingStopped")
    assert stopped.data["path"] == str(path)
    assert float(stopped.data["seconds"]) > 1.0
    events = await node.events(sid)
    assert [e.data["digit"] for e in events if e.type == "DtmfReceived"] == ["1", "5", "#"]
    assert all(e.data["media_id"] == media_id for e in events)
    with wave.open(str(path)) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (8000, 1, 2)
        recorded = array("h", wav.readframes(wav.getnframes()))
    tone = recorded[1600:7200]  # 0.2-0.9 s: the tone, before the digits muted it
    assert dominant(tone, (300.0, 440.0, 600.0, 1000.0)) == 440.0
    assert goertzel(tone, 440.0) > 50 * goertzel(tone, 600.0)


async def test_a_quiet_answer_sends_nothing_until_answered(node: Harness, far: FarEnd) -> None:
    """RFC 3264 6: an answerer's leg sends once its answer is out. Until the ``answered``
    command (the 200 or 183 carrying our SDP went to the edge) no RTP or RTCP leaves the
    leg, and a play waits; then silence and the prompt flow."""
    sid, media_id = node.new_session()
    port, rtcp = await far.open()
    offer = softphone_offer(port, rtcp)
    await node.command(
        "create", sid, pool=True, media_id=media_id, mode="answer", remote_sdp=offer, quiet=True
    )
    ready = await node.event(sid, "MediaReady")
    far.start(view_of_answer(str(ready.data["sdp"])))
    await node.command("play", sid, media_id=media_id, tone=1000, seconds=0.2)
    await node.command("send_dtmf", sid, media_id=media_id, digits="7", duration_ms=80)
    await asyncio.sleep(0.5)
    assert far.received == 0
    assert node.executor.legs[media_id].sent == 0
    await node.command("answered", sid, media_id=media_id)
    finished = await node.event(sid, "PlayFinished")  # the prompt played only now
    assert finished.data["reason"] == "done"
    for _ in range(100):  # and the digit queued while quiet went out, not lost
        if far.digits:
            break
        await asyncio.sleep(0.02)
    assert far.digits == ["7"]
    assert far.received > 5
    await node.command("answered", sid, media_id="not-here")  # unknown leg: a no-op
    await node.command("destroy", sid, media_id=media_id)


async def test_silence_then_play_tone_then_destroy_frees_port(node: Harness, far: FarEnd) -> None:
    sid, media_id, answer = await answered(node, far)
    await asyncio.sleep(0.3)
    assert far.received > 5  # silence frames keep NATs and latching peers informed
    await node.command("play", sid, media_id=media_id, tone=1000, seconds=0.6)
    finished = await node.event(sid, "PlayFinished")
    assert finished.data == {"media_id": media_id, "reason": "done"}
    await asyncio.sleep(0.1)  # the jitter buffer of the far end plays the last frames
    loud = [f for f in far.heard if max(array("h", f)) > 2000]
    assert 20 <= len(loud) <= 32  # 0.6 s = 30 frames (a stall under load may skip some)
    assert dominant(samples(loud), (440.0, 1000.0, 1500.0)) == 1000.0
    port = SessionDescription.parse(answer).media[0].port
    await node.command("destroy", sid, media_id=media_id)
    await node.command("destroy", sid, media_id=media_id)  # idempotent
    for _ in range(50):
        if media_id not in node.executor.legs:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.05)  # the transports close on the next loop iteration
    assert node.node.ports.in_use == 0
    for p in (port, port + 1):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((LOOPBACK, p))


async def test_offer_then_update_with_the_answer(node: Harness, far: FarEnd) -> None:
    sid, media_id = node.new_session()
    await node.command("create", sid, pool=True, media_id=media_id, mode="offer")
    offer = str((await node.event(sid, "MediaReady")).data["sdp"])
    port, _ = await far.open()
    callee = MediaNegotiator(LOOPBACK, port)
    answer, view = callee.create_answer(SessionDescription.parse(offer))
    await node.command("update", sid, media_id=media_id, remote_sdp=str(answer))
    far.start(view)
    await node.command("play", sid, media_id=media_id, tone=440, seconds=0.5)
    await node.event(sid, "PlayFinished")
    await asyncio.sleep(0.1)
    loud = [f for f in far.heard if max(array("h", f)) > 2000]
    assert len(loud) >= 20
    assert dominant(samples(loud), (440.0, 1000.0)) == 440.0
    assert not [e for e in await node.events(sid) if e.type == "MediaFailed"]


async def test_bridge_relays_audio_and_transcodes(node: Harness) -> None:
    alice, bob = FarEnd(tone=440.0), FarEnd()
    try:
        sid_a, media_a, answer_a = await answered(node, alice, "8 101")  # PCMA
        sid_b, media_b, answer_b = await answered(node, bob, "0 101")  # PCMU
        assert "PCMA" in answer_a
        assert "PCMU" in answer_b
        await node.command("bridge", sid_a, media_id=media_a, other=media_b)
        await asyncio.sleep(1.0)
        loud = [f for f in bob.heard if max(array("h", f)) > 2000]
        assert len(loud) >= 25
        assert dominant(samples(loud), (300.0, 440.0, 1000.0)) == 440.0
        await node.command("unbridge", sid_b, media_id=media_b)
        await asyncio.sleep(0.3)
        before = len(bob.heard)
        await asyncio.sleep(0.3)
        assert max(max(array("h", f)) for f in bob.heard[before:]) < 500  # silence again
    finally:
        alice.close()
        bob.close()


async def test_send_dtmf_reaches_the_far_end(node: Harness, far: FarEnd) -> None:
    sid, media_id, _ = await answered(node, far)
    await node.command("send_dtmf", sid, media_id=media_id, digits="42*", duration_ms=80)
    for _ in range(100):
        if len(far.digits) >= 3:
            break
        await asyncio.sleep(0.02)
    assert far.digits == ["4", "2", "*"]
