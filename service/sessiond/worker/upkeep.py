"""Housekeeping of the workers' consumer group, done on the heartbeat: the stream lag and
pending gauges, and the removal of consumers whose process is gone."""

from __future__ import annotations

from typing import Any

from sessiond.core import metrics
from sessiond.store import streams as group
from sessiond.store.keys import WORKERS_GROUP, Keys

GROUP = WORKERS_GROUP
FORGET_IDLE_MS = 60_000  # a dead consumer is removed after this long without reading


async def sample_streams(redis: Any, streams: list[str]) -> None:
    """Set the lag and pending gauges of every partition stream (one round trip)."""
    for stream, stats in zip(streams, await group.group_stats(redis, streams, GROUP), strict=True):
        if stats is not None:
            metrics.STREAM_LAG.labels(stream).set(stats[0])
            metrics.STREAM_PENDING.labels(stream).set(stats[1])


async def forget_dead_consumers(redis: Any, keys: Keys, streams: list[str], me: str) -> None:
    """Remove consumers with nothing pending whose process no longer heartbeats."""
    await group.forget_dead_consumers(redis, keys, streams, GROUP, me, FORGET_IDLE_MS)
