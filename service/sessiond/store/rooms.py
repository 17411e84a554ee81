"""Conference rooms in Redis: the record an operator reads, and the scripts that change it.

A room is two hashes in the room's own slot (``{room:NAME}``): the record (``name``,
``media_node`` mixing it, ``created_at``, ``node_since``, ``moves``, ``recording``) and its
members (session id -> flags, ``muted=0 deaf=0 gain_db=0 whisper_to=``), plus the index set
``rooms``. Only media nodes write the record (``lua/room_join.lua``, ``room_leave.lua``,
``room_member.lua``): a room lives where its members' legs are mixed, and the node that mixes
a member is the one that knows it joined. A member's flags outlive the node: a member moved to
another node (node loss, or a move into a room mixed elsewhere) is mixed with the flags it had.
Applications may create an empty record ahead of time (:meth:`RoomStore.create`); the first
join gives it a node.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, replace
from typing import Any

from sessiond.store.keys import Keys
from sessiond.store.scripts import script

#: A room name: also a key's hash tag, so no braces, spaces or colons.
ROOM_NAME = re.compile(r"^[A-Za-z0-9._@+-]{1,64}$")
#: Seconds the room's keys live after the last join (a room whose node died and whose members
#: all hung up before they were moved is not left behind for good).
ROOM_TTL = 6 * 3600


def valid_room(name: str) -> bool:
    """Whether ``name`` is a room name (1-64 of letters, digits and ``._@+-``)."""
    return isinstance(name, str) and ROOM_NAME.fullmatch(name) is not None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value if value is not None else "")


@dataclass(frozen=True, slots=True)
class MemberFlags:
    """How a member is mixed: not heard (``muted``), hears nothing (``deaf``), its level
    for the others (``gain_db``), heard by one member only (``whisper_to``, a session id)."""

    muted: bool = False
    deaf: bool = False
    gain_db: float = 0.0
    whisper_to: str = ""

    @classmethod
    def parse(cls, text: str) -> MemberFlags:
        """Read the stored text; unknown or malformed words are ignored (defaults)."""
        values = dict(word.partition("=")[::2] for word in text.split())
        try:
            gain = float(values.get("gain_db", "0") or 0)
        except ValueError:
            gain = 0.0
        return cls(
            muted=values.get("muted") == "1",
            deaf=values.get("deaf") == "1",
            gain_db=gain,
            whisper_to=values.get("whisper_to", ""),
        )

    def __str__(self) -> str:
        return (
            f"muted={int(self.muted)} deaf={int(self.deaf)} gain_db={self.gain_db:g} "
            f"whisper_to={self.whisper_to}"
        )

    def changed(self, **changes: Any) -> MemberFlags:
        """These flags with the given ones (those not None) changed."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


@dataclass(frozen=True, slots=True)
class Joined:
    """The answer to a join: ``status`` OK (``flags``, ``members``) or ELSEWHERE (``node``)."""

    status: str
    flags: MemberFlags
    members: int
    node: str = ""


class RoomStore:
    """The room records of one namespace (async client)."""

    def __init__(self, redis: Any, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._join = script(redis, "room_join")
        self._leave = script(redis, "room_leave")
        self._member = script(redis, "room_member")

    def _keys(self, room: str) -> list[str]:
        return [self.keys.room(room), self.keys.room_members(room)]

    async def join(
        self, room: str, node: str, sid: str, flags: MemberFlags, *, dead: str = ""
    ) -> Joined:
        """Join ``sid`` to ``room`` on ``node`` (see ``lua/room_join.lua``); ``dead`` names
        the room's node when the caller found it dead, so that this node takes the room."""
        args = [room, node, sid, f"{time.time():.3f}", dead, str(flags), ROOM_TTL]
        status, detail, count = await self._join(keys=self._keys(room), args=args)
        if _text(status) == "ELSEWHERE":
            return Joined("ELSEWHERE", flags, 0, _text(detail))
        await self.redis.sadd(self.keys.rooms(), room)
        return Joined("OK", MemberFlags.parse(_text(detail)), int(count))

    async def alive(self, node: str) -> bool:
        """Whether a media node heartbeats."""
        return bool(await self.redis.exists(self.keys.heartbeat("media", node)))

    async def leave(self, room: str, sid: str) -> tuple[str, int]:
        """Remove ``sid``: (LEFT | EMPTY | ABSENT, members left); EMPTY drops the room."""
        status, count = await self._leave(keys=self._keys(room), args=[sid])
        if _text(status) == "EMPTY":
            await self.redis.srem(self.keys.rooms(), room)
        return _text(status), int(count)

    async def set_flags(self, room: str, sid: str, flags: MemberFlags) -> bool:
        """Store a member's changed flags (False: it is not a member any more)."""
        return bool(await self._member(keys=[self.keys.room_members(room)], args=[sid, str(flags)]))

    async def set_field(self, room: str, field: str, value: str) -> None:
        """Set (or with "" remove) a plain field of an existing record (``recording``)."""
        key = self.keys.room(room)
        if value:
            if await self.redis.exists(key):
                await self.redis.hset(key, field, value)
        else:
            await self.redis.hdel(key, field)

    async def create(self, room: str, node: str = "") -> bool:
        """Create an empty room record, mixed on ``node`` (empty: the node of the first
        member to join); False if the room exists."""
        key = self.keys.room(room)
        made = await self.redis.hsetnx(key, "created_at", f"{time.time():.3f}")
        if made:
            fields = {"name": room, "media_node": node, "moves": "0"}
            await self.redis.hset(key, mapping=fields)
            await self.redis.expire(key, ROOM_TTL)
            await self.redis.sadd(self.keys.rooms(), room)
        return bool(made)

    async def names(self) -> list[str]:
        """The rooms that exist, sorted (index entries whose record is gone are dropped)."""
        names = sorted(_text(n) for n in await self.redis.smembers(self.keys.rooms()))
        out = []
        for name in names:
            if await self.redis.exists(self.keys.room(name)):
                out.append(name)
            else:
                await self.redis.srem(self.keys.rooms(), name)
        return out

    async def record(self, room: str) -> dict[str, str]:
        """The room's record ({} if there is no such room)."""
        raw = await self.redis.hgetall(self.keys.room(room))
        return {_text(k): _text(v) for k, v in raw.items()}

    async def members(self, room: str) -> dict[str, MemberFlags]:
        """The room's members by session id, with their flags."""
        raw = await self.redis.hgetall(self.keys.room_members(room))
        return {_text(k): MemberFlags.parse(_text(v)) for k, v in sorted(raw.items())}
