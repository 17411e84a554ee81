"""Conference rooms on a media node: the legs of a room mixed by :mod:`sessiond.media.mixer`.

Theory of operation
-------------------
A room lives on one media node (the record's ``media_node``, :mod:`sessiond.store.rooms`).
``conf_join`` for a leg of this node runs ``room_join.lua``: if the room has no node, or this
one, or a node that no longer heartbeats, the room is (now) this node's and the leg is mixed
into it; if it lives on another live node the session gets ``ConferenceElsewhere`` and moves
its leg there by re-INVITE (the table's ``conference.move``), then joins again. A node that
dies takes its rooms with it; their members' calls move to live nodes (media node loss) and
join again, and the first to join takes the room over: the room is re-created where its
members are, with their stored flags.

Every 20 ms, after every leg was ticked (each decoded what it received into ``leg.heard``,
silence when its RTP stopped), :meth:`Conferences.tick` mixes each room's members
(:meth:`sessiond.media.mixer.Room.tick`: each hears the mix minus itself, with mute, deaf,
gain and whisper applied) and gives each leg its frame to send at its next tick
(``leg.room_frame``), one tick later. Legs decode and encode their own codecs, so members
may use different ones. The room's mix goes to its recording, if any.

Leaving: ``conf_leave``, a ``conf_join`` for another room, or the leg's ``destroy`` (the
call ended) remove the member from the record (``room_leave.lua``; the last one out removes
the room: ``RoomEmpty``). A leg that ends otherwise (node shutdown, fenced, orphaned) only
leaves this node's mixer: its call is moving, and stays a member of the record.

Events (ids derived from the command's, or the leg's origin and a counter): ConferenceJoined,
ConferenceLeft, RoomEmpty, TalkingChanged, ConferenceElsewhere to the member's session, and
PlayFinished / RecordingStopped to the session that asked for a room play or recording.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from sessiond.core.messages import (
    ConferenceJoin,
    ConferenceMember,
    ConferencePlay,
    ConferenceRecord,
    LegEvent,
    MediaLeg,
    RoomEvent,
)
from sessiond.core.types import Event
from sessiond.media.commands import CommandError, Executor, MediaCommand
from sessiond.media.errors import MediaError
from sessiond.media.leg import Leg
from sessiond.media.mixer import Room, SourceFinished, TalkingChanged
from sessiond.media.playback import Player, Recorder
from sessiond.media.wav import read_wav
from sessiond.store.rooms import MemberFlags, RoomStore, valid_room

log = logging.getLogger("sessiond.media")


@dataclass(slots=True)
class _Asker:
    """Who asked for a room play or recording: where its end is reported."""

    sid: str
    media_id: str
    event_id: str


@dataclass(slots=True)
class LiveRoom:
    """One room mixed on this node."""

    name: str
    mixer: Room = field(default_factory=lambda: Room(limiter=True))
    legs: dict[str, Leg] = field(default_factory=dict)  # by session id (= mixer member id)
    flags: dict[str, MemberFlags] = field(default_factory=dict)
    plays: dict[str, _Asker] = field(default_factory=dict)  # by source id
    recorder: Recorder | None = None
    recording_for: _Asker | None = None


def _event(event_id: str, kind: str, sid: str, record: Any) -> Event:
    return Event(event_id, kind, record.data(), sid)


class Conferences:
    """The rooms this node mixes, and the ``conf_*`` commands (installed on an Executor)."""

    def __init__(self, executor: Executor, store: RoomStore) -> None:
        self.executor = executor
        self.store = store
        self.node = executor.name
        self.rooms: dict[str, LiveRoom] = {}
        self.room_of: dict[str, str] = {}  # media id -> room name
        self._talks: dict[str, int] = {}  # leg origin -> TalkingChanged count
        self._moving: dict[str, Leg] = {}  # media id -> leg told its room is elsewhere
        self._destroy = executor._handlers["destroy"]
        executor._handlers.update(
            {
                "conf_join": self.join,
                "conf_leave": self.leave,
                "conf_set": self.set_flags,
                "conf_play": self.play,
                "conf_record": self.record,
                "conf_stop_record": self.stop_record,
                "destroy": self.destroy,
            }
        )

    # -- membership -----------------------------------------------------------------------

    async def join(self, cmd: MediaCommand[ConferenceJoin]) -> list[Event]:
        """Mix the leg into ``room`` here, or tell the session the room lives elsewhere."""
        leg, name = self.executor._leg(cmd), cmd.data.room
        if not valid_room(name):
            raise CommandError(f"bad room name {name!r}")
        self._stay(leg)
        current = self.room_of.get(leg.media_id)
        live = self.rooms.get(current) if current else None
        if live is not None and current == name and leg.sid in live.legs:
            count = len(live.legs)
            return [self._room_event(cmd.id, "joined", leg, name, members=count)]
        events: list[Event] = []
        if current is not None and current != name:
            events += await self._leave(leg, f"{cmd.id}:old", "moved to another room")
        data = cmd.data
        wanted = MemberFlags(bool(data.muted), bool(data.deaf), data.gain_db or 0.0)
        joined = await self.store.join(name, self.node, leg.sid, wanted)
        if joined.status == "ELSEWHERE" and not await self.store.alive(joined.node):
            log.warning("room %s: its node %s is gone; taking it over", name, joined.node)
            joined = await self.store.join(name, self.node, leg.sid, wanted, dead=joined.node)
        if joined.status == "ELSEWHERE":
            # The call's leg is about to be made again on that node and offered by
            # re-INVITE: this copy goes quiet (until its node's audit closes it), so the far
            # end does not get two RTP streams meanwhile. A join or leave wakes it up again.
            leg.quiet = True
            self._moving[leg.media_id] = leg
            node = joined.node
            return [*events, self._room_event(cmd.id, "elsewhere", leg, name, media_node=node)]
        if self.executor.legs.get(leg.media_id) is not leg:
            return events  # destroyed while the record was written: its destroy leaves
        self.mix_here(name, leg, joined.flags)
        events.append(self._room_event(cmd.id, "joined", leg, name, members=joined.members))
        return events

    def mix_here(self, name: str, leg: Leg, flags: MemberFlags) -> None:
        """Mix ``leg`` into room ``name`` on this node (the record says it may: see
        :meth:`join`; ``sessiond bench conference`` calls it directly)."""
        live = self.rooms.get(name)
        if live is None:
            live = self.rooms[name] = LiveRoom(name)
        self._mix(live, leg, flags)
        self.room_of[leg.media_id] = name

    def _mix(self, live: LiveRoom, leg: Leg, flags: MemberFlags) -> None:
        if leg.sid in live.mixer.members:
            live.mixer.leave(leg.sid)
        live.mixer.join(leg.sid, muted=flags.muted, deaf=flags.deaf, gain_db=flags.gain_db)
        live.legs[leg.sid] = leg
        live.flags[leg.sid] = flags
        self._whisper(live, leg.sid, flags.whisper_to)
        leg.room_frame = live.mixer.silence

    @staticmethod
    def _whisper(live: LiveRoom, sid: str, to: str) -> None:
        live.mixer.members[sid].whisper_to = to if to and to != sid else None

    async def leave(self, cmd: MediaCommand[MediaLeg]) -> list[Event]:
        """Take the leg out of its room (nothing if it is in none)."""
        leg = self.executor._leg(cmd)
        self._stay(leg)
        return await self._leave(leg, cmd.id, "left")

    def _stay(self, leg: Leg) -> None:
        """A leg told its room was elsewhere is used here after all: it may send again."""
        if self._moving.pop(leg.media_id, None) is leg:
            leg.quiet = False

    async def destroy(self, cmd: MediaCommand[MediaLeg]) -> list[Event]:
        """The call ended: leave its room, then destroy the leg as usual."""
        self._moving.pop(cmd.data.media_id, None)
        leg = self.executor.legs.get(cmd.data.media_id)
        events = await self._leave(leg, cmd.id, "hung up") if leg is not None else []
        return events + await self._destroy(cmd)

    async def _leave(self, leg: Leg, event_id: str, reason: str) -> list[Event]:
        name = self.room_of.pop(leg.media_id, None)
        if name is None:
            return []
        self._unmix(name, leg)
        status, count = await self.store.leave(name, leg.sid)
        events = [self._room_event(event_id, "left", leg, name, members=count, reason=reason)]
        if status == "EMPTY":
            events.append(self._room_event(event_id, "empty", leg, name))
        return events

    def _unmix(self, name: str, leg: Leg) -> None:
        live = self.rooms.get(name)
        leg.room_frame = None
        if live is None or live.legs.get(leg.sid) is not leg:
            return
        del live.legs[leg.sid]
        live.flags.pop(leg.sid, None)
        live.mixer.leave(leg.sid)
        self._talks.pop(leg.origin, None)
        if not live.legs:
            self._close(live, "empty")

    def _close(self, live: LiveRoom, reason: str) -> None:
        """The last member left this node's mixer: stop its recording, forget the room."""
        self.rooms.pop(live.name, None)
        self._stop_recording(live, reason)

    # -- flags, plays, recordings ---------------------------------------------------------

    def _member(self, cmd: MediaCommand[Any]) -> tuple[LiveRoom, Leg]:
        leg = self.executor._leg(cmd)
        name = self.room_of.get(leg.media_id)
        live = self.rooms.get(name) if name else None
        if live is None or name is None:
            raise CommandError(f"{leg.media_id} is in no conference room on {self.node}")
        return live, leg

    async def set_flags(self, cmd: MediaCommand[ConferenceMember]) -> list[Event]:
        """Change how the member is mixed (stored in the record, so a move keeps it)."""
        live, leg = self._member(cmd)
        data = cmd.data
        if data.gain_db is not None and not -24 <= data.gain_db <= 12:
            raise CommandError("gain_db must be within -24..12")
        flags = live.flags[leg.sid].changed(
            muted=data.muted, deaf=data.deaf, gain_db=data.gain_db, whisper_to=data.whisper_to
        )
        member = live.mixer.members[leg.sid]
        member.muted, member.deaf, member.gain_db = flags.muted, flags.deaf, flags.gain_db
        self._whisper(live, leg.sid, flags.whisper_to)
        live.flags[leg.sid] = flags
        await self.store.set_flags(live.name, leg.sid, flags)
        return []

    async def play(self, cmd: MediaCommand[ConferencePlay]) -> list[Event]:
        """A tone or a WAV file into the room, or to this member only (``member``)."""
        live, leg = self._member(cmd)
        data = cmd.data
        asker = _Asker(leg.sid, leg.media_id, f"{cmd.id}:played")
        try:
            if data.tone is not None and 0 < data.tone < 4000:
                player = Player(None, tone=data.tone, seconds=data.seconds, loop=bool(data.loop))
            else:
                path = self.executor._path(data.file or "")
                if not data.file:
                    raise CommandError("conf_play needs a tone (Hz) or a file")
                frames = await asyncio.get_running_loop().run_in_executor(None, read_wav, path)
                player = Player(None, frames=frames, seconds=data.seconds, loop=bool(data.loop))
        except (MediaError, OSError) as exc:
            return [self._asker_event(asker, "PlayFinished", reason="failed", error=str(exc))]
        if self.rooms.get(live.name) is not live or leg.sid not in live.mixer.members:
            return []  # left while the file was read
        live.mixer.play(cmd.id, player, to=leg.sid if data.member else None)
        live.plays[cmd.id] = asker
        return []

    async def record(self, cmd: MediaCommand[ConferenceRecord]) -> list[Event]:
        """Record the room's mix to a WAV file (a recording in progress is stopped first)."""
        live, leg = self._member(cmd)
        asker = _Asker(leg.sid, leg.media_id, f"{cmd.id}:recorded")
        try:
            path = self.executor._path(cmd.data.path or "")
            if not cmd.data.path:
                raise CommandError("conf_record needs a path")
            recorder = Recorder(path, "in")
        except (ValueError, OSError, CommandError) as exc:
            return [self._asker_event(asker, "RecordingStopped", reason="failed", error=str(exc))]
        self._stop_recording(live, "stopped")
        live.recorder, live.recording_for = recorder, asker
        await self.store.set_field(live.name, "recording", recorder.path)
        return []

    async def stop_record(self, cmd: MediaCommand[MediaLeg]) -> list[Event]:
        """Close the room's recording; RecordingStopped to whoever started it."""
        live, _ = self._member(cmd)
        self._stop_recording(live, "stopped")
        await self.store.set_field(live.name, "recording", "")
        return []

    def _stop_recording(self, live: LiveRoom, reason: str) -> None:
        recorder, asker = live.recorder, live.recording_for
        live.recorder = live.recording_for = None
        if recorder is None or asker is None:
            return
        seconds = recorder.close()
        self.executor.emit(
            self._asker_event(
                asker, "RecordingStopped", path=recorder.path, seconds=seconds, reason=reason
            )
        )

    # -- the 20 ms mix --------------------------------------------------------------------

    def tick(self) -> None:
        """Mix every room once (after the legs' tick: each leg's ``heard`` is this tick's)."""
        if self._moving:  # forget the moved legs their node's audit closed
            legs = self.executor.legs
            for media_id, leg in list(self._moving.items()):
                if legs.get(media_id) is not leg:
                    del self._moving[media_id]
        for live in list(self.rooms.values()):
            try:
                self._tick_room(live)
            except Exception:
                log.exception("room %s: mixing failed; closing it on this node", live.name)
                for leg in list(live.legs.values()):
                    self.room_of.pop(leg.media_id, None)
                    leg.room_frame = None
                self._close(live, "failed")

    def _tick_room(self, live: LiveRoom) -> None:
        legs = self.executor.legs
        frames: dict[str, bytes] = {}
        for sid, leg in list(live.legs.items()):
            if legs.get(leg.media_id) is not leg:  # closed without a destroy: it is moving
                self.room_of.pop(leg.media_id, None)
                self._unmix(live.name, leg)
                continue
            frames[sid] = leg.heard
        if self.rooms.get(live.name) is not live:
            return
        result = live.mixer.tick(frames)
        for sid, frame in result.frames.items():
            live.legs[sid].room_frame = frame
        if live.recorder is not None:
            live.recorder.write(result.mix, result.mix)
        for change in result.talking:
            self._talking(live, change)
        for done in result.finished:
            self._finished(live, done)

    def _talking(self, live: LiveRoom, change: TalkingChanged) -> None:
        leg = live.legs.get(change.member)
        if leg is None:
            return
        n = self._talks[leg.origin] = self._talks.get(leg.origin, 0) + 1
        level = round(change.level_dbov, 1)
        record = RoomEvent(
            media_id=leg.media_id, room=live.name, talking=change.talking, level=level
        )
        self.executor.emit(_event(f"{leg.origin}:talk:{n}", "TalkingChanged", leg.sid, record))

    def _finished(self, live: LiveRoom, done: SourceFinished) -> None:
        asker = live.plays.pop(done.source, None)
        if asker is not None:
            reason = "done" if done.member is None or done.member in live.legs else "stopped"
            self.executor.emit(self._asker_event(asker, "PlayFinished", reason=reason))

    # -- events ---------------------------------------------------------------------------

    _KINDS = {
        "joined": "ConferenceJoined",
        "left": "ConferenceLeft",
        "empty": "RoomEmpty",
        "elsewhere": "ConferenceElsewhere",
    }

    def _room_event(self, cmd_id: str, what: str, leg: Leg, room: str, **data: Any) -> Event:
        record = RoomEvent(media_id=leg.media_id, room=room, **data)
        return _event(f"{cmd_id}:{what}", self._KINDS[what], leg.sid, record)

    @staticmethod
    def _asker_event(asker: _Asker, kind: str, **data: Any) -> Event:
        record = LegEvent(media_id=asker.media_id, **data)
        return _event(asker.event_id, kind, asker.sid, record)
