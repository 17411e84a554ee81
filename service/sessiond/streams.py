"""What every stream consumer process shares: consumer groups and riding out Redis outages.

A step that fails because Redis went away (restart, failover, loading its data) is retried
with backoff (0.1 s doubling to 5 s) until it succeeds or the process stops. NOGROUP means
Redis came back without its data: the consumer groups are created again and the step retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis.exceptions import ResponseError

from sessiond.redis_client import RETRYABLE

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


async def ensure_groups(redis: Any, streams: list[str], group: str, start: str = "0") -> None:
    """Create ``group`` on each stream (and the stream), if it is not there yet."""
    for stream in streams:
        try:
            await redis.xgroup_create(stream, group, id=start, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise


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
