"""Media node loss: which legs each node serves, and telling their sessions when it is gone.

Theory of operation
-------------------
Every media node keeps, in its own slot, the hash ``{media:NAME}:legs``: media id ->
``"<sid> <create command id>"``, plus ``@incarnation`` (random, chosen when the node starts).
A leg is added in the same pipeline as, and before, the MediaReady that announces it, and
removed when it ends; so whenever a session has seen a leg's MediaReady, the leg is listed.

A node is lost when it is still in the ``processes:media`` zset but its heartbeat key
(5 s TTL) has expired while the store was there to take it: a worker judges only after a
grace period of steady contact with Redis (:mod:`sessiond.store.liveness`), since an outage of
the store lets every heartbeat lapse at once. Any worker may notice (every heartbeat,
:func:`find_lost_nodes`); the one that wins the claim ``media-lost:NAME`` (SET NX, TTL)
reads the hash, checks the heartbeat is still missing (a restarted node writes its heartbeat
before it touches the hash), publishes one ``MediaLost`` per leg, then drops the hash only
if its ``@incarnation`` is unchanged (``lua/forget_legs.lua``) and removes the node from
the zset. Event ids are
``medialost:<node>:<media id>:<create command id>``: unique per leg, the same however often
they are announced, so a second announcement (the claim expired after a worker died between
publishing and forgetting, or the restarted node announcing its own stale legs) is refused by
the session as a duplicate. The session's table decides what a loss means (the default
table moves the call to another node; ``media_node_lost`` tells a current loss from a stale
report about a node the call no longer uses).

A node restarted under the same name finds legs of its previous incarnation in the hash:
it has none of them in memory, so it announces them itself (:func:`announce_stale`) before
serving. A node that was declared lost while still running (stalled longer than the TTL)
finds another incarnation in the hash (or none) at its next heartbeat: its calls are being
moved, so it announces and closes every leg it has and starts a new incarnation (fencing:
two nodes never keep sending RTP for one call).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from typing import Any

from sessiond.core.messages import MediaLost
from sessiond.core.types import Event
from sessiond.media.errors import MediaError
from sessiond.store import Keys
from sessiond.store.keys import STREAM_MAXLEN
from sessiond.store.legs import INCARNATION, LegStore
from sessiond.store.liveness import StoreContact

log = logging.getLogger("sessiond.media")
CLAIM_TTL = 15
__all__ = ["INCARNATION", "LegRegistry", "leg_entry", "leg_of", "lost_events", "new_incarnation"]


def new_incarnation() -> str:
    return secrets.token_hex(6)


def leg_entry(media_id: str, sid: str, origin: str) -> str:
    """The hash value for one leg: its session and the id of the create that made it;
    ``=<create id>`` when the session is the media id's own (``<sid>.m``: 24 bytes less a
    leg than ``<sid> <create id>``, which a leg of another session keeps)."""
    return f"={origin}" if media_id == f"{sid}.m" else f"{sid} {origin}"


def leg_of(media_id: str, entry: str) -> tuple[str, str]:
    """(sid, create id) of a legs hash value (:func:`leg_entry`; an older node wrote every
    leg as ``<sid> <create id>``)."""
    if entry.startswith("="):
        return media_id.removesuffix(".m"), entry[1:]
    sid, _, origin = entry.partition(" ")
    return sid, origin


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _incarnation(legs: Mapping[Any, Any]) -> str:
    return _text(legs.get(INCARNATION.encode(), legs.get(INCARNATION, b"")))


def lost_events(node: str, legs: Mapping[Any, Any]) -> list[Event]:
    """One MediaLost per leg in a legs hash (as read: bytes or str); deterministic ids."""
    events = []
    for media_id, entry in sorted((_text(k), _text(v)) for k, v in legs.items()):
        if media_id == INCARNATION:
            continue
        sid, origin = leg_of(media_id, entry)
        data = MediaLost(media_node=node, media_id=media_id, reason="media node lost").data()
        events.append(Event(f"medialost:{node}:{media_id}:{origin}", "MediaLost", data, sid))
    return events


class LegRegistry:
    """Media node loss, for one client and namespace (the keys: :class:`LegStore`)."""

    def __init__(self, redis: Any, keys: Keys, *, stream_maxlen: int = STREAM_MAXLEN) -> None:
        self.store = LegStore(redis, keys, stream_maxlen=stream_maxlen)

    def queue_publish(self, pipe: Any, events: list[Event]) -> None:
        self.store.queue_events(pipe, events)

    async def forget(self, node: str, expected: str, new: str = "") -> bool:
        """Drop ``node``'s legs hash if its incarnation is still ``expected``."""
        return await self.store.forget(node, expected, new)

    async def announce_stale(self, node: str, incarnation: str) -> int:
        """For a node (re)starting as ``incarnation``: announce every leg listed for an
        earlier incarnation of its name, then own the hash. Returns the legs announced."""
        announced = 0
        for _ in range(5):  # a worker announcing the same legs may drop the hash meanwhile
            legs = await self.store.legs(node)
            events = lost_events(node, legs)
            if events:
                log.warning("media node %s: %d legs of a previous run are lost", node, len(events))
                await self.store.publish(events)
            announced += len(events)
            if await self.forget(node, _incarnation(legs), incarnation):
                return announced
        raise MediaError(f"the legs of media node {node} keep changing: another node has its name?")

    async def announce_dead(self, node: str, contact: StoreContact | None = None) -> int:
        """Announce the legs of ``node``, whose heartbeat expired; drop its hash and its
        zset entry. Nothing if its heartbeat came back, or if ``contact`` says the store
        stalled meanwhile. Returns the legs announced."""
        started = contact.now() if contact is not None else 0.0
        legs = await self.store.legs(node)
        if (await self.store.alive([node]))[0]:
            return 0  # restarted since: it announces its previous legs itself
        if contact is not None and not contact.reached(started):
            log.info("media node %s: no heartbeat, but the store was away: not judged", node)
            return 0
        events = lost_events(node, legs)
        if events:
            log.warning("media node %s lost: moving %d calls", node, len(events))
            await self.store.publish(events)
        await self.forget(node, _incarnation(legs))
        await self.store.unlist(node)
        return len(events)

    async def find_lost_nodes(self, claimant: str, contact: StoreContact | None = None) -> int:
        """Announce every media node in the zset whose heartbeat expired, each by exactly one
        caller (the claim); returns the legs this caller announced. With ``contact``,
        nothing until it has been steady for its grace period (and the reads were prompt):
        heartbeats that lapsed while the store was away prove nothing."""
        if contact is not None and not contact.steady():
            return 0
        started = contact.now() if contact is not None else 0.0
        names = await self.store.nodes()
        if not names:
            return 0
        alive = await self.store.alive(names)
        if contact is not None and not contact.reached(started):
            return 0
        announced = 0
        for name, live in zip(names, alive, strict=True):
            if live:
                continue
            if not await self.store.claim_lost(name, claimant, CLAIM_TTL):
                continue  # another worker is on it
            announced += await self.announce_dead(name, contact)
            await self.store.release_lost(name)
        return announced
