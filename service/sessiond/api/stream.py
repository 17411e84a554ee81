"""``EventStream``: the app events of one consumer group, as an async iterator.

Delivery contract
-----------------
* Each event is delivered to one consumer of the group (instances with the same ``group``
  share the work).
* An event is **acknowledged when the iterator is asked for the next one** (the ``async for``
  loop body finished), or by :meth:`EventStream.ack`. Leaving the loop (``break``, an
  exception, cancellation, a crash) leaves the current event pending.
* A pending event whose consumer has not acknowledged it for ``claim_idle`` seconds is taken
  over (XAUTOCLAIM) by any consumer of the group that is iterating: so an event is lost only
  if no instance survives, and one whose handler takes longer than ``claim_idle`` may be
  handled twice. Entries are read one at a time, so idle time is the handling time.
* The same event may be published twice after a worker crash (same ``id``): a consumer drops
  the repeats it has seen (the last 10,000 ids).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import Any, Protocol

from redis.exceptions import ResponseError

from sessiond.api.events import CallEvent, parse_entry
from sessiond.store import Keys
from sessiond.store.client import is_embedded
from sessiond.store.consumer import ack, autoclaim, read_group

SEEN_MAX = 10_000


class GroupMember(Protocol):
    """What the stream needs of its :class:`~sessiond.api.client.Client` (no import back)."""

    redis: Any
    keys: Keys
    group: str
    consumer: str
    claim_idle: float

    async def ensure_group(self) -> None: ...

    async def recreate_group(self) -> None: ...


class EventStream:
    """Async iterator over a group's app events; see the module doc for the ack contract."""

    def __init__(
        self, client: GroupMember, *, types: frozenset[str] | None = None, block_ms: int = 200
    ) -> None:
        self.client = client
        self.types = types
        self.block_ms = block_ms
        self._redis = client.redis
        self._stream = client.keys.app_events()
        self._current: CallEvent | None = None
        self._buffer: list[tuple[Any, Any]] = []
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._backlog = True  # first re-read what this consumer name left unacknowledged
        self._next_claim = 0.0
        self._poll = 0.01 if is_embedded(self._redis) else 0.0

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> CallEvent:
        if self._current is not None:
            await self.ack(self._current)
            self._current = None
        while True:
            entry_id, fields = await self._next_entry()
            if fields is None:  # deleted from the stream (trimmed) while pending
                await self._ack_ids(entry_id)
                continue
            event = parse_entry(entry_id, fields)
            if event.id in self._seen or (self.types and event.type not in self.types):
                await self._ack_ids(entry_id)
                continue
            self._seen[event.id] = None
            while len(self._seen) > SEEN_MAX:
                self._seen.popitem(last=False)
            self._current = event
            return event

    async def ack(self, event: CallEvent) -> None:
        """Acknowledge ``event`` now (it will not be delivered again to this group)."""
        await self._ack_ids(event.entry_id)
        if self._current is event:
            self._current = None

    async def aclose(self) -> None:
        """Stop iterating; the current event stays pending (it was not acknowledged)."""
        self._current = None
        self._buffer.clear()

    async def _ack_ids(self, *entry_ids: Any) -> None:
        await ack(self._redis, self._stream, self.client.group, *entry_ids)

    async def _next_entry(self) -> tuple[Any, Any]:
        await self.client.ensure_group()
        while not self._buffer:
            if self._backlog:
                self._buffer = await self._read("0")
                self._backlog = bool(self._buffer)
                continue
            if time.monotonic() >= self._next_claim:
                self._buffer = await self._claim()
                if self._buffer:
                    continue
            self._buffer = await self._read(">")
            if not self._buffer and self._poll:
                await asyncio.sleep(self._poll)
        return self._buffer.pop(0)

    async def _read(self, start: str) -> list[tuple[Any, Any]]:
        try:
            reply = await read_group(
                self._redis,
                self.client.group,
                self.client.consumer,
                {self._stream: start},
                count=1,
                block=None if start == "0" or self._poll else self.block_ms,
            )
        except ResponseError as exc:
            await self._group_lost(exc)
            return []
        return [item for _, items in reply or [] for item in items]

    async def _claim(self) -> list[tuple[Any, Any]]:
        self._next_claim = time.monotonic() + max(0.05, self.client.claim_idle / 4)
        try:
            _, entries = await autoclaim(
                self._redis,
                self._stream,
                self.client.group,
                self.client.consumer,
                int(self.client.claim_idle * 1000),
                "0-0",
                1,
            )
        except ResponseError as exc:
            await self._group_lost(exc)
            return []
        return entries

    async def _group_lost(self, exc: ResponseError) -> None:
        """NOGROUP: Redis lost its data (or the group was destroyed): make the group again.
        Any other error is the caller's."""
        if "NOGROUP" not in str(exc):
            raise exc
        await self.client.recreate_group()
