"""Media commands: decoding a stream entry, and executing it against this node's legs.

Each command returns the events it caused (published by the node before the entry is acked);
their ids derive from the command id, so a command executed twice yields the same event ids and
the worker refuses the repeats. ``create`` is idempotent per media id: a second create for a
leg that exists re-publishes the first MediaReady instead of allocating again; ``destroy`` of
an unknown leg does nothing.

Failures of ``create``/``update`` become ``MediaFailed`` (488 for SDP/offer-answer problems,
503 when no port is free, 500 otherwise); a failed play or record ends with its
``PlayFinished``/``RecordingStopped`` carrying ``reason: "failed"``.

An entry's data is read once, into its record (:mod:`sessiond.core.messages`), straight from
its MessagePack bytes; the handlers read the record's attributes. A command whose fields are
missing or of the wrong type ends as those handlers end on a bad field: a create, update or
reoffer in ``MediaFailed`` 500, a play or record in its failed event, the others refused.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import msgspec

from sessiond.core.messages import (
    RECORDS,
    Bridge,
    CreateLeg,
    LegEvent,
    MediaFailed,
    MediaLeg,
    MediaReady,
    Play,
    Record,
    Reoffer,
    SendDtmf,
    UpdateLeg,
)
from sessiond.core.types import Event
from sessiond.media.errors import MediaError, OfferAnswerError, SdpError
from sessiond.media.leg import Emit, Leg
from sessiond.media.lost import leg_entry
from sessiond.media.offer_answer import MediaNegotiator
from sessiond.media.playback import Player, Recorder
from sessiond.media.ports import NoFreePort, PortAllocator
from sessiond.media.sdes_sdp import SrtpPolicy
from sessiond.media.sdp import Codec, Direction, Origin, SessionDescription
from sessiond.media.wav import read_wav
from sessiond.store.entries import EntryError, decode

log = logging.getLogger("sessiond.media")


R = TypeVar("R", bound=MediaLeg, covariant=True)
_RECORDS: dict[str, type[MediaLeg]] = {
    t: cls for cls in RECORDS if issubclass(cls, MediaLeg) for t in cls.TYPES
}
# type -> a decoder of the packed data straight into its record (no map in between: 7x
# faster than unpacking the map and reading it by field name)
_DECODERS = {t.encode(): msgspec.msgpack.Decoder(cls, strict=False) for t, cls in _RECORDS.items()}


class CommandError(MediaError):
    """A command entry is malformed or names something that does not exist."""


@dataclass(frozen=True, slots=True)
class MediaCommand(Generic[R]):
    """One decoded command stream entry, its data read into its record. A command of an
    unknown type, or whose fields are missing or of the wrong type, has ``problem`` set and
    only its ``media_id`` (when that is a string) in a plain :class:`MediaLeg`."""

    id: str
    type: str
    sid: str
    data: R
    problem: str = ""


def decode_command(fields: Mapping[bytes, bytes]) -> MediaCommand[MediaLeg]:
    """Decode an entry (``id``, ``type``, ``sid``, msgpack ``data``); CommandError if bad."""
    decoder = _DECODERS.get(fields.get(b"type"))  # type: ignore[arg-type]
    if decoder is not None and len(fields) == 4:  # a worker's entry: id, type, sid, data
        try:
            cid, sid = fields[b"id"].decode(), fields[b"sid"].decode()
            if cid:
                kind = fields[b"type"].decode()
                return MediaCommand(cid, kind, sid, decoder.decode(fields[b"data"]))
        except (KeyError, AttributeError, UnicodeDecodeError, msgspec.MsgspecError):
            pass  # read again the slow way below, for today's outcome
    try:
        entry = decode(fields)
    except (EntryError, UnicodeDecodeError) as exc:
        raise CommandError(f"undecodable command entry: {exc!r}") from exc
    if not entry.id or not entry.type:
        raise CommandError("command entry without id, type or a map as data")
    record = _RECORDS.get(entry.type)
    if record is None:
        problem = f"unknown media command {entry.type!r}"
    else:
        try:
            data = msgspec.convert(entry.data, record, strict=False)
            return MediaCommand(entry.id, entry.type, entry.sid, data)
        except msgspec.ValidationError as exc:
            problem = f"malformed {entry.type}: {exc}"
    media_id = entry.data.get("media_id")
    only = MediaLeg(media_id=media_id if isinstance(media_id, str) else "")
    return MediaCommand(entry.id, entry.type, entry.sid, only, problem)


def _given(value: str | None, name: str) -> str:
    """A field the command needs: not missing, not empty."""
    if not value:
        raise CommandError(f"field {name!r} must be a non-empty string")
    return value


def failed_event(cmd: MediaCommand[MediaLeg], media_id: str, code: int, reason: str) -> Event:
    data = MediaFailed(code=code, reason=reason, media_id=media_id).data()
    return Event(f"{cmd.id}:failed", "MediaFailed", data, cmd.sid)


class Executor:
    """This node's legs, and the commands that create, change and end them."""

    def __init__(
        self,
        *,
        name: str,
        sdp_address: str,
        ports: PortAllocator,
        codecs: tuple[Codec, ...],
        emit: Emit,
        clock: Callable[[], float],
        inactivity_timeout: float | None = 30.0,
        files_dir: str | None = None,
        srtp: SrtpPolicy = SrtpPolicy.OFF,
    ) -> None:
        self.name = name
        self.srtp = srtp  # the SRTP policy of a create that names none
        self.sdp_address = sdp_address
        self.ports = ports
        self.codecs = codecs
        self.emit = emit
        self.clock = clock
        self.inactivity_timeout = inactivity_timeout
        self.files_dir = Path(files_dir).resolve() if files_dir else None
        self.legs: dict[str, Leg] = {}
        #: legs created (media id -> leg entry) or ended (None) since the node last wrote
        #: its legs hash (:mod:`sessiond.media.lost`)
        self.changes: dict[str, str | None] = {}
        #: told of every leg created (the node's :class:`~sessiond.media.ticker.LegSchedule`)
        self.on_leg: Callable[[Leg], None] | None = None
        self.received = 0  # datagrams of legs already ended (for the packet counters)
        self.sent = 0
        self._handlers: dict[str, Callable[[Any], Awaitable[list[Event]]]] = {
            "create": self.create,
            "update": self.update,
            "reoffer": self.reoffer,
            "destroy": self.destroy,
            "answered": self.answered,
            "play": self.play,
            "stop_play": self.stop_play,
            "record": self.record,
            "stop_record": self.stop_record,
            "send_dtmf": self.send_dtmf,
            "bridge": self.bridge,
            "unbridge": self.unbridge,
        }

    async def execute(self, cmd: MediaCommand[MediaLeg]) -> list[Event]:
        """Run one command; the events it caused. CommandError for unknown types/bad fields.
        (Each handler takes the record of its type: :func:`decode_command` read it so.)"""
        handler = self._handlers.get(cmd.type)
        if handler is None:
            raise CommandError(f"unknown media command {cmd.type!r}")
        _given(cmd.data.media_id, "media_id")
        if cmd.problem:
            return self._malformed(cmd)
        return await handler(cmd)

    def _malformed(self, cmd: MediaCommand[MediaLeg]) -> list[Event]:
        """A command whose fields are missing or of the wrong type: what its handler does
        with a bad field."""
        if cmd.type in ("create", "update", "reoffer"):
            return [failed_event(cmd, cmd.data.media_id, 500, cmd.problem)]
        if cmd.type == "play":
            return [self._play_failed(cmd, self._leg(cmd), cmd.problem)]
        if cmd.type == "record":
            return [self._record_failed(cmd, self._leg(cmd), cmd.problem)]
        raise CommandError(cmd.problem)

    def _leg(self, cmd: MediaCommand[MediaLeg]) -> Leg:
        media_id = _given(cmd.data.media_id, "media_id")
        leg = self.legs.get(media_id)
        if leg is None:
            raise CommandError(f"no media session {media_id!r} on {self.name}")
        return leg

    def _path(self, value: str) -> Path:
        path = Path(value)
        if self.files_dir is None:
            return path
        path = (self.files_dir / path).resolve()
        if not path.is_relative_to(self.files_dir):
            raise CommandError(f"{value!r} is outside the media files directory")
        return path

    # -- life of a leg ------------------------------------------------------------------------

    async def create(self, cmd: MediaCommand[CreateLeg]) -> list[Event]:
        """Allocate a port pair, make the offer or the answer, publish MediaReady. An answer
        with ``quiet`` sends nothing until the ``answered`` command.

        ``origin`` (an o= value) makes the leg continue a session the far end knows from a
        lost media node: same o= username and session id, a higher version; ``direction``
        (default sendrecv) is what we offer or answer; ``srtp`` the SRTP policy (default: this
        node's)."""
        data = cmd.data
        media_id = data.media_id
        existing = self.legs.get(media_id)
        if existing is not None and existing.origin != cmd.id and data.origin:
            # we were declared lost while still running, and the call moved back here
            self.end(existing, cmd.id)
            existing = None
        if existing is not None:
            return [existing.ready] if existing.ready else []
        mode = data.mode
        if mode not in ("offer", "answer"):
            return [
                failed_event(cmd, media_id, 500, f"create mode must be offer or answer: {mode!r}")
            ]
        try:
            previous = Origin.parse(data.origin) if data.origin else None
            direction = Direction("sendrecv" if data.direction is None else data.direction)
            srtp = SrtpPolicy.parse(data.srtp) if data.srtp else self.srtp
        except (SdpError, ValueError) as exc:
            return [failed_event(cmd, media_id, 500, str(exc))]
        try:
            pair = self.ports.allocate()
        except NoFreePort as exc:
            return [failed_event(cmd, media_id, 503, str(exc))]
        negotiator = MediaNegotiator(
            self.sdp_address, pair.port, self.codecs, previous=previous, srtp=srtp
        )
        leg = Leg(
            media_id,
            cmd.sid,
            negotiator,
            pair,
            self.emit,
            self.clock,
            inactivity_timeout=self.inactivity_timeout,
            cname=f"{self.name}/{media_id}",
            origin=cmd.id,
            latch_private=bool(data.latch_private),
        )
        self.legs[media_id] = leg
        if self.on_leg is not None:
            self.on_leg(leg)
        try:
            if mode == "offer":
                sdp = negotiator.create_offer(direction)
                leg.awaiting_answer = True
            else:
                offer = SessionDescription.parse(_given(data.remote_sdp, "remote_sdp"))
                sdp, result = negotiator.create_answer(offer, direction)
                leg.negotiated(result)
            await leg.open()
        except Exception as exc:
            self.end(leg, cmd.id)
            return [self._failure(cmd, media_id, exc)]
        leg.quiet = mode == "answer" and bool(data.quiet)
        leg.ready = self._ready(cmd, leg, sdp)
        self.changes[media_id] = leg_entry(media_id, leg.sid or cmd.sid, leg.origin)
        return [leg.ready]

    def _ready(self, cmd: MediaCommand[MediaLeg], leg: Leg, sdp: SessionDescription) -> Event:
        data = MediaReady(sdp=str(sdp), media_node=self.name, media_id=leg.media_id).data()
        return Event(f"{cmd.id}:ready", "MediaReady", data, leg.sid or cmd.sid)

    def _failure(self, cmd: MediaCommand[MediaLeg], media_id: str, exc: Exception) -> Event:
        if isinstance(exc, OfferAnswerError | SdpError):
            return failed_event(cmd, media_id, 488, str(exc))
        if isinstance(exc, CommandError):
            return failed_event(cmd, media_id, 500, str(exc))
        log.exception("%s %s failed", cmd.type, media_id)
        return failed_event(cmd, media_id, 500, f"{type(exc).__name__}: {exc}")

    async def update(self, cmd: MediaCommand[UpdateLeg]) -> list[Event]:
        """Apply the answer to our offer, or answer a new offer (MediaReady with the new SDP)."""
        data = cmd.data
        try:
            leg = self._leg(cmd)
            remote = SessionDescription.parse(_given(data.remote_sdp, "remote_sdp"))
            if leg.awaiting_answer or data.answer:
                again = not leg.awaiting_answer
                leg.negotiated(leg.negotiator.process_answer(remote, again=again))
                leg.awaiting_answer = False
                return []
            direction = Direction("sendrecv" if data.direction is None else data.direction)
            sdp, result = leg.negotiator.create_answer(remote, direction)
            leg.negotiated(result)
        except Exception as exc:
            return [self._failure(cmd, data.media_id, exc)]
        leg.ready = self._ready(cmd, leg, sdp)
        return [leg.ready]

    async def reoffer(self, cmd: MediaCommand[Reoffer]) -> list[Event]:
        """A new offer on an existing leg (hold: ``sendonly``/``inactive``; resume or session
        refresh: ``sendrecv``); the ``update`` with the far end's answer completes it. The
        o= version only changes when the body does (RFC 3264 8)."""
        try:
            leg = self._leg(cmd)
            direction = Direction(cmd.data.direction)
            if direction is Direction.RECVONLY:
                raise CommandError("a re-offer is sendrecv, sendonly or inactive")
            sdp = leg.negotiator.create_offer(direction)
            leg.awaiting_answer = True
        except Exception as exc:
            return [self._failure(cmd, cmd.data.media_id, exc)]
        leg.ready = self._ready(cmd, leg, sdp)
        return [leg.ready]

    async def answered(self, cmd: MediaCommand[MediaLeg]) -> list[Event]:
        """Our answer has gone out (in a 200 or a 183): a leg created ``quiet`` may send now.
        An unknown media id is a no-op (the leg may have moved to another node)."""
        leg = self.legs.get(cmd.data.media_id)
        if leg is not None:
            leg.quiet = False
        return []

    async def destroy(self, cmd: MediaCommand[MediaLeg]) -> list[Event]:
        """End a leg and free its port and files; an unknown media id is a no-op."""
        leg = self.legs.get(cmd.data.media_id)
        if leg is not None:
            self.end(leg, cmd.id)
        return []

    def end(self, leg: Leg, command_id: str) -> None:
        """Close a leg and free its port pair, whatever happens while closing."""
        if self.legs.pop(leg.media_id, None) is not None:
            self.changes[leg.media_id] = None
        try:
            leg.close(command_id)
        finally:
            self.ports.release(leg.port)
            self.received += leg.received
            self.sent += leg.sent

    def close_all(self, reason: str) -> None:
        """End every leg (node shutdown)."""
        for leg in list(self.legs.values()):
            self.end(leg, f"{self.name}:{reason}:{leg.media_id}")

    # -- audio --------------------------------------------------------------------------------

    async def play(self, cmd: MediaCommand[Play]) -> list[Event]:
        """Play a tone (``tone``: Hz) or a WAV file (``file``); PlayFinished when it ends."""
        leg, data = self._leg(cmd), cmd.data
        seconds, loop, tone = data.seconds, bool(data.loop), data.tone
        try:
            if tone is not None and 0 < tone < 4000:
                leg.play(Player(f"{cmd.id}:played", tone=tone, seconds=seconds, loop=loop))
                return []
            path = self._path(_given(data.file, "file"))
            frames = await asyncio.get_running_loop().run_in_executor(None, read_wav, path)
        except (MediaError, OSError) as exc:
            return [self._play_failed(cmd, leg, str(exc))]
        if self.legs.get(leg.media_id) is leg:  # not destroyed while the file was read
            leg.play(Player(f"{cmd.id}:played", frames=frames, seconds=seconds, loop=loop))
        return []

    @staticmethod
    def _play_failed(cmd: MediaCommand[MediaLeg], leg: Leg, error: str) -> Event:
        failed = LegEvent(media_id=leg.media_id, reason="failed", error=error).data()
        return Event(f"{cmd.id}:played", "PlayFinished", failed, leg.sid)

    async def stop_play(self, cmd: MediaCommand[MediaLeg]) -> list[Event]:
        """End the current play early (its PlayFinished says ``stopped``)."""
        self._leg(cmd).stop_play("stopped")
        return []

    async def record(self, cmd: MediaCommand[Record]) -> list[Event]:
        """Record to a WAV file (8 kHz PCM16); ``direction`` in, out or both (default)."""
        leg, data = self._leg(cmd), cmd.data
        try:
            path = self._path(_given(data.path, "path"))
            recorder = Recorder(path, "both" if data.direction is None else data.direction)
        except (ValueError, OSError, CommandError) as exc:
            return [self._record_failed(cmd, leg, str(exc))]
        leg.record(recorder, cmd.id)
        return []

    @staticmethod
    def _record_failed(cmd: MediaCommand[MediaLeg], leg: Leg, error: str) -> Event:
        failed = LegEvent(media_id=leg.media_id, reason="failed", error=error).data()
        return Event(f"{cmd.id}:recorded", "RecordingStopped", failed, leg.sid)

    async def stop_record(self, cmd: MediaCommand[MediaLeg]) -> list[Event]:
        """Close the recording; RecordingStopped {path, seconds}."""
        self._leg(cmd).stop_record(cmd.id)
        return []

    async def send_dtmf(self, cmd: MediaCommand[SendDtmf]) -> list[Event]:
        """Send digits as RFC 4733 events (in-band tones if the peer has no telephone-event)."""
        duration = 100 if cmd.data.duration_ms is None else cmd.data.duration_ms
        if not 40 <= duration <= 5000:
            raise CommandError("duration_ms must be an integer from 40 to 5000")
        try:
            self._leg(cmd).send_dtmf(_given(cmd.data.digits, "digits"), duration)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        return []

    async def bridge(self, cmd: MediaCommand[Bridge]) -> list[Event]:
        """Relay audio between ``media_id`` and ``other``, both on this node."""
        leg = self._leg(cmd)
        other = self.legs.get(_given(cmd.data.other, "other"))
        if other is None or other is leg:
            raise CommandError(f"cannot bridge {leg.media_id} to {cmd.data.other!r}")
        leg.bridge(other)
        return []

    async def unbridge(self, cmd: MediaCommand[MediaLeg]) -> list[Event]:
        """Stop relaying audio; each leg goes back to silence."""
        self._leg(cmd).unbridge()
        return []
