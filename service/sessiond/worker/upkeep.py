"""Housekeeping of the workers' consumer group, done on the heartbeat: the stream lag and
pending gauges, the removal of consumers whose process is gone, and (every few heartbeats)
the trimming of the streams by what their consumer groups are done with."""

from __future__ import annotations

import logging
import time
from collections.abc import Set
from typing import Any

from redis.exceptions import ResponseError

from sessiond.core import metrics
from sessiond.store import streams as group
from sessiond.store.keys import WORKERS_GROUP, Keys
from sessiond.store.liveness import live_processes
from sessiond.store.trim import trim_consumed

GROUP = WORKERS_GROUP
FORGET_IDLE_MS = 60_000  # a dead consumer is removed after this long without reading
TRIM_EVERY = 5  # heartbeats between two trims of the streams
#: Seconds ``{app}:events`` keeps its entries while no application has a group on it (a
#: group created later from ``0`` still finds the last ones).
UNREAD_APP_SECONDS = 10.0
log = logging.getLogger("sessiond.worker")


async def sample_streams(redis: Any, streams: list[str]) -> None:
    """Set the lag and pending gauges of every partition stream (one round trip)."""
    for stream, stats in zip(streams, await group.group_stats(redis, streams, GROUP), strict=True):
        if stats is not None:
            metrics.STREAM_LAG.labels(stream).set(stats[0])
            metrics.STREAM_PENDING.labels(stream).set(stats[1])


async def forget_dead_consumers(redis: Any, keys: Keys, streams: list[str], me: str) -> None:
    """Remove consumers with nothing pending whose process no longer heartbeats."""
    await group.forget_dead_consumers(redis, keys, streams, GROUP, me, FORGET_IDLE_MS)


async def trim_streams(redis: Any, keys: Keys, owned: Set[int]) -> int:
    """Trim the partition streams this worker holds; the holder of partition 0 also trims
    the command streams of the live edges and media nodes, the media pool and the
    applications' stream. Returns the entries removed."""
    streams = [keys.events(p) for p in sorted(owned)]
    unread: dict[str, float] = {}
    if 0 in owned:
        edges = await live_processes(redis, keys, "edge")
        nodes = await live_processes(redis, keys, "media")
        streams += [keys.edge_commands(name) for name in [*edges, "any"]]
        streams += [keys.media_commands(name) for name in nodes]
        streams += [keys.media_pool(), keys.app_events()]
        unread[keys.app_events()] = UNREAD_APP_SECONDS
    try:
        return await trim_consumed(redis, streams, unread_age=unread, now=time.time())
    except ResponseError as exc:  # e.g. an ACL without +xtrim: the MAXLEN caps remain
        log.warning("streams not trimmed: %s", exc)
        return 0
