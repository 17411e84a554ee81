"""Conference rooms on a media node (sessiond.media.rooms): real legs on loopback sockets, the
room record on a real Redis (and the embedded store), the commands the tables send.

Each member's far end is a UDP socket of this test that sends PCMU tone packets (RFC 3550
headers built here) and decodes what the leg sends back; the test ticks the legs and the
rooms as the node's 20 ms clock does."""

from __future__ import annotations

import asyncio
import math
import socket
import struct
import wave
from array import array
from pathlib import Path
from typing import Any

import pytest

from api.audio_checks import goertzel
from sessiond.core.messages import (
    ConferenceJoin,
    ConferenceMember,
    ConferencePlay,
    ConferenceRecord,
    CreateLeg,
    MediaLeg,
)
from sessiond.core.types import Event
from sessiond.media import g711
from sessiond.media.commands import Executor, MediaCommand
from sessiond.media.node import available_codecs
from sessiond.media.ports import PortAllocator
from sessiond.media.rooms import Conferences
from sessiond.store import Keys
from sessiond.store.rooms import RoomStore

pytestmark = pytest.mark.timeout(60)
LOOP = "127.0.0.1"
TONES = {"a": 440.0, "b": 660.0, "c": 880.0}
_PORTS = iter(range(31000, 34000, 40))


def _tone(hz: float, k: int) -> bytes:
    step = 2 * math.pi * hz / 8000
    pcm = array("h", (int(6000 * math.sin(step * (k * 160 + i))) for i in range(160)))
    return g711.ulaw_encode(pcm.tobytes())


class FarEnd:
    """A phone: sends a tone (or nothing), keeps the PCM it receives."""

    def __init__(self, hz: float | None) -> None:
        self.hz = hz
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOP, 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.leg_port = 0
        self.heard = array("h")
        self.seq = 0
        self.ssrc = 1000 + self.port

    def offer(self) -> str:
        return (
            f"v=0\r\no=far 1 1 IN IP4 {LOOP}\r\ns=-\r\nc=IN IP4 {LOOP}\r\nt=0 0\r\n"
            f"m=audio {self.port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
            "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n"
        )

    def send(self, k: int) -> None:
        if self.hz is None:
            return
        self._packet(0, _tone(self.hz, k), k * 160)

    def send_digit(self, event: int, k: int) -> None:
        for end in (0, 0, 0x80, 0x80):  # RFC 4733: start, update, end (sent thrice)
            self._packet(101, struct.pack("!BBH", event, end | 10, 800), k * 160)

    def _packet(self, pt: int, payload: bytes, ts: int) -> None:
        self.seq += 1
        header = struct.pack("!BBHII", 0x80, pt, self.seq & 0xFFFF, ts & 0xFFFFFFFF, self.ssrc)
        self.sock.sendto(header + payload, (LOOP, self.leg_port))

    def drain(self) -> None:
        while True:
            try:
                data = self.sock.recv(2048)
            except BlockingIOError:
                return
            if len(data) > 12 and data[1] & 0x7F == 0:
                self.heard.frombytes(g711.ulaw_decode(data[12:]))

    def recent(self, frames: int = 25) -> array[int]:
        return self.heard[-160 * frames :]


def level(samples: array[int], hz: float) -> float:
    """The power of ``hz``'s bin averaged over 80 ms windows (the jitter buffer may repeat
    or skip a frame, which breaks the phase of a longer window)."""
    windows = [samples[i : i + 640] for i in range(0, len(samples) - 639, 640)]
    return sum(goertzel(w, hz) for w in windows) / max(1, len(windows))


def hears(samples: array[int], hz: float) -> bool:
    """``hz`` is clearly in ``samples`` (a tone of amplitude 6000 is ~3e12; silence and
    G.711 noise stay below 1e10)."""
    return level(samples, hz) > 1e11


