"""Trimming the shared streams by what their consumer groups are done with."""

from __future__ import annotations

import pytest

from sessiond.store import Store
from sessiond.store.trim import parse_id, trim_consumed

pytestmark = pytest.mark.redis


async def _ids(store: Store, stream: str) -> list[bytes]:
    return [eid for eid, _ in await store.redis.xrange(stream)]


async def test_a_stream_keeps_what_a_group_has_pending_or_not_read_yet(store: Store) -> None:
    redis, ns = store.redis, store.keys.ns
    stream, other = f"{ns}:{{x}}:s", f"{ns}:{{x}}:nogroup"
    await redis.xgroup_create(stream, "g", id="0", mkstream=True)
    for i in range(300):
        await redis.xadd(stream, {"i": i})
        await redis.xadd(other, {"i": i})
    await redis.xgroup_create(stream, "late", id="$")  # needs none of them
    every = await _ids(store, stream)
    read = await redis.xreadgroup("g", "c", {stream: ">"}, count=250)
    await redis.xack(stream, "g", *[eid for eid, _ in read[0][1][:200]])

    removed = await trim_consumed(redis, [stream, other, "t:{x}:missing"])

    kept = await _ids(store, stream)
    assert removed == len(every) - len(kept) > 0
    assert set(every[200:]) <= set(kept)  # pending (200-249) and never read (250-299)
    assert parse_id(kept[0]) <= parse_id(every[200])
    assert await redis.xlen(other) == 300  # no group: nobody said what it needs


async def test_a_stream_without_a_group_keeps_its_recent_entries(store: Store) -> None:
    redis, stream = store.redis, f"{store.keys.ns}:{{x}}:app"
    for i in range(250):
        await redis.xadd(stream, {"i": i}, id=f"{1000 + i}-0")
    every = await _ids(store, stream)
    removed = await trim_consumed(redis, [stream], unread_age={stream: 0.08}, now=1.2)
    kept = await _ids(store, stream)
    assert removed == len(every) - len(kept) > 0
    assert set(every[120:]) <= set(kept)  # entries from 1120 ms on: younger than 0.08 s
    await redis.xgroup_create(stream, "app", id="$")  # from now on, the group says
    later = [await redis.xadd(stream, {"i": i}, id=f"{2000 + i}-0") for i in range(10)]
    await trim_consumed(redis, [stream], unread_age={stream: 0.1}, now=1e9)
    assert set(later) <= set(await _ids(store, stream))  # not read yet: kept, however old


async def test_a_group_that_read_nothing_yet_holds_every_entry(store: Store) -> None:
    redis, stream = store.redis, f"{store.keys.ns}:{{x}}:idle"
    await redis.xgroup_create(stream, "g", id="0", mkstream=True)
    for i in range(250):
        await redis.xadd(stream, {"i": i})
    assert await trim_consumed(redis, [stream]) == 0
    assert await redis.xlen(stream) == 250
