"""The in-process audio tap of a media leg: frames in from the application, frames out to it."""

from __future__ import annotations

import asyncio
from array import array

from sessiond.core.messages import CreateLeg, UpdateLeg
from sessiond.core.types import Event
from sessiond.media.codecs import SILENCE
from sessiond.media.commands import Executor, MediaCommand
from sessiond.media.leg import AudioTap
from sessiond.media.node import available_codecs
from sessiond.media.ports import PortAllocator
from sessiond.media.tones import ToneGenerator

from .audio_checks import dominant

SID = "0123456789-abcdef012345"


def test_tap_returns_none_when_empty_and_drops_the_oldest_when_full() -> None:
    tap = AudioTap(maxsize=2)
    assert tap.next_frame() is None
    tap.source.put_nowait(b"a" * 320)
    assert tap.next_frame() == b"a" * 320
    for frame in (b"1", b"2", b"3"):
        tap.deliver(frame)
    assert [tap.sink.get_nowait(), tap.sink.get_nowait()] == [b"2", b"3"]


async def test_frames_from_the_tap_cross_rtp_to_the_other_legs_tap() -> None:
    loop = asyncio.get_running_loop()
    events: list[Event] = []
    executor = Executor(
        name="tap",
        sdp_address="127.0.0.1",
        ports=PortAllocator("127.0.0.1", 27100, 27199),
        codecs=available_codecs(),
        emit=events.append,
        clock=loop.time,
    )
    try:
        (offer,) = await executor.execute(
            MediaCommand("c1", "create", SID, CreateLeg(media_id="a.m", mode="offer"))
        )
        answer_data = CreateLeg(media_id="b.m", mode="answer", remote_sdp=offer.data["sdp"])
        (answer,) = await executor.execute(MediaCommand("c2", "create", SID, answer_data))
        update = UpdateLeg(media_id="a.m", remote_sdp=answer.data["sdp"])
        await executor.execute(MediaCommand("c3", "update", SID, update))
        alice, bob = executor.legs["a.m"], executor.legs["b.m"]
        sent, heard = AudioTap(maxsize=100), AudioTap(maxsize=100)
        alice.attach_audio(sent)
        bob.attach_audio(heard)
        tone = ToneGenerator((440.0,))
        for _ in range(60):
            sent.source.put_nowait(tone.frame())
            now = loop.time()
            alice.tick(now)
            bob.tick(now)
            await asyncio.sleep(0.02)
        frames = [heard.sink.get_nowait() for _ in range(heard.sink.qsize())]
        assert len(frames) == 60
        assert all(len(f) == 320 for f in frames)
        assert sent.source.empty()  # one frame taken per tick
        samples = array("h", b"".join(f for f in frames if f != SILENCE))
        assert len(samples) > 8000 // 2  # at least half a second of tone arrived
        assert dominant(samples, (440.0, 880.0, 1000.0)) == 440.0
        alice.attach_audio(None)
        assert alice.tap is None
    finally:
        executor.close_all("test")
