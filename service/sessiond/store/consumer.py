"""One member of a consumer group: acks with the next read, backlog first, claim, seen ids.

A consumer acknowledges the entries it ran in the round trip of its next read (XACK then
XREADGROUP in one :class:`~sessiond.store.round.Round`: one round trip per batch, not two);
acks whose round failed are kept for the next one. It reads its own backlog first
(:class:`~sessiond.store.streams.Backlog`). Commands repeat (a re-emitted outbox, a backlog
re-read): :class:`SeenIds` drops an id run recently. Used by the media node and the edge.
The worker reads all its partitions in one XREADGROUP and acks in the round that publishes
what the batch caused, so it queues those commands itself (:func:`queue_read`,
:func:`queue_acks`); the Client API acks each event on its own (:func:`ack`). The edge's
outbox goes out through :func:`write`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sessiond.core.types import Event
from sessiond.store.entries import encode_event
from sessiond.store.keys import SEEN_IDS, STREAM_MAXLEN, Keys
from sessiond.store.round import Round
from sessiond.store.streams import Backlog, ensure_groups

Entry = tuple[bytes, Any]  # entry id, fields (None: trimmed from the stream meanwhile)
Write = tuple[str, str, Any]  # ("xadd", stream, fields) or ("set", key, value)


class SeenIds:
    """The last ``size`` command ids run (oldest forgotten first)."""

    def __init__(self, size: int = SEEN_IDS) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, cid: object) -> bool:
        return cid in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, cid: str) -> None:
        self._ids[cid] = None
        while len(self._ids) > self.size:
            self._ids.popitem(last=False)

    def first(self, cid: str) -> bool:
        """Whether ``cid`` is new (it is remembered from now on)."""
        if cid in self._ids:
            return False
        self.add(cid)
        return True


@dataclass(frozen=True, slots=True)
class Batch:
    start: str  # "0": the backlog (entries delivered before, maybe run), ">": new entries
    entries: list[Entry]
    failed: Exception | None = None  # the round's commands before the read failed
    error: Exception | None = None  # the read failed (only when not ``strict``)


class Consumer:
    """``name`` in ``group`` on ``streams``; reads ``count`` entries per batch."""

    def __init__(
        self,
        redis: Any,
        group: str,
        name: str,
        streams: Iterable[str],
        *,
        count: int,
        start: str = "0",
    ) -> None:
        self.redis = redis
        self.group = group
        self.name = name
        self.streams = list(streams)
        self.count = count
        self.start = start  # where a new group starts reading
        self.backlog = Backlog(self.streams)
        self._acks: dict[str, list[bytes]] = {}

    async def ensure_groups(self) -> None:
        await ensure_groups(self.redis, self.streams, self.group, start=self.start)

    def ack(self, stream: str, *ids: bytes) -> None:
        """Acknowledge ``ids`` with the next read (or :meth:`flush`) of ``stream``."""
        self._acks.setdefault(stream, []).extend(ids)

    def queue_ack(self, pipe: Round, stream: str, ids: list[bytes]) -> None:
        """Queue an XACK of ``ids`` now (entries acked in the round that publishes what
        they caused, rather than with the next read)."""
        if ids:
            pipe.xack(stream, self.group, *ids)

    async def read(
        self,
        stream: str,
        *,
        block: int | None,
        before: Round | None = None,
        strict: bool = True,
    ) -> Batch:
        """Send ``before`` (commands already queued), the pending acks of ``stream`` and the
        read of its next batch in one round; the batch. If a command before the read failed,
        the acks are kept; ``strict`` raises that error (the batch is left pending, read
        again from the backlog), else it is returned with the batch. A backlog found empty
        is followed by a read of new entries. Without ``strict`` a failed read is returned
        too (``error``), for a caller that must first note what the round did send."""
        pipe = before if before is not None else Round(self.redis)
        acks = self._acks.pop(stream, [])
        self.queue_ack(pipe, stream, acks)
        start = self.backlog.start(stream)
        pipe.xreadgroup(self.group, self.name, {stream: start}, count=self.count, block=block)
        try:
            *sent, reply = await pipe.execute(raise_on_error=False)
        except BaseException:
            self.ack(stream, *acks)  # not sent: kept for the next round
            raise
        failed = next((r for r in sent if isinstance(r, Exception)), None)
        if failed is not None:
            self.ack(stream, *acks)
        if isinstance(reply, Exception):
            if strict:
                raise reply
            return Batch(start, [], failed, reply)
        entries = [item for _, items in reply or [] for item in items]
        self.backlog.read(stream, start, len(entries))
        if failed is not None and strict:
            self.backlog.lost(stream)
            raise failed
        if start != ">" and not entries and failed is None:
            return await self.read(stream, block=block)
        return Batch(start, entries, failed)

    async def flush(self, stream: str, before: Round | None = None) -> None:
        """Send ``before`` and the pending acks of ``stream`` (no read: the consumer stops)."""
        pipe = before if before is not None else Round(self.redis)
        acks = self._acks.pop(stream, [])
        self.queue_ack(pipe, stream, acks)
        try:
            await pipe.execute()
        except BaseException:
            self.ack(stream, *acks)
            raise

    def pending_acks(self, stream: str) -> bool:
        return bool(self._acks.get(stream))

    async def claim(self, stream: str, idle_ms: int, start: str = "0-0") -> tuple[str, list[Entry]]:
        """Take over entries other consumers left pending ``idle_ms`` (they probably died):
        one page from ``start``; the next page's start ("0-0": the end) and the entries
        still in the stream."""
        after, entries = await autoclaim(
            self.redis, stream, self.group, self.name, idle_ms, start, self.count
        )
        return after, [(eid, fields) for eid, fields in entries if fields is not None]


async def ack(redis: Any, stream: str, group: str, *ids: Any) -> None:
    """XACK ``ids`` now (a consumer that acks outside its reads: the Client API)."""
    await redis.xack(stream, group, *ids)


async def read_group(
    redis: Any, group: str, name: str, starts: dict[str, str], *, count: int, block: int | None
) -> Any:
    """One XREADGROUP of several streams (the reply as is: ``[[stream, entries]]`` or None)."""
    pipe = Round(redis)
    queue_read(pipe, group, name, starts, count=count, block=block)
    (reply,) = await pipe.execute()
    return reply


def queue_read(
    pipe: Round,
    group: str,
    name: str,
    starts: dict[str, str],
    *,
    count: int,
    block: int | None = None,
) -> None:
    """Queue an XREADGROUP of several streams (the worker reads its next batch in the
    round that acks the last one)."""
    pipe.xreadgroup(group, name, starts, count=count, block=block)


def queue_acks(pipe: Round, group: str, acks: dict[str, list[bytes]]) -> None:
    """Queue an XACK of the ids of each stream."""
    for stream, ids in acks.items():
        if ids:
            pipe.xack(stream, group, *ids)


async def autoclaim(
    redis: Any, stream: str, group: str, name: str, idle_ms: int, start: str, count: int
) -> tuple[str, list[Entry]]:
    """One XAUTOCLAIM page from ``start``: the next page's start ("0-0": the end) and the
    entries claimed (fields None: trimmed from the stream meanwhile)."""
    reply = await redis.xautoclaim(stream, group, name, idle_ms, start, count=count)
    after = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
    return after, list(reply[1])


def queue_events(
    pipe: Round, keys: Keys, events: Iterable[Event], maxlen: int = STREAM_MAXLEN
) -> list[Event]:
    """Queue an XADD of each event to its session's partition stream; the events queued
    (one without a session id has no partition and is left out)."""
    queued = []
    for event in events:
        try:
            stream = keys.events(keys.partition_of(event.sid))
        except ValueError:
            continue
        pipe.xadd(stream, encode_event(event), maxlen=maxlen, approximate=True)
        queued.append(event)
    return queued


async def write(redis: Any, batch: list[Write], ttl: int) -> None:
    """Send ``batch`` in order in one round trip: each XADD to its stream (trimmed to
    :data:`~sessiond.store.keys.STREAM_MAXLEN`), each SET kept ``ttl`` seconds (the edge's
    outbox: its events and its final answers)."""
    if not batch:
        return
    pipe = Round(redis)
    for op, key, value in batch:
        if op == "xadd":
            pipe.xadd(key, value, maxlen=STREAM_MAXLEN, approximate=True)
        else:
            pipe.set(key, value, ex=ttl)
    await pipe.execute()
