"""The store layer's consumer and liveness pieces, on a real Redis and the embedded store:
acks ride with the next read and survive a failed round, the backlog is read first, and a
drain request is consumed once by the process it names."""

from __future__ import annotations

from typing import Any

import pytest
from redis.exceptions import ResponseError

from sessiond.store import Keys
from sessiond.store.consumer import Consumer, SeenIds
from sessiond.store.liveness import Liveness, live_processes, request_drain
from sessiond.store.round import Round

Backend = tuple[str, Any, Keys]


def test_seen_ids_forget_the_oldest() -> None:
    seen = SeenIds(size=2)
    assert seen.first("a")
    assert seen.first("b")
    assert not seen.first("a")
    seen.add("c")
    assert "a" not in seen
    assert "b" in seen
    assert "c" in seen
    assert len(seen) == 2


async def _pending(redis: Any, stream: str) -> int:
    return int((await redis.xpending(stream, "g"))["pending"])


async def test_acks_ride_with_the_next_read(backend: Backend) -> None:
    _, redis, keys = backend
    stream = f"{keys.ns}:s"
    consumer = Consumer(redis, "g", "c1", [stream], count=10)
    await consumer.ensure_groups()
    await redis.xadd(stream, {"n": "1"})
    batch = await consumer.read(stream, block=None)  # the backlog is empty: then new ones
    assert batch.start == ">"
    assert [f for _, f in batch.entries] == [{b"n": b"1"}]
    consumer.ack(stream, batch.entries[0][0])
    assert await _pending(redis, stream) == 1  # not yet: with the next read
    assert (await consumer.read(stream, block=None)).entries == []
    assert await _pending(redis, stream) == 0


async def test_acks_of_a_failed_round_are_kept(backend: Backend) -> None:
    _, redis, keys = backend
    stream = f"{keys.ns}:s"
    consumer = Consumer(redis, "g", "c1", [stream], count=10)
    await consumer.ensure_groups()
    await redis.xadd(stream, {"n": "1"})
    [(entry_id, _)] = (await consumer.read(stream, block=None)).entries
    consumer.ack(stream, entry_id)
    before = Round(redis)
    before.hset(f"{keys.ns}:s", {"not": "a hash"})  # WRONGTYPE: the round's first part fails
    with pytest.raises(ResponseError):
        await consumer.read(stream, block=None, before=before)
    assert consumer.pending_acks(stream)
    assert consumer.backlog.start(stream) == "0"  # what that read returned is ours, unseen
    again = await consumer.read(stream, block=None)
    assert again.entries == []  # acked now, so the backlog is empty
    assert await _pending(redis, stream) == 0


async def test_a_consumer_reads_its_backlog_first(backend: Backend) -> None:
    _, redis, keys = backend
    stream = f"{keys.ns}:s"
    first = Consumer(redis, "g", "c1", [stream], count=10)
    await first.ensure_groups()
    await redis.xadd(stream, {"n": "1"})
    await first.read(stream, block=None)  # delivered, never acked (the process died)
    restarted = Consumer(redis, "g", "c1", [stream], count=10)
    batch = await restarted.read(stream, block=None)
    assert batch.start == "0"
    assert len(batch.entries) == 1
    other = Consumer(redis, "g", "c2", [stream], count=10)
    _, claimed = await other.claim(stream, idle_ms=0)
    assert len(claimed) == 1


async def test_a_drain_request_is_consumed_by_the_process_it_names(backend: Backend) -> None:
    _, redis, keys = backend
    edge = Liveness(redis, keys, "edge", "e1")
    assert not (await edge.beat()).drain
    assert await live_processes(redis, keys, "edge") == ["e1"]
    await request_drain(redis, keys, "e1")
    assert not (await edge.beat(accept_drain=False)).drain  # already draining: left as is
    assert await redis.exists(keys.drain("e1"))
    assert (await edge.beat()).drain
    assert not await redis.exists(keys.drain("e1"))
    await edge.leave()
    assert await live_processes(redis, keys, "edge") == []


async def test_a_beat_carries_the_callers_commands(backend: Backend) -> None:
    _, redis, keys = backend
    worker = Liveness(redis, keys, "worker", "w1", listed=False)
    beat = await worker.beat(lambda pipe: pipe.get(f"{keys.ns}:nothing"))
    assert beat.extra == [None]
    assert await redis.exists(keys.heartbeat("worker", "w1"))
    assert await redis.zcard(keys.processes("worker")) == 0  # the lease loop lists workers
