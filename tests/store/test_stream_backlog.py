"""A command entry delivered to a consumer whose reply never reached it (Redis stopped right
after answering) is run once the consumer is back: the edge and the media node re-read their
own pending entries after a Redis error (:class:`sessiond.store.streams.Backlog`).

The lost delivery is made exactly: another connection XADDs the entry and XREADGROUPs it under
the consumer's name in one MULTI, so the entry is in the consumer's pending list but the
consumer never saw it; then the Redis server (our own, with AOF) restarts on its port."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import redis as sync_redis

from sessiond.edge.process import GROUP as EDGE_GROUP
from sessiond.edge.process import Edge
from sessiond.edge.transport import ListenSpec
from sessiond.media.node import GROUP as MEDIA_GROUP
from sessiond.store import Keys, Store
from sessiond.store.client import connect
from sessiond.store.store import encode_event
from sessiond.store.tableset import TableSet
from sessiond.table import Table
from sessiond.worker.applier import Applier
from sessiond.worker.process import GROUP as WORKER_GROUP
from sessiond.worker.process import Worker

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.chaos.deploy import RedisServer  # noqa: E402
from tests.media.node_helpers import start_node, stop_node  # noqa: E402
from tests.worker.test_worker import invite  # noqa: E402


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    redis_server = RedisServer(tmp_path)
    redis_server.start()
    yield redis_server
    redis_server.stop()


def deliver_unseen(
    server: RedisServer, stream: str, group: str, consumer: str, fields: Any
) -> None:
    """Add an entry and deliver it to ``consumer`` in one transaction: it is pending for
    ``consumer``, whose own blocked read finds nothing new."""
    client = sync_redis.Redis(port=server.port)
    try:
        pipe = client.pipeline(transaction=True)
        pipe.xadd(stream, fields)
        pipe.xreadgroup(group, consumer, {stream: ">"}, count=10)
        _, delivered = pipe.execute()
        assert len(delivered[0][1]) == 1
        assert client.xpending(stream, group)["consumers"] == [
            {"name": consumer.encode(), "pending": 1}
        ]
    finally:
        client.close()


async def until(condition: Callable[[], Any], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def run_and_acked(redis: Any, stream: str, group: str, entry_id: bytes) -> Callable[[], Any]:
    """Whether ``entry_id`` was delivered and acknowledged: the consumer acks a batch with
    its next read, so it has read its backlog (if any) and reads new entries now."""

    async def done() -> bool:
        for info in await redis.xinfo_groups(stream):
            if info["name"] == group.encode():
                return bool(info["last-delivered-id"] == entry_id and info["pending"] == 0)
        return False

    return done


async def test_edge_runs_a_command_whose_delivery_was_lost(server: RedisServer) -> None:
    client = connect(server.url)
    keys = Keys(f"t{uuid.uuid4().hex[:8]}")
    edge = Edge(client, keys, "e1", [ListenSpec("UDP", "127.0.0.1", 0)])
    task = asyncio.create_task(edge.run())
    far = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    far.bind(("127.0.0.1", 0))
    far.setblocking(False)
    port = far.getsockname()[1]
    stream = keys.edge_commands("e1")
    try:
        data = {
            "call_id": "lost@h",
            "local_tag": "lt",
            "local_uri": "sip:alice@127.0.0.1",
            "remote_uri": f"sip:bob@127.0.0.1:{port}",
            "remote_target": f"sip:bob@127.0.0.1:{port}",
            "remote_tag": "",  # out of dialog
            "route_set": "",
            "cseq": 1,
            "sdp": "v=0\r\n",
        }
        warm_up = {**data, "call_id": "warm-up@h"}
        fields = {"id": "warm-up", "type": "invite", "sid": "", "data": msgpack.packb(warm_up)}
        await until(run_and_acked(client, stream, EDGE_GROUP, await client.xadd(stream, fields)))
        fields = {"id": "lost-1", "type": "invite", "sid": "", "data": msgpack.packb(data)}
        deliver_unseen(server, stream, EDGE_GROUP, "e1", fields)
        await asyncio.to_thread(server.restart, 0.5)
        loop = asyncio.get_running_loop()
        sent = b""
        while b"Call-ID: warm-up@h" in sent or not sent:  # (the warm-up's retransmissions)
            sent = await asyncio.wait_for(loop.sock_recv(far, 65535), 20)
        assert sent.startswith(f"INVITE sip:bob@127.0.0.1:{port} SIP/2.0".encode())
        assert b"Call-ID: lost@h" in sent

        async def acked() -> bool:
            return (await client.xpending(stream, EDGE_GROUP))["pending"] == 0

        await until(acked)
    finally:
        edge.stop()
        await asyncio.wait_for(task, 10)
        far.close()
        await client.aclose()


async def test_media_node_runs_a_destroy_whose_delivery_was_lost(server: RedisServer) -> None:
    harness = await start_node(server.url)
    node = harness.node
    own = harness.keys.media_commands("m1")
    try:
        sid, media_id = harness.new_session()
        await harness.command("create", sid, pool=True, media_id=media_id, mode="offer")
        await harness.event(sid, "MediaReady", timeout=20)
        warm_up = await harness.command("destroy", sid, media_id="nothing")  # a no-op
        entry_id = (await harness.redis.xrange(own))[-1][0]
        assert warm_up.endswith("/2")
        await until(run_and_acked(harness.redis, own, MEDIA_GROUP, entry_id))
        assert media_id in node.executor.legs
        fields = {
            "id": f"{sid}:destroy",
            "type": "destroy",
            "sid": sid,
            "data": msgpack.packb({"media_id": media_id}),
        }
        deliver_unseen(server, own, MEDIA_GROUP, "m1", fields)
        await asyncio.to_thread(server.restart, 0.5)

        async def destroyed() -> bool:
            pending = (await harness.redis.xpending(own, MEDIA_GROUP))["pending"]
            return media_id not in node.executor.legs and pending == 0

        await until(destroyed)
        assert node.ports.in_use == 0
    finally:
        await stop_node(harness)


async def test_worker_applies_an_event_whose_delivery_was_lost(
    server: RedisServer, default_table: Table
) -> None:
    """No other worker takes the entry over (the claim idle time is long): the worker that
    lost the delivery runs it from its own pending list."""
    client = connect(server.url)
    store = Store(client, Keys(f"t{uuid.uuid4().hex[:8]}"), worker="w1", ttl=300, ended_ttl=60)
    applier = Applier(store, TableSet([default_table], client, store.keys))
    worker = Worker(applier, name="w1", block_ms=50, claim_idle_ms=600_000)
    task = asyncio.create_task(worker.run())
    keys = store.keys
    try:
        first = keys.events(keys.partition_of_call("warm-up@h"))
        entry_id = await store.publish(keys.partition_of_call("warm-up@h"), invite("warm-up@h"))
        await until(run_and_acked(client, first, WORKER_GROUP, entry_id))
        assert await store.lookup(keys.initial("warm-up@h", "ft")) is not None
        stream = keys.events(keys.partition_of_call("lost@h"))
        deliver_unseen(server, stream, WORKER_GROUP, "w1", encode_event(invite("lost@h")))
        await asyncio.to_thread(server.restart, 0.5)

        async def applied() -> bool:
            return await store.lookup(keys.initial("lost@h", "ft")) is not None

        await until(applied)
        await until(
            run_and_acked(client, stream, WORKER_GROUP, (await client.xrange(stream))[-1][0])
        )
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)
        await client.aclose()
