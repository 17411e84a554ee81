"""Media command entries read into their typed records: a command whose fields are missing
or of the wrong type ends as a bad field did when the node read the data map by name."""

from __future__ import annotations

import time
from typing import Any

import msgpack
import pytest

from sessiond.core.messages import CreateLeg, MediaLeg, Play
from sessiond.core.types import Event
from sessiond.media.commands import CommandError, Executor, decode_command
from sessiond.media.node import available_codecs
from sessiond.media.ports import PortAllocator


def entry(kind: str, **data: Any) -> dict[bytes, bytes]:
    packed = msgpack.packb(data)
    return {b"id": b"c1", b"type": kind.encode(), b"sid": b"s1", b"data": packed}


def executor() -> Executor:
    return Executor(
        name="m1",
        sdp_address="127.0.0.1",
        ports=PortAllocator("127.0.0.1", 27300, 27309),
        codecs=available_codecs(),
        emit=lambda event: None,
        clock=time.monotonic,
    )


def test_a_command_is_read_into_its_record() -> None:
    cmd = decode_command(entry("create", media_id="a.m", mode="offer", quiet=True))
    assert (cmd.id, cmd.type, cmd.sid, cmd.problem) == ("c1", "create", "s1", "")
    assert cmd.data == CreateLeg(media_id="a.m", mode="offer", quiet=True)
    assert decode_command(entry("play", media_id="a.m", tone=440)).data == Play(
        media_id="a.m", tone=440.0
    )


def test_garbage_is_refused_at_decoding() -> None:
    with pytest.raises(CommandError):
        decode_command({b"id": b"x", b"type": b"create", b"sid": b"", b"data": b"\xc1"})
    with pytest.raises(CommandError):
        decode_command({b"type": b"create", b"data": msgpack.packb({"media_id": "a"})})


async def test_malformed_commands_end_as_a_bad_field_did() -> None:
    ex = executor()
    (failed,) = await ex.execute(decode_command(entry("create", media_id="a.m")))  # no mode
    assert (failed.type, failed.data["code"], failed.data["media_id"]) == (
        "MediaFailed",
        500,
        "a.m",
    )
    (failed,) = await ex.execute(decode_command(entry("update", media_id="a.m", remote_sdp=5)))
    assert (failed.type, failed.data["code"]) == ("MediaFailed", 500)
    for cmd in (
        entry("create", media_id=5, mode="offer"),  # media_id: refused, no event
        entry("send_dtmf", media_id="a.m", digits=5),
        entry("frobnicate", media_id="a.m"),
    ):
        with pytest.raises(CommandError):
            await ex.execute(decode_command(cmd))
    unknown = decode_command(entry("frobnicate", media_id="a.m"))
    assert unknown.data == MediaLeg(media_id="a.m")
    assert unknown.problem


async def test_a_malformed_play_ends_in_a_failed_play() -> None:
    ex = executor()
    (ready,) = await ex.execute(decode_command(entry("create", media_id="a.m", mode="offer")))
    assert ready.type == "MediaReady"
    try:
        (done,) = await ex.execute(decode_command(entry("play", media_id="a.m", file=5)))
        assert isinstance(done, Event)
        assert (done.type, done.data["reason"]) == ("PlayFinished", "failed")
        (done,) = await ex.execute(decode_command(entry("record", media_id="a.m", path=7)))
        assert (done.type, done.data["reason"]) == ("RecordingStopped", "failed")
    finally:
        ex.close_all("test")
