"""The media nodes' records in Redis: each node's legs hash, its capacity report, the claim
a worker takes to announce a lost node, and the events published for legs.

The rules (who announces what, fencing) are in :mod:`sessiond.media.lost` and
:mod:`sessiond.media.node`; this module only reads and writes the keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sessiond.core.types import Event
from sessiond.store.consumer import queue_events
from sessiond.store.keys import STREAM_MAXLEN, Keys
from sessiond.store.round import Round
from sessiond.store.scripts import script

INCARNATION = "@incarnation"  # the legs hash field naming the node's current run


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")


class LegStore:
    """Media node records for one client and namespace."""

    def __init__(self, redis: Any, keys: Keys, *, stream_maxlen: int = STREAM_MAXLEN) -> None:
        self.redis = redis
        self.keys = keys
        self.stream_maxlen = stream_maxlen
        self._forget = script(redis, "forget_legs")

    # -- the legs hash ----------------------------------------------------------------------
    async def legs(self, node: str) -> dict[Any, Any]:
        """``node``'s legs hash as stored (bytes): media id -> "sid origin", and
        :data:`INCARNATION`."""
        return dict(await self.redis.hgetall(self.keys.media_legs(node)))

    async def incarnation(self, node: str) -> str:
        return _text(await self.redis.hget(self.keys.media_legs(node), INCARNATION))

    def queue_incarnation(self, pipe: Any, node: str) -> None:
        pipe.hget(self.keys.media_legs(node), INCARNATION)

    def queue_changes(self, pipe: Any, node: str, changes: Mapping[str, str | None]) -> None:
        """Queue the legs hash changes: media id -> entry (added) or None (gone)."""
        key = self.keys.media_legs(node)
        added = {m: e for m, e in changes.items() if e is not None}
        gone = [m for m, e in changes.items() if e is None]
        if added:
            pipe.hset(key, mapping=added)
        if gone:
            pipe.hdel(key, *gone)

    async def forget(self, node: str, expected: str, new: str = "") -> bool:
        """Drop ``node``'s legs hash if its incarnation is still ``expected`` (and own it
        as ``new``, if given): ``lua/forget_legs.lua``."""
        keys = [self.keys.media_legs(node)]
        return bool(await self._forget(keys=keys, args=[expected, new]))

    # -- capacity, claims, the processes zset -----------------------------------------------
    def queue_capacity(self, pipe: Any, node: str, report: str) -> None:
        pipe.hset(self.keys.media_capacity(), node, report)

    def queue_gone(self, pipe: Any, node: str) -> None:
        """Queue the removal of a stopping node's legs hash and capacity report."""
        pipe.delete(self.keys.media_legs(node))
        pipe.hdel(self.keys.media_capacity(), node)

    async def nodes(self) -> list[str]:
        """The media nodes in ``processes:media`` (alive or not)."""
        return [_text(n) for n in await self.redis.zrange(self.keys.processes("media"), 0, -1)]

    async def alive(self, names: Sequence[str]) -> list[bool]:
        """Whether each node's heartbeat key exists, in one round trip."""
        if not names:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.exists(self.keys.heartbeat("media", name))
        return [bool(n) for n in await pipe.execute()]

    async def unlist(self, node: str) -> None:
        await self.redis.zrem(self.keys.processes("media"), node)

    async def claim_lost(self, node: str, claimant: str, ttl: int) -> bool:
        """The claim (SET NX, ``ttl`` s) to announce lost ``node``; False: another has it."""
        return bool(
            await self.redis.set(self.keys.media_lost_claim(node), claimant, nx=True, ex=ttl)
        )

    async def release_lost(self, node: str) -> None:
        await self.redis.delete(self.keys.media_lost_claim(node))

    # -- commands and events ----------------------------------------------------------------
    def queue_events(self, pipe: Any, events: Iterable[Event]) -> list[Event]:
        return queue_events(pipe, self.keys, events, self.stream_maxlen)

    async def publish(self, events: Iterable[Event]) -> None:
        pipe = Round(self.redis)
        if self.queue_events(pipe, events):
            await pipe.execute()

    async def forward(self, node: str, fields: Mapping[Any, Any]) -> None:
        """Append a command entry, as read, to ``node``'s own command stream."""
        stream = self.keys.media_commands(node)
        await self.redis.xadd(stream, dict(fields), maxlen=self.stream_maxlen, approximate=True)


def leg_keys(keys: Keys, media_id: str, sid: str) -> tuple[str, str]:
    """The session hash and owner record a leg is judged by (keys of nothing, for ids that
    are not session ids: such legs have no session)."""
    try:
        return keys.session(sid), keys.media_owner(media_id)
    except ValueError:
        none = f"{keys.ns}:no-such-session"
        return none, none


def _queue_nodes(pipe: Any, keys: Keys, names: Sequence[str]) -> None:
    for name in names:
        pipe.exists(keys.heartbeat("media", name))
        pipe.hgetall(keys.media_legs(name))


def _queue_leg_checks(pipe: Any, keys: Keys, legs: Sequence[tuple[str, str]]) -> None:
    for media_id, sid in legs:
        session, owner = leg_keys(keys, media_id, sid)
        pipe.hget(session, "ended_by")
        pipe.exists(session)
        pipe.hgetall(owner)


async def read_leg_checks(redis: Any, keys: Keys, legs: Sequence[tuple[str, str]]) -> list[Any]:
    """For each (media id, sid): its session's ``ended_by`` (None while it lives), whether
    its session hash exists and its owner record (three replies a leg, in one round trip)."""
    pipe = redis.pipeline(transaction=False)
    _queue_leg_checks(pipe, keys, legs)
    return list(await pipe.execute())


async def read_nodes(redis: Any, keys: Keys) -> tuple[list[str], list[Any]]:
    """The media nodes listed, and for each whether its heartbeat lives and its legs hash
    (two replies a node)."""
    names = [_text(n) for n in await redis.zrange(keys.processes("media"), 0, -1)]
    pipe = redis.pipeline(transaction=False)
    _queue_nodes(pipe, keys, names)
    return names, list(await pipe.execute())


def read_leg_checks_sync(client: Any, keys: Keys, legs: Sequence[tuple[str, str]]) -> list[Any]:
    """:func:`read_leg_checks` with a synchronous redis-py client (tests, ops)."""
    pipe = client.pipeline(transaction=False)
    _queue_leg_checks(pipe, keys, legs)
    return list(pipe.execute())


def read_nodes_sync(client: Any, keys: Keys) -> tuple[list[str], list[Any]]:
    """:func:`read_nodes` with a synchronous redis-py client."""
    names = [_text(n) for n in client.zrange(keys.processes("media"), 0, -1)]
    pipe = client.pipeline(transaction=False)
    _queue_nodes(pipe, keys, names)
    return names, list(pipe.execute())
