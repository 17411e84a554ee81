"""What the edge writes to Redis as it goes: events for the workers and its final answers.

Both are queued in one ordered outbox and written by one flusher task, a batch per round
trip, so one call's events keep their order and a burst costs few round trips. An event goes
to the partition stream of its Call-ID; an answer is kept 64*T1 under a key naming no edge,
so an edge that restarts recognises the request's retransmissions (:meth:`TransactionUser.replay
<sessiond.edge.tu.TransactionUser.replay>`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from sessiond.core.types import Event
from sessiond.edge.loops import failed
from sessiond.edge.overload import OverloadGuard
from sessiond.store.client import RETRYABLE
from sessiond.store.consumer import Write, write
from sessiond.store.entries import encode_event
from sessiond.store.keys import Keys

log = logging.getLogger("sessiond.edge")


class Outbox:
    def __init__(self, redis: Any, keys: Keys, overload: OverloadGuard, ttl: float) -> None:
        self.redis = redis
        self.keys = keys
        self.overload = overload
        self.ttl = int(ttl) + 1
        self._entries: list[Write] = []
        self._wake = asyncio.Event()

    def publish(self, event: Event) -> None:
        call_id = str(event.data.get("call_id", ""))
        stream = self.keys.events(self.keys.partition_of_call(call_id))
        self._entries.append(("xadd", stream, encode_event(event)))
        self.overload.queued(time.monotonic())
        self._wake.set()

    def remember(self, key: str, answer: bytes) -> None:
        """Keep our final response under ``key`` (once per burst of the same answer)."""
        if key and (not self._entries or self._entries[-1][1] != key):
            self._entries.append(("set", key, answer))
            self._wake.set()

    def take(self) -> list[Write]:
        """What is queued, removed from the outbox."""
        batch, self._entries = self._entries, []
        return batch

    async def flusher(self) -> None:
        """Write the outbox, retrying an outage with backoff, until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch = self.take()
            if not batch:
                continue
            delay = 0.1
            while True:
                try:
                    await write(self.redis, batch, self.ttl)
                    self.overload.published(time.monotonic(), bool(self._entries))
                    break
                except RETRYABLE as exc:
                    log.warning("publishing %d events failed: %s", len(batch), exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
                except Exception as exc:  # not an outage: retrying would fail again
                    failed("flusher", exc)  # the batch is dropped, the flusher goes on
                    break

    async def flush(self) -> None:
        """Write what is queued now (at shutdown)."""
        await write(self.redis, self.take(), self.ttl)
