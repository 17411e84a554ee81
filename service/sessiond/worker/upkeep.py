"""Housekeeping of the workers' consumer group, done on the heartbeat: the stream lag and
pending gauges, and the removal of consumers whose process is gone."""

from __future__ import annotations

from typing import Any

from sessiond.core import metrics
from sessiond.store.keys import WORKERS_GROUP, Keys

GROUP = WORKERS_GROUP
FORGET_IDLE_MS = 60_000  # a dead consumer is removed after this long without reading


async def sample_streams(redis: Any, streams: list[str]) -> None:
    """Set the lag and pending gauges of every partition stream (one round trip)."""
    pipe = redis.pipeline(transaction=False)
    for stream in streams:
        pipe.xinfo_groups(stream)
    for stream, groups in zip(streams, await pipe.execute(), strict=True):
        for group in groups:
            if _text(group["name"]) == GROUP:
                metrics.STREAM_LAG.labels(stream).set(int(group.get("lag") or 0))
                metrics.STREAM_PENDING.labels(stream).set(int(group["pending"]))


async def forget_dead_consumers(redis: Any, keys: Keys, streams: list[str], me: str) -> None:
    """Remove consumers with nothing pending whose process no longer heartbeats."""
    # every worker joins every partition: the first one's consumers are all of them
    for consumer in await redis.xinfo_consumers(streams[0], GROUP):
        name = _text(consumer["name"])
        if name == me or int(consumer["pending"]) > 0:
            continue
        if await redis.exists(keys.heartbeat("worker", name)):
            continue
        if int(consumer.get("idle", 0)) < FORGET_IDLE_MS:
            continue
        for stream in streams:
            await redis.xgroup_delconsumer(stream, GROUP, name)
        await redis.zrem(keys.processes("worker"), name)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
