"""``Rooms``: conference rooms through a :class:`~sessiond.api.client.Client`.

A room is mixed on one media node; its record (``{room:NAME}:room``) and members
(``{room:NAME}:members``) are written by that node (:mod:`sessiond.store.rooms`). Calls join,
leave and change flags through events to their sessions (the state table sends the media
commands); plays and recordings of a room go through one of its members' sessions, since the
room's node is the node of every member's leg.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sessiond.api.errors import SessionNotFound
from sessiond.store.rooms import MemberFlags, RoomStore, valid_room

if TYPE_CHECKING:
    from sessiond.api.client import Client


class RoomNotFound(SessionNotFound):
    """The room does not exist, or the call is not one of its members."""


def _room(name: str) -> str:
    if not valid_room(name):
        raise ValueError(f"a room name is 1-64 of A-Z a-z 0-9 ._@+-, not {name!r}")
    return name


class Rooms:
    """Conference rooms of one sessiond cluster (``client.rooms``)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.store = RoomStore(client.redis, client.keys)

    # -- rooms ------------------------------------------------------------------------------

    async def create(self, room: str, node: str = "") -> bool:
        """Create an empty room mixed on media node ``node`` (default: the node of its
        first member); False if it exists. Joining a room that does not exist creates it.
        A room pinned to a node that is not running is taken over by the first join."""
        return await self.store.create(_room(room), node)

    async def names(self) -> list[str]:
        """The rooms that exist."""
        return await self.store.names()

    async def show(self, room: str) -> dict[str, Any]:
        """The room's record (``media_node``, ``created_at``, ``moves``, ``recording``...)
        and ``members`` (session id -> flags); :class:`RoomNotFound` if there is none."""
        record = await self.store.record(_room(room))
        if not record:
            raise RoomNotFound(f"no room {room}")
        return {**record, "members": await self.store.members(room)}

    async def members(self, room: str) -> dict[str, MemberFlags]:
        """The members of ``room`` by session id, with their flags."""
        return await self.store.members(_room(room))

    # -- members ----------------------------------------------------------------------------

    async def add(
        self,
        room: str,
        sid: str,
        *,
        muted: bool = False,
        deaf: bool = False,
        gain_db: float = 0.0,
    ) -> None:
        """Mix the answered call ``sid`` into ``room`` (a call in another room moves: see
        :meth:`move`). Flags stored for it in the room (a member moved by a node loss) win.
        The call's leg moves to the room's node by re-INVITE if it is on another one."""
        data: dict[str, Any] = {"room": _room(room)}
        if muted:
            data["muted"] = True
        if deaf:
            data["deaf"] = True
        if gain_db:
            data["gain_db"] = float(gain_db)
        await self.client.send(sid, "JoinConference", data)

    async def move(self, sid: str, room: str) -> None:
        """Move a call from its room to ``room`` (MemberLeft, then MemberJoined)."""
        await self.client.send(sid, "JoinConference", {"room": _room(room)})

    async def remove(self, sid: str) -> None:
        """Take the call out of its room; the call goes on (silence)."""
        await self.client.send(sid, "LeaveConference")

    async def kick(self, room: str, sid: str) -> None:
        """Hang up a member of ``room`` (:class:`RoomNotFound` if it is not one)."""
        await self._member(room, sid)
        await self.client.send(sid, "Hangup", {"by": "kick"})

    async def mute(self, sid: str, muted: bool = True) -> None:
        """Mute (the others do not hear it) or unmute a member."""
        await self.client.send(sid, "ConferenceMember", {"muted": bool(muted)})

    async def deaf(self, sid: str, deaf: bool = True) -> None:
        """Make a member hear nothing of the room, or hear it again."""
        await self.client.send(sid, "ConferenceMember", {"deaf": bool(deaf)})

    async def gain(self, sid: str, gain_db: float) -> None:
        """How loud the others hear a member, -24..+12 dB."""
        if not -24 <= gain_db <= 12:
            raise ValueError(f"gain_db must be within -24..12, not {gain_db}")
        await self.client.send(sid, "ConferenceMember", {"gain_db": float(gain_db)})

    async def whisper(self, sid: str, to: str | None) -> None:
        """Make member ``sid`` heard by member ``to`` only (coaching); None: by the room."""
        await self.client.send(sid, "ConferenceMember", {"whisper_to": to or ""})

    # -- plays and recordings ---------------------------------------------------------------

    async def play(
        self,
        room: str,
        *,
        tone: float | None = None,
        file: str | None = None,
        seconds: float | None = None,
        loop: bool = False,
        to: str | None = None,
    ) -> None:
        """Play a tone (Hz) or a WAV file (a path on the media node) into the room, or to
        member ``to`` only; PlayFinished goes to the member whose session carried it."""
        if (tone is None) == (file is None):
            raise ValueError("play needs exactly one of tone= and file=")
        data: dict[str, Any] = {"tone": float(tone)} if tone is not None else {"file": file}
        if seconds is not None:
            data["seconds"] = float(seconds)
        if loop:
            data["loop"] = True
        if to is not None:
            await self._member(room, to)
            data["member"] = True
        await self.client.send(to or await self._any_member(room), "ConferencePlay", data)

    async def record(self, room: str, path: str) -> str:
        """Record the room's mix to a WAV file on its media node; the member session whose
        RecordingStopped will report the end (it ends when the room leaves the node)."""
        sid = await self._any_member(room)
        await self.client.send(sid, "ConferenceRecord", {"path": path})
        return sid

    async def stop_record(self, room: str) -> None:
        """Close the room's recording."""
        await self.client.send(await self._any_member(room), "ConferenceStopRecord")

    async def _any_member(self, room: str) -> str:
        members = await self.store.members(_room(room))
        if not members:
            raise RoomNotFound(f"room {room} has no members")
        return next(iter(members))

    async def _member(self, room: str, sid: str) -> None:
        if sid not in await self.store.members(_room(room)):
            raise RoomNotFound(f"{sid} is not a member of room {room}")
