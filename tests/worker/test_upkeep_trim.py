"""The worker's upkeep trims the shared streams by what their consumer groups are done with:
its own partitions, and (the holder of partition 0) the live edges' and media nodes' command
streams, the media pool and the applications' stream."""

from __future__ import annotations

import time

import pytest

from sessiond.store import Store
from sessiond.worker import upkeep

pytestmark = pytest.mark.redis


async def _consumed(store: Store, stream: str, group: str, n: int = 250) -> None:
    """``n`` entries, all read and acknowledged by ``group``."""
    await store.redis.xgroup_create(stream, group, id="0", mkstream=True)
    for i in range(n):
        await store.redis.xadd(stream, {"i": i})
    read = await store.redis.xreadgroup(group, "c", {stream: ">"}, count=n)
    await store.redis.xack(stream, group, *[eid for eid, _ in read[0][1]])


async def test_the_holder_of_partition_0_trims_every_shared_stream(store: Store) -> None:
    keys, redis = store.keys, store.redis
    await redis.zadd(keys.processes("edge"), {"e1": time.time()})
    await redis.set(keys.heartbeat("edge", "e1"), "1", ex=5)
    edge, events, other = keys.edge_commands("e1"), keys.events(0), keys.events(1)
    for stream, group in ((edge, "edge"), (events, "workers"), (other, "workers")):
        await _consumed(store, stream, group)
    app, pool = keys.app_events(), keys.media_pool()
    for i in range(250):  # nobody reads these: the app's are old, the pool's have no group
        await redis.xadd(app, {"i": i}, id=f"{1000 + i}-0")
        await redis.xadd(pool, {"i": i})

    assert await upkeep.trim_streams(redis, keys, {1}) > 0  # its own partition only
    assert await redis.xlen(other) < 250
    assert await redis.xlen(events) == await redis.xlen(edge) == await redis.xlen(app) == 250

    assert await upkeep.trim_streams(redis, keys, {0}) > 0
    assert await redis.xlen(events) < 250
    assert await redis.xlen(edge) < 250
    assert await redis.xlen(app) < 250
    assert await redis.xlen(pool) == 250