class Node:
    """One node's executor and rooms, with far ends for its legs."""

    def __init__(self, client: Any, keys: Keys, name: str = "m1") -> None:
        self.events: list[Event] = []
        loop = asyncio.get_running_loop()
        start = next(_PORTS)
        self.executor = Executor(
            name=name,
            sdp_address=LOOP,
            ports=PortAllocator(LOOP, start, start + 39),
            codecs=available_codecs(),
            emit=self.events.append,
            clock=loop.time,
            inactivity_timeout=None,
        )
        self.rooms = Conferences(self.executor, RoomStore(client, keys))
        self.far: dict[str, FarEnd] = {}
        self.k = 0

    async def run(self, cmd_type: str, sid: str, data: Any) -> list[Event]:
        cmd = MediaCommand(f"{cmd_type}-{sid}-{len(self.events)}-{self.k}", cmd_type, sid, data)
        events = await self.executor.execute(cmd)
        self.events.extend(events)
        return events

    async def leg(self, sid: str, hz: float | None) -> None:
        far = self.far[sid] = FarEnd(hz)
        data = CreateLeg(media_id=f"{sid}.m", mode="answer", remote_sdp=far.offer())
        (ready,) = await self.run("create", sid, data)
        assert ready.type == "MediaReady"
        far.leg_port = self.executor.legs[f"{sid}.m"].port

    async def join(self, sid: str, room: str = "r1", **flags: Any) -> Event:
        events = await self.run(
            "conf_join", sid, ConferenceJoin(media_id=f"{sid}.m", room=room, **flags)
        )
        return events[-1]

    async def ticks(self, n: int, silent: frozenset[str] = frozenset()) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(n):
            for sid, far in self.far.items():
                if sid not in silent:
                    far.send(self.k)
            self.k += 1
            await asyncio.sleep(0.004)  # the datagrams arrive
            now = loop.time()
            for leg in list(self.executor.legs.values()):
                leg.tick(now)
            self.rooms.tick()
            await asyncio.sleep(0.004)
            for far in self.far.values():
                far.drain()

    def close(self) -> None:
        self.executor.close_all("test")
        for far in self.far.values():
            far.sock.close()


@pytest.fixture
async def node(backend: tuple[str, Any, Keys]) -> Any:
    _, client, keys = backend
    n = Node(client, keys)
    yield n
    n.close()


def _types(events: list[Event]) -> list[str]:
    return [e.type for e in events]


async def test_each_member_hears_the_others_and_flags_change_the_mix(
    node: Node, backend: tuple[str, Any, Keys]
) -> None:
    _, client, keys = backend
    for sid, hz in TONES.items():
        await node.leg(sid, hz)
        joined = await node.join(sid)
        assert joined.type == "ConferenceJoined"
    assert joined.data["members"] == 3
    record = await RoomStore(client, keys).record("r1")
    assert record["media_node"] == "m1"
    await node.ticks(40)
    for sid, hz in TONES.items():
        heard = node.far[sid].recent()
        assert not hears(heard, hz), sid
        assert all(hears(heard, f) for s, f in TONES.items() if s != sid), sid
    assert "TalkingChanged" in _types(node.events)

    # mute a: nobody hears 440; deaf b: b hears nothing; c whispers to a: only a hears 880
    await node.run("conf_set", "a", ConferenceMember(media_id="a.m", muted=True))
    await node.run("conf_set", "b", ConferenceMember(media_id="b.m", deaf=True))
    await node.run("conf_set", "c", ConferenceMember(media_id="c.m", whisper_to="a"))
    members = await RoomStore(client, keys).members("r1")
    assert (members["a"].muted, members["b"].deaf, members["c"].whisper_to) == (True, True, "a")
    await node.ticks(30)
    a, b, c = (node.far[s].recent(20) for s in "abc")
    assert hears(a, 660.0)
    assert hears(a, 880.0)  # the whisper
    assert not any(hears(b, f) for f in TONES.values())  # deaf
    assert not hears(c, 440.0)  # a is muted
    assert hears(c, 660.0)

    # back to normal; -12 dB on b makes it quieter for a
    await node.run("conf_set", "a", ConferenceMember(media_id="a.m", muted=False))
    await node.run("conf_set", "b", ConferenceMember(media_id="b.m", deaf=False))
    await node.run("conf_set", "c", ConferenceMember(media_id="c.m", whisper_to=""))
    await node.ticks(20)
    loud = level(node.far["a"].recent(15), 660.0)
    await node.run("conf_set", "b", ConferenceMember(media_id="b.m", gain_db=-12.0))
    await node.ticks(20)
    quiet = level(node.far["a"].recent(15), 660.0)
    assert loud / 30 < quiet < loud / 8  # -12 dB is 1/16 in power


async def test_a_member_whose_rtp_stops_is_silence_and_digits_are_events(node: Node) -> None:
    for sid, hz in TONES.items():
        await node.leg(sid, hz)
        await node.join(sid)
    await node.ticks(30)
    assert hears(node.far["a"].recent(), 660.0)
    await node.ticks(30, silent=frozenset({"b"}))  # b's phone stops sending
    assert not hears(node.far["a"].recent(20), 660.0)
    assert hears(node.far["a"].recent(20), 880.0)
    node.far["b"].send_digit(5, node.k)
    await node.ticks(5)
    digits = [e for e in node.events if e.type == "DtmfReceived"]
    assert [(e.sid, e.data["digit"]) for e in digits] == [("b", "5")]


