"""The media node's consumer rounds: a batch's events and acks ride with the next XREADGROUP
(one :class:`~sessiond.store.round.Round`), with RESP2 and RESP3 replies."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from sessiond.media.node import GROUP, MediaNode, available_codecs
from sessiond.media.ports import PortAllocator
from sessiond.store import Keys
from sessiond.store.client import connect
from sessiond.store.round import Round

from .node_helpers import LOOPBACK, Harness, free_range, stop_node


async def _start(url: str, protocol: int) -> Harness:
    redis = connect(url, protocol=protocol)
    keys = Keys(f"t{uuid.uuid4().hex[:8]}")
    first, last = free_range()
    args = {"sdp_address": LOOPBACK, "codecs": available_codecs()}
    node = MediaNode(
        redis, keys, args, name="m1", ports=PortAllocator(LOOPBACK, first, last), block_ms=20
    )
    return Harness(node, redis, keys, asyncio.create_task(node.run()))


async def _settled(harness: Harness) -> None:
    """Both command streams fully acked and the legs hash holding only the incarnation."""
    keys, redis = harness.keys, harness.redis
    for _ in range(100):
        pending = [
            (await redis.xpending(stream, GROUP))["pending"]
            for stream in (keys.media_pool(), keys.media_commands("m1"))
        ]
        if pending == [0, 0] and await redis.hlen(keys.media_legs("m1")) == 1:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not settled: pending {pending}")


@pytest.mark.redis
@pytest.mark.parametrize("protocol", [2, 3])
async def test_create_and_destroy_over_either_protocol(redis_url: str, protocol: int) -> None:
    harness = await _start(redis_url, protocol)
    try:
        assert Round(harness.redis).direct
        for _ in range(3):
            sid, media_id = harness.new_session()
            await harness.command("create", sid, pool=True, media_id=media_id, mode="offer")
            ready = await harness.event(sid, "MediaReady")
            assert ready.data["media_id"] == media_id
            assert await harness.redis.hexists(harness.keys.media_legs("m1"), media_id)
            await harness.command("destroy", sid, media_id=media_id)
            await _settled(harness)
            assert harness.node.ports.in_use == 0
    finally:
        await stop_node(harness)


@pytest.mark.redis
async def test_consumers_survive_their_connections_being_killed(redis_url: str) -> None:
    harness = await _start(redis_url, 3)
    admin = connect(redis_url)
    try:
        sid, media_id = harness.new_session()
        await harness.command("create", sid, pool=True, media_id=media_id, mode="offer")
        await harness.event(sid, "MediaReady")
        # the connections the node's two consumer loops are blocked reading on
        await asyncio.sleep(0.1)
        busy = list(harness.redis.connection_pool._in_use_connections)
        assert len(busy) >= 2  # (a heartbeat may be in flight too)
        for conn in busy:
            await admin.execute_command("CLIENT", "KILL", "ADDR", _addr(conn))
        sid2, media2 = harness.new_session()
        await harness.command("create", sid2, pool=True, media_id=media2, mode="offer")
        await harness.event(sid2, "MediaReady", timeout=8)
        for s, m in ((sid, media_id), (sid2, media2)):
            await harness.command("destroy", s, media_id=m)
        await _settled(harness)
    finally:
        await admin.aclose()
        await stop_node(harness)


def _addr(conn: object) -> str:
    """The client address Redis sees for a connection (CLIENT KILL ADDR takes it)."""
    sock = conn._writer.transport.get_extra_info("sockname")  # type: ignore[attr-defined]
    return f"{sock[0]}:{sock[1]}"
