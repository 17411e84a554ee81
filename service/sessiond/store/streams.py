"""What every stream consumer process shares: consumer groups and riding out Redis outages.

A step that fails because Redis went away (restart, failover, loading its data) is retried
with backoff (0.1 s doubling to 5 s) until it succeeds or the process stops. NOGROUP means
Redis came back without its data: the consumer groups are created again and the step retried.

An entry XREADGROUP delivered whose reply the consumer never got (Redis stopped right after
answering, the connection broke) is in the group's pending list under the consumer's name, and
reading ``>`` never returns it again: so at start and after every Redis error a consumer first
reads its own pending entries (id ``0``) until none is left (:class:`Backlog`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from redis.exceptions import ResponseError

from sessiond.store.client import RETRYABLE
from sessiond.store.keys import Keys

T = TypeVar("T")
MAX_BACKOFF = 5.0  # seconds: the longest wait between two attempts of a failing step


async def cancel_and_wait(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait for them to end. Unlike awaiting each one under
    ``suppress(CancelledError)``, a cancellation of the caller itself still propagates.

    A task still running a second later is cancelled again: a cancellation can be lost
    (Python 3.11's ``wait_for``, inside fakeredis' reads, drops one that arrives as its inner
    wait completes), and the task then waits on forever (``sessiond run`` hung on SIGTERM)."""
    for task in tasks:
        task.cancel()
    pending = set(tasks)
    while pending:
        _, pending = await asyncio.wait(pending, timeout=1.0)
        for task in pending:
            task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)  # all done: collects their errors


class Backlog:
    """Which of a consumer's streams must be read from ``0`` (the entries delivered to this
    consumer name and not acknowledged) rather than ``>`` (new entries): all of them at start
    and after an error (:meth:`lost`, the ``on_error`` of :func:`retrying`), until a read from
    ``0`` returns nothing. The consumer acknowledges what it ran before (or in the same round
    trip as) its next read, so the backlog shrinks; re-running an entry it had run already
    must be harmless (command ids are deduplicated, events checked against applied ones)."""

    def __init__(self, streams: Iterable[str]) -> None:
        self._streams = list(streams)
        self._due = set(self._streams)

    def start(self, stream: str) -> str:
        """The id to read ``stream`` from now."""
        return "0" if stream in self._due else ">"

    def read(self, stream: str, start: str, count: int | None) -> None:
        """Note that a read of ``stream`` from ``start`` returned ``count`` entries."""
        if start == "0" and count == 0:
            self._due.discard(stream)

    def lost(self, *streams: str) -> None:
        """A Redis error: a delivery may be lost; read ``streams`` (default all) from ``0``."""
        self._due.update(streams or self._streams)


async def ensure_groups(redis: Any, streams: list[str], group: str, start: str = "0") -> None:
    """Create ``group`` on each stream (and the stream), if it is not there yet."""
    for stream in streams:
        try:
            await redis.xgroup_create(stream, group, id=start, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise


async def group_stats(redis: Any, streams: list[str], group: str) -> list[tuple[int, int] | None]:
    """(lag, pending) of ``group`` on each stream, in one round trip (None where the group
    is missing)."""
    pipe = redis.pipeline(transaction=False)
    for stream in streams:
        pipe.xinfo_groups(stream)
    stats: list[tuple[int, int] | None] = []
    for groups in await pipe.execute():
        found = [g for g in groups if _text(g["name"]) == group]
        stats.append((int(found[0].get("lag") or 0), int(found[0]["pending"])) if found else None)
    return stats


async def forget_dead_consumers(
    redis: Any, keys: Keys, streams: list[str], group: str, me: str, idle_ms: int
) -> None:
    """Remove the consumers of ``group`` (workers) with nothing pending whose process no
    longer heartbeats and that have not read for ``idle_ms``, and their ``processes`` entry."""
    # every worker joins every partition: the first one's consumers are all of them
    for consumer in await redis.xinfo_consumers(streams[0], group):
        name = _text(consumer["name"])
        if name == me or int(consumer["pending"]) > 0:
            continue
        if await redis.exists(keys.heartbeat("worker", name)):
            continue
        if int(consumer.get("idle", 0)) < idle_ms:
            continue
        for stream in streams:
            await redis.xgroup_delconsumer(stream, group, name)
        await redis.zrem(keys.processes("worker"), name)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def retrying(
    step: Callable[[], Awaitable[T]],
    *,
    stopping: asyncio.Event,
    recreate_groups: Callable[[], Awaitable[None]],
    log: logging.Logger,
    on_error: Callable[[], None] | None = None,
) -> T | None:
    """Run ``step`` until it succeeds (its result) or ``stopping`` is set (None)."""
    delay = 0.1
    while not stopping.is_set():
        try:
            return await step()
        except RETRYABLE as exc:
            if on_error is not None:
                on_error()
            log.warning("redis unavailable (%s); retrying in %.1fs", exc, delay)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stopping.wait(), delay)
            delay = min(delay * 2, MAX_BACKOFF)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await recreate_groups()  # Redis restarted without its data
    return None