async def test_plays_recording_and_leaving(
    node: Node, backend: tuple[str, Any, Keys], tmp_path: Path
) -> None:
    _, client, keys = backend
    for sid in ("a", "b"):
        await node.leg(sid, None)  # silent members: only the plays are heard
        await node.join(sid)
    wav = tmp_path / "room.wav"
    await node.run("conf_record", "a", ConferenceRecord(media_id="a.m", path=str(wav)))
    assert (await RoomStore(client, keys).record("r1"))["recording"] == str(wav)
    await node.run("conf_play", "a", ConferencePlay(media_id="a.m", tone=1200.0, seconds=0.4))
    await node.ticks(30)
    for sid in "ab":
        assert hears(node.far[sid].recent(30), 1200.0), sid
    played = [e for e in node.events if e.type == "PlayFinished"]
    assert [(e.sid, e.data["reason"]) for e in played] == [("a", "done")]
    # to one member only
    play = ConferencePlay(media_id="b.m", tone=1500.0, seconds=0.4, member=True)
    await node.run("conf_play", "b", play)
    await node.ticks(25)
    assert hears(node.far["b"].recent(25), 1500.0)
    assert not hears(node.far["a"].recent(25), 1500.0)
    # a WAV file into the room; a file that is not there fails the play
    prompt = tmp_path / "prompt.wav"
    with wave.open(str(prompt), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        step = 2 * math.pi * 1800 / 8000
        w.writeframes(array("h", (int(6000 * math.sin(step * n)) for n in range(3200))).tobytes())
    await node.run("conf_play", "b", ConferencePlay(media_id="b.m", file=str(prompt)))
    await node.ticks(25)
    for sid in "ab":
        assert hears(node.far[sid].recent(25), 1800.0), sid
    failed = await node.run(
        "conf_play", "a", ConferencePlay(media_id="a.m", file=str(tmp_path / "none.wav"))
    )
    assert [(e.type, e.data["reason"]) for e in failed] == [("PlayFinished", "failed")]
    await node.run("conf_stop_record", "a", MediaLeg(media_id="a.m"))
    stopped = [e for e in node.events if e.type == "RecordingStopped"]
    assert stopped[-1].data["reason"] == "stopped"
    with wave.open(str(wav)) as w:
        samples = array("h", w.readframes(w.getnframes()))
    assert hears(samples, 1200.0)  # the room's play, not the one for b alone
    assert not hears(samples, 1500.0)

    left = await node.run("conf_leave", "a", MediaLeg(media_id="a.m"))
    assert _types(left) == ["ConferenceLeft"]
    assert left[0].data["members"] == 1
    gone = await node.run("destroy", "b", MediaLeg(media_id="b.m"))
    assert _types(gone) == ["ConferenceLeft", "RoomEmpty"]
    assert await RoomStore(client, keys).record("r1") == {}
    assert await RoomStore(client, keys).names() == []


async def test_a_room_on_another_node_moves_the_call_unless_that_node_is_dead(
    node: Node, backend: tuple[str, Any, Keys]
) -> None:
    _, client, keys = backend
    await RoomStore(client, keys).create("r1", "m2")
    await client.set(keys.heartbeat("media", "m2"), "1", ex=5)  # m2 is alive
    await node.leg("a", 440.0)
    answer = await node.join("a")
    assert answer.type == "ConferenceElsewhere"
    assert answer.data["media_node"] == "m2"
    assert "a.m" not in node.rooms.room_of
    assert node.executor.legs["a.m"].quiet  # its call moves: this copy sends nothing
    await client.delete(keys.heartbeat("media", "m2"))  # m2 died: m1 takes the room over
    answer = await node.join("a")
    assert answer.type == "ConferenceJoined"
    assert not node.executor.legs["a.m"].quiet
    record = await RoomStore(client, keys).record("r1")
    assert (record["media_node"], record["moves"]) == ("m1", "1")


async def test_moving_between_rooms_and_flags_kept_across_nodes(
    node: Node, backend: tuple[str, Any, Keys]
) -> None:
    _, client, keys = backend
    await node.leg("a", 440.0)
    await node.join("a")
    moved = await node.run("conf_join", "a", ConferenceJoin(media_id="a.m", room="r2", muted=True))
    assert _types(moved) == ["ConferenceLeft", "RoomEmpty", "ConferenceJoined"]
    assert moved[0].data["reason"] == "moved to another room"
    # m1 is gone (it never heartbeat here): the call's new leg on m3 joins r2 again, and
    # is mixed with the flags the record kept, not the (default) ones of the command
    other = Node(client, keys, "m3")
    try:
        await other.leg("a", 440.0)
        joined = await other.join("a", room="r2")
        assert joined.type == "ConferenceJoined"
        assert other.rooms.rooms["r2"].flags["a"].muted
        record = await RoomStore(client, keys).record("r2")
        assert (record["media_node"], record["moves"]) == ("m3", "1")
    finally:
        other.close()
