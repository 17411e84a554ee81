"""Media node loss on a real Redis (and the embedded store): the legs a node lists, the
workers' detection of a dead node (each leg announced once, even with two workers checking at
once), a node restarted under the same name, and a node declared lost while still running."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from sessiond.core.ids import new_sid
from sessiond.core.types import Event
from sessiond.media.lost import INCARNATION, LegRegistry, lost_events
from sessiond.store import Keys
from sessiond.store.client import connect
from sessiond.store.store import decode_event, delete_namespace

from .node_helpers import start_node, stop_node

pytestmark = pytest.mark.redis


async def all_events(redis: Any, keys: Keys) -> list[Event]:
    out = []
    for partition in range(keys.partitions):
        for _, fields in await redis.xrange(keys.events(partition)):
            out.append(decode_event(fields))
    return out


async def list_legs(redis: Any, keys: Keys, node: str, incarnation: str, n: int) -> list[str]:
    """A legs hash as node ``node`` (incarnation ``incarnation``) leaves it: n legs."""
    sids = [new_sid(f"call-{node}-{i}@test") for i in range(n)]
    legs = {f"{sid}.m": f"{sid} {sid}:ev/0" for sid in sids}
    await redis.hset(keys.media_legs(node), mapping={**legs, INCARNATION: incarnation})
    return sids


def test_lost_events_are_deterministic_and_skip_the_incarnation() -> None:
    legs = {b"A-1.m": b"A-1 ev1/0", b"@incarnation": b"x", "B-2.m": "B-2 ev2/3"}
    events = lost_events("m9", legs)
    assert [(e.id, e.type, e.sid) for e in events] == [
        ("medialost:m9:A-1.m:ev1/0", "MediaLost", "A-1"),
        ("medialost:m9:B-2.m:ev2/3", "MediaLost", "B-2"),
    ]
    assert events[0].data == {"media_node": "m9", "media_id": "A-1.m", "reason": "media node lost"}
    assert lost_events("m9", legs) == events


async def test_a_dead_nodes_legs_are_announced_exactly_once(
    backend: tuple[str, Any, Keys],
) -> None:
    url, redis, keys = backend
    other = connect(url)  # a second worker, on its own connection
    try:
        sids = await list_legs(redis, keys, "dead", "i1", 3)
        await list_legs(redis, keys, "alive", "i2", 1)
        await redis.zadd(keys.processes("media"), {"dead": time.time() - 10, "alive": time.time()})
        await redis.set(keys.heartbeat("media", "alive"), "1", ex=30)
        one, two = LegRegistry(redis, keys), LegRegistry(other, keys)
        counts = await asyncio.gather(one.find_lost_nodes("w1"), two.find_lost_nodes("w2"))
        assert sorted(counts) == [0, 3]
        events = await all_events(redis, keys)
        assert sorted(e.sid for e in events) == sorted(sids)
        assert {e.type for e in events} == {"MediaLost"}
        assert {e.data["media_node"] for e in events} == {"dead"}
        assert len({e.id for e in events}) == 3
        assert not await redis.exists(keys.media_legs("dead"))
        assert await redis.zscore(keys.processes("media"), "dead") is None
        # the live node is untouched, and a later check finds nothing more to announce
        assert await redis.hlen(keys.media_legs("alive")) == 2
        assert await one.find_lost_nodes("w1") == 0
        assert len(await all_events(redis, keys)) == 3
    finally:
        await other.aclose()


async def test_a_claimed_node_is_left_to_its_claimant(backend: tuple[str, Any, Keys]) -> None:
    _, redis, keys = backend
    await list_legs(redis, keys, "dead", "i1", 2)
    await redis.zadd(keys.processes("media"), {"dead": time.time() - 10})
    await redis.set(keys.media_lost_claim("dead"), "w-other", ex=30)
    assert await LegRegistry(redis, keys).find_lost_nodes("w1") == 0
    assert await all_events(redis, keys) == []
    assert await redis.hlen(keys.media_legs("dead")) == 3


async def test_a_restarted_node_announces_its_old_legs_and_keeps_its_new_ones(
    redis_url: str,
) -> None:
    keys = Keys("tlost" + new_sid("x@y")[-8:])
    admin = connect(redis_url)
    harness = None
    try:
        sids = await list_legs(admin, keys, "m1", "old-run", 2)
        await admin.zadd(keys.processes("media"), {"m1": time.time() - 10})
        harness = await start_node(redis_url, "m1", keys)
        events = await harness.wait_for(sids[0], lambda es: len(es) == 1)
        assert events[0].id == f"medialost:m1:{sids[0]}.m:{sids[0]}:ev/0"
        await harness.wait_for(sids[1], lambda es: len(es) == 1)
        # a worker that read the old legs before the restart cannot drop the new hash
        registry = LegRegistry(admin, keys)
        assert not await registry.forget("m1", "old-run")
        assert await registry.find_lost_nodes("w1") == 0  # the node heartbeats again
        sid = new_sid("new-call@test")
        cid = await harness.command("create", sid, pool=True, media_id=f"{sid}.m", mode="offer")
        await harness.event(sid, "MediaReady")
        legs = await admin.hgetall(keys.media_legs("m1"))
        assert legs == {
            INCARNATION.encode(): harness.node.incarnation.encode(),
            f"{sid}.m".encode(): f"={cid}".encode(),
        }
        await harness.command("destroy", sid, media_id=f"{sid}.m")
        for _ in range(100):
            if await admin.hlen(keys.media_legs("m1")) == 1:
                break
            await asyncio.sleep(0.02)
        assert await admin.hkeys(keys.media_legs("m1")) == [INCARNATION.encode()]
    finally:
        if harness is not None:
            await stop_node(harness)
        await delete_namespace(admin, keys.ns)
        await admin.aclose()


async def test_a_node_declared_lost_while_running_gives_its_legs_up(redis_url: str) -> None:
    harness = await start_node(redis_url, "m-slow")
    try:
        keys, redis = harness.keys, harness.redis
        sid = new_sid("slow-call@test")
        cid = await harness.command("create", sid, pool=True, media_id=f"{sid}.m", mode="offer")
        await harness.event(sid, "MediaReady")
        first = harness.node.incarnation
        # what a worker does once the heartbeat lapsed: announce the legs, drop the hash
        worker = LegRegistry(redis, keys)
        legs = await redis.hgetall(keys.media_legs("m-slow"))
        pipe = redis.pipeline(transaction=False)
        worker.queue_publish(pipe, lost_events("m-slow", legs))
        await pipe.execute()
        assert await worker.forget("m-slow", first)
        # at its next heartbeat the node closes the leg and starts a new incarnation
        for _ in range(200):
            if not harness.executor.legs and harness.node.incarnation != first:
                break
            await asyncio.sleep(0.02)
        assert harness.executor.legs == {}
        assert harness.node.ports.in_use == 0
        assert harness.node.incarnation != first
        lost = [e for e in await harness.events(sid) if e.type == "MediaLost"]
        assert {e.id for e in lost} == {f"medialost:m-slow:{sid}.m:{cid}"}  # same id twice
        assert await redis.hget(keys.media_legs("m-slow"), INCARNATION) == (
            harness.node.incarnation.encode()
        )
    finally:
        await stop_node(harness)


async def test_a_drained_node_announces_the_legs_it_still_had(redis_url: str) -> None:
    harness = await start_node(redis_url, "m-drained")
    try:
        sid = new_sid("drained-call@test")
        cid = await harness.command("create", sid, pool=True, media_id=f"{sid}.m", mode="offer")
        await harness.event(sid, "MediaReady")
        await harness.stop()  # drain, then stop at once with the leg still open
        lost = await harness.event(sid, "MediaLost")
        assert lost.id == f"medialost:m-drained:{sid}.m:{cid}"
        assert not await harness.redis.exists(harness.keys.media_legs("m-drained"))
    finally:
        await stop_node(harness)


async def test_a_moved_leg_continues_the_sdp_origin(redis_url: str) -> None:
    harness = await start_node(redis_url, "m2")
    try:
        sid = new_sid("moved-call@test")
        origin = "sessiond 4242 4245 IN IP4 127.0.0.1"
        await harness.command(
            "create",
            sid,
            pool=True,
            media_id=f"{sid}.m",
            mode="offer",
            origin=origin,
            direction="sendonly",
        )
        ready = await harness.event(sid, "MediaReady")
        sdp = ready.data["sdp"]
        assert "o=sessiond 4242 4246 IN IP4 127.0.0.1" in sdp
        assert "a=sendonly" in sdp
        assert ready.data["media_node"] == "m2"
    finally:
        await stop_node(harness)
