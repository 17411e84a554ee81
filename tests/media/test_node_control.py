"""The media node's control plane: duplicates, failures, timeouts, garbage entries, drain."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from sessiond.media.node import GROUP

from .node_helpers import FarEnd, Harness, softphone_offer, start_node, stop_node

pytestmark = pytest.mark.redis


@pytest.fixture
async def node(redis_url: str) -> AsyncIterator[Harness]:
    harness = await start_node(redis_url, inactivity_timeout=0.3)
    yield harness
    await stop_node(harness)


async def offer_from(far: FarEnd, codecs: str = "8 0 101") -> str:
    port, rtcp = await far.open()
    return softphone_offer(port, rtcp, codecs)


async def test_duplicate_create_allocates_once_and_repeats_the_event(node: Harness) -> None:
    far = FarEnd()
    try:
        sid, media_id = node.new_session()
        offer = await offer_from(far)
        first = await node.command(
            "create", sid, pool=True, media_id=media_id, mode="answer", remote_sdp=offer
        )
        await node.event(sid, "MediaReady")
        # the same command re-emitted (dropped), and another create for the same media id
        # (answered with the first MediaReady, same event id)
        await node.command(
            "create", sid, first, pool=True, media_id=media_id, mode="answer", remote_sdp=offer
        )
        await node.command("create", sid, pool=True, media_id=media_id, mode="answer")
        events = await node.wait_for(sid, lambda es: len(es) >= 2)
        await asyncio.sleep(0.2)
        events = await node.events(sid)
        assert [e.type for e in events] == ["MediaReady", "MediaReady"]
        assert events[0] == events[1]
        assert events[0].id == f"{first}:ready"
        assert node.node.ports.in_use == 1
        assert len(node.executor.legs) == 1
    finally:
        far.close()


async def test_no_common_codec_is_488_and_frees_the_port(node: Harness) -> None:
    far = FarEnd()
    try:
        sid, media_id = node.new_session()
        offer = await offer_from(far, "18")  # G.729 only
        cid = await node.command(
            "create", sid, pool=True, media_id=media_id, mode="answer", remote_sdp=offer
        )
        failed = await node.event(sid, "MediaFailed")
        assert failed.id == f"{cid}:failed"
        assert failed.data["code"] == 488
        assert node.node.ports.in_use == 0
        await node.command("update", sid, media_id="nope", remote_sdp=offer)
        await node.wait_for(sid, lambda es: len(es) == 2)
        assert (await node.events(sid))[1].data["code"] == 500
    finally:
        far.close()


async def test_rtp_timeout_fires_once(node: Harness) -> None:
    far = FarEnd()
    try:
        sid, media_id = node.new_session()
        offer = await offer_from(far)
        cid = await node.command(
            "create", sid, pool=True, media_id=media_id, mode="answer", remote_sdp=offer
        )
        timeout = await node.event(sid, "RtpTimeout", timeout=3)
        assert timeout.data == {"media_id": media_id}
        assert timeout.id == f"{cid}:timeout:1"  # unique per leg, even if media is re-created
        await asyncio.sleep(0.8)
        assert sum(e.type == "RtpTimeout" for e in await node.events(sid)) == 1
    finally:
        far.close()


@pytest.mark.parametrize("url", ["redis", "embedded"])
async def test_garbage_entries_are_acked_and_skipped(redis_url: str, url: str) -> None:
    harness = await start_node(redis_url if url == "redis" else "embedded")
    try:
        pool = harness.keys.media_pool()
        await harness.redis.xadd(pool, {"junk": b"\xff\x00"})
        await harness.redis.xadd(pool, {"id": "x", "type": "create", "data": b"\xc1not msgpack"})
        await harness.redis.xadd(pool, {"id": "y", "type": "create", "data": b"\x93\x01\x02\x03"})
        await harness.command("frobnicate", "", media_id="z")
        sid, media_id = harness.new_session()
        await harness.command("create", sid, pool=True, media_id=media_id, mode="offer")
        await harness.event(sid, "MediaReady")
        for _ in range(50):  # acked right after the batch's events are published
            if (await harness.redis.xpending(pool, GROUP))["pending"] == 0:
                break
            await asyncio.sleep(0.02)
        assert (await harness.redis.xpending(pool, GROUP))["pending"] == 0
        assert (await harness.redis.xpending(harness.keys.media_commands("m1"), GROUP))[
            "pending"
        ] == 0
    finally:
        await stop_node(harness)


async def test_heartbeat_and_drain(redis_url: str) -> None:
    harness = await start_node(redis_url, name="m-drain")
    try:
        keys, redis = harness.keys, harness.redis
        for _ in range(100):
            if await redis.exists(keys.heartbeat("media", "m-drain")):
                break
            await asyncio.sleep(0.02)
        assert await redis.zscore(keys.processes("media"), "m-drain")
        sid, media_id = harness.new_session()
        await harness.command("create", sid, pool=True, media_id=media_id, mode="offer")
        await harness.event(sid, "MediaReady")
        await redis.set(keys.drain("m-drain"), "1")
        await asyncio.wait_for(harness.node.draining.wait(), 3)
        # no new creates are taken from the pool; the existing leg is kept until destroyed
        sid2, media2 = harness.new_session()
        await harness.command("create", sid2, pool=True, media_id=media2, mode="offer")
        await asyncio.sleep(0.3)
        assert not harness.task.done()
        assert await harness.events(sid2) == []
        await harness.command("destroy", sid, media_id=media_id)
        await asyncio.wait_for(harness.task, 3)
        assert not await redis.exists(keys.heartbeat("media", "m-drain"))
        assert harness.node.ports.in_use == 0
    finally:
        await stop_node(harness)
