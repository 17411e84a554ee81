"""A conference room's audio mixer, sans-I/O: one call per 20 ms tick, frames in, frames out.

Contract with the caller (the media node, later):

* Every frame is 20 ms of mono signed 16-bit little-endian linear PCM at the room's one rate,
  the app frame format of :mod:`sessiond.media.codecs` (8 kHz, 160 samples, 320 octets, unless
  the room is built with another ``frame_samples``). Decoding each member's RTP (G.711, Opus,
  after SRTP and the jitter buffer) into such frames, and encoding each output back to the
  member's codec, is the caller's job; a frame of another length is a :class:`ValueError`.
* :meth:`Room.tick` gets the frames that arrived for this tick (member id -> frame). A member
  without a frame contributes silence; frames of non-members (late packets after a leave) are
  ignored. It returns a :class:`Tick` with one output frame for *every* member.
* Members who hear the same thing get the same ``bytes`` object (all listeners who do not talk
  hear the full mix), so the caller can encode once per distinct object per codec.

Mixing: contributions are summed once into unbounded Python ints; a talking member hears the
sum minus its own contribution (the N-1 mix), so the cost is one pass per contributor plus one
per output, not N x N. Only the output is brought back to 16 bits, by saturation (never
wraparound) or, with ``limiter=True``, by a per-listener gain that drops at once to fit the
frame's peak and recovers by 0.5 dB per frame. All arithmetic is C-level ``map`` over
``array``/``list`` (no numpy; ``audioop`` is gone in Python 3.13).

Member flags: ``muted`` (others do not hear it), ``deaf`` (hears nothing from the room),
``gain_db`` (what others hear of it, -24..+12 dB), ``whisper_to`` (heard by that one member only,
on top of the room; the whisperer still hears the room). A :class:`FrameSource` (a tone or a
prompt, e.g. :class:`~sessiond.media.playback.Player`) plays into the whole room or into one
member's output; a source aimed at a deaf member is still heard by it, since it was asked for.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import repeat
from operator import add, mul, rshift, sub
from typing import Protocol, TypeAlias

from sessiond.media.codecs import FRAME_SAMPLES
from sessiond.media.vad import VoiceActivity

GAIN_MIN_DB = -24.0
GAIN_MAX_DB = 12.0
_Q = 15  # fixed-point fraction bits for gains
_UNITY = 1 << _Q
_LO, _HI = -32768, 32767
_RELEASE = 10 ** (0.5 / 20)  # limiter recovery per frame
_BIG_ENDIAN = sys.byteorder == "big"

Samples: TypeAlias = "list[int] | array[int]"


class FrameSource(Protocol):
    """Something that plays into a room, one frame per tick (``Player`` fits)."""

    def next_frame(self) -> bytes | None:
        """The next frame, or None when the source is over."""
        ...


@dataclass(frozen=True, slots=True)
class TalkingChanged:
    """A member started or stopped talking (the level is the frame's, in dBov)."""

    member: str
    talking: bool
    level_dbov: float


@dataclass(frozen=True, slots=True)
class SourceFinished:
    """A source ran out of frames, or lost the member it played to (not sent for stop())."""

    source: str
    member: str | None


@dataclass(frozen=True, slots=True)
class Tick:
    """One tick's result: ``frames`` per member, and the room ``mix`` (what a silent,
    non-whispered-to listener hears: the feed for a room recording)."""

    frames: dict[str, bytes]
    mix: bytes
    talking: tuple[TalkingChanged, ...]
    finished: tuple[SourceFinished, ...]


def gain_to_q(gain_db: float) -> int:
    """A dB gain as a fixed-point factor; :class:`ValueError` outside the allowed range."""
    if not GAIN_MIN_DB <= gain_db <= GAIN_MAX_DB:
        raise ValueError(f"gain must be within {GAIN_MIN_DB}..{GAIN_MAX_DB} dB, not {gain_db}")
    return round(10 ** (gain_db / 20) * _UNITY)


def _scale(samples: Iterable[int], q: int) -> list[int]:
    return list(map(rshift, map(mul, samples, repeat(q)), repeat(_Q)))


def _plus(acc: Samples | None, samples: Samples) -> Samples:
    return samples if acc is None else list(map(add, acc, samples))


def _pack(samples: array[int]) -> bytes:
    if _BIG_ENDIAN:
        samples.byteswap()
    return samples.tobytes()


class _Limiter:
    """Per-listener soft limiter state: the gain applied to its previous frame."""

    __slots__ = ("gain",)

    def __init__(self) -> None:
        self.gain = 1.0

    def apply(self, values: list[int]) -> array[int]:
        gain = min(1.0, self.gain * _RELEASE)
        peak = max(max(values), -min(values))
        if peak * gain > _HI:
            gain = _HI / peak
        self.gain = gain
        if gain >= 1.0:
            return array("h", values)
        # floor(gain * 2**15) keeps |v| * q >> 15 within 16 bits for |v| <= peak.
        return array("h", _scale(values, int(gain * _UNITY)))


def _saturate(values: list[int]) -> array[int]:
    try:
        return array("h", values)
    except OverflowError:  # rare: clip only then (a comprehension beats map(min/max) here)
        return array("h", [(_HI if v > _HI else _LO if v < _LO else v) for v in values])


def _sum(frames: list[Samples]) -> Samples | None:
    """Element-wise sum; zip(*) with one C-level sum per column beats pairwise adds."""
    if len(frames) < 2:
        return frames[0] if frames else None
    return list(map(sum, zip(*frames, strict=True)))


class Member:
    """One member's flags and per-member state; change the flags between ticks."""

    __slots__ = ("id", "muted", "deaf", "vad", "_gain_db", "_gain_q", "_whisper_to", "_limiter")

    def __init__(
        self,
        member_id: str,
        *,
        muted: bool = False,
        deaf: bool = False,
        gain_db: float = 0.0,
        whisper_to: str | None = None,
        vad: VoiceActivity | None = None,
    ) -> None:
        self.id = member_id
        self.muted = muted
        self.deaf = deaf
        self.vad = vad if vad is not None else VoiceActivity()
        self._gain_q = gain_to_q(gain_db)
        self._gain_db = gain_db
        self._whisper_to: str | None = None
        self.whisper_to = whisper_to
        self._limiter = _Limiter()

    @property
    def gain_db(self) -> float:
        """Input gain: how loud the others hear this member."""
        return self._gain_db

    @gain_db.setter
    def gain_db(self, value: float) -> None:
        self._gain_q = gain_to_q(value)
        self._gain_db = value

    @property
    def whisper_to(self) -> str | None:
        """The only member who hears this one (None: the whole room hears it)."""
        return self._whisper_to

    @whisper_to.setter
    def whisper_to(self, value: str | None) -> None:
        if value == self.id:
            raise ValueError(f"member {self.id} cannot whisper to itself")
        self._whisper_to = value


class Room:
    """The mixer of one conference room: members, sources, and :meth:`tick`."""

    def __init__(self, *, frame_samples: int = FRAME_SAMPLES, limiter: bool = False) -> None:
        self.frame_samples = frame_samples
        self.frame_bytes = 2 * frame_samples
        self.silence = bytes(self.frame_bytes)
        self.limiter = limiter
        self.members: dict[str, Member] = {}
        self._zeros = [0] * frame_samples
        self._sources: dict[str, tuple[FrameSource, str | None]] = {}
        self._mix_limiter = _Limiter()

    def join(
        self,
        member_id: str,
        *,
        muted: bool = False,
        deaf: bool = False,
        gain_db: float = 0.0,
        whisper_to: str | None = None,
        vad: VoiceActivity | None = None,
    ) -> Member:
        """Add a member (flags as for :class:`Member`); it is mixed from the next tick."""
        if member_id in self.members:
            raise ValueError(f"{member_id} is already in the room")
        member = Member(
            member_id, muted=muted, deaf=deaf, gain_db=gain_db, whisper_to=whisper_to, vad=vad
        )
        self.members[member_id] = member
        return member

    def leave(self, member_id: str) -> None:
        """Remove a member; sources aimed at it end (reported by the next tick).

        No TalkingChanged is reported for a member who leaves while talking."""
        del self.members[member_id]

    def play(self, source_id: str, source: FrameSource, to: str | None = None) -> None:
        """Mix ``source`` into every output (``to`` None) or into member ``to``'s only."""
        if source_id in self._sources:
            raise ValueError(f"source {source_id} is already playing")
        if to is not None and to not in self.members:
            raise KeyError(to)
        self._sources[source_id] = (source, to)

    def stop(self, source_id: str) -> bool:
        """Stop a source now (no SourceFinished is reported for it); False if unknown."""
        return self._sources.pop(source_id, None) is not None

    @property
    def sources(self) -> dict[str, str | None]:
        """Playing sources and whom they play to (None: the room)."""
        return {sid: to for sid, (_, to) in self._sources.items()}

    def tick(self, frames: Mapping[str, bytes]) -> Tick:
        """Mix one 20 ms tick; ``frames`` holds the frames that arrived, by member id."""
        talking: list[TalkingChanged] = []
        own: dict[str, Samples] = {}
        whispers: dict[str, Samples] = {}  # by listener
        for member in self.members.values():
            samples = self._samples(frames.get(member.id), member.id)
            change = member.vad.update(samples)
            if change is not None:
                talking.append(TalkingChanged(member.id, change, member.vad.level))
            if samples is None or member.muted:
                continue
            contribution = samples if member._gain_q == _UNITY else _scale(samples, member._gain_q)
            target = member.whisper_to
            if target is None:
                own[member.id] = contribution
            elif target in self.members:
                whispers[target] = _plus(whispers.get(target), contribution)
        aimed: dict[str, Samples] = {}  # member-aimed sources, by listener
        room_sources, finished = self._play_sources(aimed)
        total = _sum([*own.values(), *room_sources])
        mix = self.silence if total is None else self._render(total, self._mix_limiter)
        outputs: dict[str, bytes] = {}
        for member_id, member in self.members.items():
            source = aimed.get(member_id)
            if member.deaf:
                # Nothing from the room, but a source aimed at this member still plays.
                out = self.silence if source is None else self._render(source, member._limiter)
            else:
                extra = whispers.get(member_id)
                if source is not None:
                    extra = _plus(extra, source)
                out = self._output(member, total, own.get(member_id), extra, mix)
            outputs[member_id] = out
        return Tick(outputs, mix, tuple(talking), tuple(finished))

    def _samples(self, frame: bytes | None, owner: str) -> array[int] | None:
        """A frame as samples; None for no frame or digital silence (nothing to add)."""
        if frame is None or frame == self.silence:
            return None
        if len(frame) != self.frame_bytes:
            raise ValueError(f"{owner}: frame of {len(frame)} octets, expected {self.frame_bytes}")
        samples = array("h", frame)
        if _BIG_ENDIAN:
            samples.byteswap()
        return samples

    def _play_sources(
        self, aimed: dict[str, Samples]
    ) -> tuple[list[Samples], list[SourceFinished]]:
        """Next frames of the sources: those for the room are returned, others go to aimed."""
        room: list[Samples] = []
        finished: list[SourceFinished] = []
        for source_id, (source, to) in list(self._sources.items()):
            frame = source.next_frame() if to is None or to in self.members else None
            if frame is None:
                del self._sources[source_id]
                finished.append(SourceFinished(source_id, to))
                continue
            samples = self._samples(frame, f"source {source_id}")
            if samples is None:
                continue
            if to is None:
                room.append(samples)
            else:
                aimed[to] = _plus(aimed.get(to), samples)
        return room, finished

    def _output(
        self,
        member: Member,
        total: Samples | None,
        mine: Samples | None,
        extra: Samples | None,
        mix: bytes,
    ) -> bytes:
        """The room minus this member's own contribution, plus what only it hears."""
        if extra is None:
            if mine is None:
                return mix
            if mine is total:  # the only sound in the room is this member's own
                return self.silence
        values: Iterable[int] = self._zeros if total is None else total
        if mine is not None:
            values = map(sub, values, mine)
        if extra is not None:
            values = map(add, values, extra)
        return self._render(values, member._limiter)

    def _render(self, values: Iterable[int], limiter: _Limiter) -> bytes:
        materialised = list(values)
        out = limiter.apply(materialised) if self.limiter else _saturate(materialised)
        return _pack(out)
