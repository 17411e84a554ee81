"""Leg ownership on a real Redis and the embedded store: the claim of a create
(``lua/media_claim.lua``), the routing of a command that reached the pool
(``lua/media_route.lua``), the orphan audit, and two nodes in-process where a destroy sent
to the pool reaches the node that has the leg and a re-sent create makes no second leg."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis as sync_redis
import redis.asyncio as aioredis

from sessiond.core.ids import new_sid
from sessiond.media.audit import OrphanLeg, orphan_legs, orphan_legs_async
from sessiond.media.lost import LegRegistry, lost_events
from sessiond.media.owner import Claim, LegOwners
from sessiond.store import Keys

from .node_helpers import Harness, start_node, stop_node

pytestmark = [pytest.mark.redis, pytest.mark.timeout(30)]


async def live_session(redis: Any, keys: Keys, sid: str) -> None:
    """What create.lua leaves for a session with a leg: its hash (no ended_by), with a TTL."""
    await redis.hset(keys.session(sid), mapping={"sid": sid, "state": "Ringing"})
    await redis.expire(keys.session(sid), 300)


async def end_session(redis: Any, keys: Keys, sid: str) -> None:
    """What transition.lua does when the session reaches a terminal state."""
    await redis.hset(keys.session(sid), mapping={"state": "Terminated", "ended_by": "e-bye"})


async def test_one_node_per_create(backend: tuple[str, Any, Keys]) -> None:
    _, redis, keys = backend
    owners = LegOwners(redis, keys)
    sid = new_sid("claim@test")
    await live_session(redis, keys, sid)
    first = Claim(sid, f"{sid}.m", "ev1/1")
    assert await owners.claim_many("m1", "i1", [first]) == [("OK", "")]
    assert await owners.claim_many("m1", "i1", [first]) == [("OK", "")]  # executed again
    assert await owners.claim_many("m2", "j1", [first]) == [("OWNED", "m1")]  # re-sent
    # m1 died before acking it: the node that reclaims the entry takes the create over
    taken = Claim(sid, f"{sid}.m", "ev1/1", takeover=True)
    assert await owners.claim_many("m2", "j1", [taken]) == [("OK", "")]
    assert await owners.claim_many("m1", "i1", [first]) == [("OWNED", "m2")]
    # a relocation replaces it; the first create, re-sent, is stale from then on
    moved = Claim(sid, f"{sid}.m", "ev2/1", relocation=True)
    assert await owners.claim_many("m1", "i2", [moved]) == [("OK", "")]
    assert await owners.claim_many("m2", "j1", [first]) == [("STALE", "")]
    assert await owners.route(f"{sid}.m", destroy=False) == "m1"
    record = await redis.hgetall(keys.media_owner(f"{sid}.m"))
    assert record[b"node"] == b"m1"
    assert record[b"create"] == b"ev2/1"
    assert 0 < await redis.ttl(keys.media_owner(f"{sid}.m")) <= 3600


async def test_a_relocation_of_a_leg_the_claimant_holds_is_fenced(
    backend: tuple[str, Any, Keys],
) -> None:
    """Only a relocation means 'declared lost'; another create of the leg is accepted."""
    _, redis, keys = backend
    owners = LegOwners(redis, keys)
    sid = new_sid("fenced@test")
    await live_session(redis, keys, sid)
    assert await owners.claim_many("m1", "i1", [Claim(sid, f"{sid}.m", "ev1/1")]) == [("OK", "")]
    again = Claim(sid, f"{sid}.m", "ev2/1")
    assert await owners.claim_many("m1", "i1", [again]) == [("OK", "")]
    moved = Claim(sid, f"{sid}.m", "ev3/1", relocation=True)
    assert await owners.claim_many("m1", "i1", [moved]) == [("FENCED", "")]
    # as its new incarnation (after closing its legs) the node may take it
    assert await owners.claim_many("m1", "i2", [moved]) == [("OK", "")]


async def test_no_leg_for_an_ended_session_or_a_destroyed_leg(
    backend: tuple[str, Any, Keys],
) -> None:
    _, redis, keys = backend
    owners = LegOwners(redis, keys)
    ended, destroyed, unknown = (new_sid(f"{n}@test") for n in ("ended", "destroyed", "x"))
    await live_session(redis, keys, ended)
    await end_session(redis, keys, ended)
    await live_session(redis, keys, destroyed)
    # the destroy reached the pool before any node claimed the create
    assert await owners.route(f"{destroyed}.m", destroy=True) == ""
    claims = [Claim(s, f"{s}.m", f"{s}/1") for s in (ended, destroyed, unknown)]
    # a session without a hash (expired long ago, or a bare test) is
    # not refused: only positive evidence of the end is
    assert await owners.claim_many("m1", "i1", claims) == [("ENDED", ""), ("ENDED", ""), ("OK", "")]


async def test_orphan_legs_lists_legs_no_live_session_owns(redis_url: str) -> None:
    client = sync_redis.Redis.from_url(redis_url)
    keys = Keys("torphans")
    try:
        mine, ended, moved, gone = (new_sid(f"{n}@test") for n in ("a", "b", "c", "d"))
        for sid in (mine, ended, moved):
            client.hset(keys.session(sid), "state", "Established")
        client.hset(keys.session(ended), mapping={"state": "Terminated", "ended_by": "e-bye"})
        client.hset(keys.media_owner(f"{moved}.m"), mapping={"node": "m2", "incarnation": "j"})
        client.hset(keys.media_owner(f"{mine}.m"), mapping={"node": "m1", "incarnation": "i"})
        legs = {f"{s}.m": f"{s} {s}/1" for s in (mine, ended, moved, gone)}
        client.hset(keys.media_legs("m1"), mapping={**legs, "@incarnation": "i"})
        client.hset(keys.media_legs("dead"), mapping={f"{gone}.m": f"{gone} x"})
        for node in ("m1", "dead"):
            client.zadd(keys.processes("media"), {node: 1})
        client.set(keys.heartbeat("media", "m1"), "1", ex=30)  # "dead" has none
        expected = [
            OrphanLeg("m1", f"{ended}.m", ended, "session ended"),
            OrphanLeg("m1", f"{moved}.m", moved, "owned by m2"),
            OrphanLeg("m1", f"{gone}.m", gone, "session missing"),
        ]
        assert sorted(orphan_legs(client, keys)) == sorted(expected)
        aclient = aioredis.Redis.from_url(redis_url)
        try:
            assert sorted(await orphan_legs_async(aclient, keys)) == sorted(expected)
        finally:
            await aclient.aclose()
    finally:
        for key in client.scan_iter(match="torphans:*"):
            client.delete(key)
        client.close()


async def two_nodes(redis_url: str) -> tuple[Harness, Harness]:
    first = await start_node(redis_url, "m1")
    second = await start_node(redis_url, "m2", keys=first.keys)
    return first, second


async def wait_until(predicate: Any, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if await predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out")


def pool_done(node: Harness) -> Any:
    """Every entry of the pool stream was read and acked (by either node)."""

    async def check() -> bool:
        groups = await node.redis.xinfo_groups(node.keys.media_pool())
        group = next(g for g in groups if g["name"] == b"media")
        return bool(group["pending"] == 0 and group["lag"] == 0)

    return check


def gone_from(node: Harness, media_id: str) -> Any:
    async def check() -> bool:
        return media_id not in node.executor.legs

    return check


async def test_a_pool_destroy_reaches_the_node_with_the_leg(redis_url: str) -> None:
    """The call ended before MediaReady: its destroy went to the pool. Whichever node reads
    it, the leg is closed; a second create of the same leg (re-sent) makes none anywhere."""
    m1, m2 = await two_nodes(redis_url)
    try:
        for _ in range(6):  # each pool entry may land on either node
            sid, media_id = m1.new_session()
            await live_session(m1.redis, m1.keys, sid)
            create = await m1.command("create", sid, pool=True, media_id=media_id, mode="offer")
            await m1.event(sid, "MediaReady")
            holder = m1 if media_id in m1.executor.legs else m2
            assert media_id not in (m2 if holder is m1 else m1).executor.legs
            await m1.command("create", sid, create, pool=True, media_id=media_id, mode="offer")
            await m1.command("destroy", sid, pool=True, media_id=media_id)
            await wait_until(gone_from(holder, media_id))
            await wait_until(pool_done(m1))
            assert not m1.executor.legs
            assert not m2.executor.legs
    finally:
        await stop_node(m2)
        await stop_node(m1)


async def test_a_destroy_before_the_create_leaves_nothing(redis_url: str) -> None:
    m1, m2 = await two_nodes(redis_url)
    try:
        sid, media_id = m1.new_session()
        await live_session(m1.redis, m1.keys, sid)
        await m1.command("destroy", sid, pool=True, media_id=media_id)

        async def marked() -> bool:
            return bool(await m1.redis.hexists(m1.keys.media_owner(media_id), "destroyed"))

        await wait_until(marked)
        await m1.command("create", sid, pool=True, media_id=media_id, mode="offer")
        await wait_until(pool_done(m1))
        assert not m1.executor.legs
        assert not m2.executor.legs
        assert [e.type for e in await m1.events(sid)] == []
    finally:
        await stop_node(m2)
        await stop_node(m1)


async def test_a_node_closes_a_leg_whose_session_ended(redis_url: str) -> None:
    """The safety net: a leg whose session ended without its destroy reaching the node is
    closed once audits found it so for the grace period."""
    node = await start_node(redis_url, "m1")
    try:
        sid, media_id = node.new_session()
        await live_session(node.redis, node.keys, sid)
        await node.command("create", sid, pool=True, media_id=media_id, mode="offer")
        await node.event(sid, "MediaReady")
        assert await node.node.audit_once(grace=0.2) == 0
        await end_session(node.redis, node.keys, sid)
        assert await node.node.audit_once(grace=0.2) == 0  # suspected
        await asyncio.sleep(0.3)
        assert await node.node.audit_once(grace=0.2) == 1
        assert not node.executor.legs
    finally:
        await stop_node(node)


async def test_a_node_declared_lost_moves_a_call_back_only_as_a_new_incarnation(
    redis_url: str,
) -> None:
    """A node declared lost while running (a worker announced its legs and dropped its
    hash) reads the relocation's create for one of its own calls: it first closes its old
    copy and starts a new incarnation (by its heartbeat or the claim's FENCED, whichever is
    first), then makes the new leg, which is not announced lost again."""
    node = await start_node(redis_url, "m1")
    try:
        redis, keys = node.redis, node.keys
        sid, media_id = node.new_session()
        await live_session(redis, keys, sid)
        first_create = await node.command("create", sid, pool=True, media_id=media_id, mode="offer")
        await node.event(sid, "MediaReady")
        first = node.node.incarnation
        worker = LegRegistry(redis, keys)
        pipe = redis.pipeline(transaction=False)
        worker.queue_publish(pipe, lost_events("m1", await redis.hgetall(keys.media_legs("m1"))))
        await pipe.execute()
        assert await worker.forget("m1", first)
        origin = "sessiond 1 2 IN IP4 127.0.0.1"
        moved = await node.command(
            "create", sid, pool=True, media_id=media_id, mode="offer", origin=origin
        )
        ready = await node.wait_for(sid, lambda es: any(e.id == f"{moved}:ready" for e in es))
        assert node.node.incarnation != first
        assert [leg.origin for leg in node.executor.legs.values()] == [moved]
        lost = {e.id for e in ready if e.type == "MediaLost"}
        assert lost == {f"medialost:m1:{media_id}:{first_create}"}
        for _ in range(100):
            legs = await redis.hgetall(keys.media_legs("m1"))
            if legs.get(media_id.encode()) == f"={moved}".encode():
                break
            await asyncio.sleep(0.02)
        incarnation = node.node.incarnation.encode()
        assert legs == {media_id.encode(): f"={moved}".encode(), b"@incarnation": incarnation}
        record = await redis.hgetall(keys.media_owner(media_id))
        assert record[b"create"] == moved.encode()
        assert record[b"incarnation"] == node.node.incarnation.encode()
    finally:
        await stop_node(node)


async def test_malformed_commands_in_the_pool_do_not_stop_the_node(redis_url: str) -> None:
    """Creates and destroys whose ids are not session ids (garbage on the stream) have no
    owner record: they are handled as before, and the node goes on serving."""
    node = await start_node(redis_url, "m1")
    try:
        for sid, media_id in (("", "x"), ("not-a-sid", "y.m"), (new_sid("a@t"), "zz")):
            await node.command("create", sid, pool=True, media_id=media_id, mode="offer")
            await node.command("destroy", sid, pool=True, media_id=media_id)
        sid, media_id = node.new_session()
        await live_session(node.redis, node.keys, sid)
        await node.command("create", sid, pool=True, media_id=media_id, mode="offer")
        await node.event(sid, "MediaReady")
        assert not node.node.draining.is_set()
        assert await node.redis.hget(node.keys.media_owner(media_id), "node") == b"m1"
    finally:
        await stop_node(node)
