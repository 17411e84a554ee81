"""redis_round.Round against a real Redis: the same commands give the replies redis-py's
pipeline gives on RESP2, whichever protocol the Round's client speaks (on RESP3 the
pipeline itself would answer XREADGROUP with a dict)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from redis.exceptions import ResponseError

from sessiond.store.client import connect
from sessiond.store.round import Round

pytestmark = pytest.mark.redis


def _queue(p: Any, ns: str) -> None:
    p.xadd(f"{ns}:s", {"id": "e1", "data": b"\x80\x01"}, maxlen=100, approximate=True)
    p.set(f"{ns}:k", "v", ex=60)
    p.get(f"{ns}:k")
    p.hset(f"{ns}:h", mapping={"a": "1", "b": "2"})
    p.hdel(f"{ns}:h", "b")
    p.hgetall(f"{ns}:h")
    p.hget(f"{ns}:h", "a")
    p.hgetall(f"{ns}:nothing")
    p.zadd(f"{ns}:z", {"m": 1.5})
    p.zrem(f"{ns}:z", "m", "absent")
    p.xreadgroup("g", "c", {f"{ns}:s": ">"}, count=10)
    p.xack(f"{ns}:s", "g", b"0-1")
    p.xreadgroup("g", "c", {f"{ns}:s": ">"}, count=10)  # nothing new
    p.evalsha("0" * 40, 0)  # NOSCRIPT: an error reply in the middle


@pytest.mark.parametrize("protocol", [2, 3])
async def test_round_replies_like_the_pipeline(redis_url: str, protocol: int) -> None:
    redis = connect(redis_url, protocol=protocol)
    reference = connect(redis_url)  # RESP2
    try:
        results = []
        for p in (Round(redis), reference.pipeline(transaction=False)):
            ns = f"rr{uuid.uuid4().hex[:8]}"
            await redis.xgroup_create(f"{ns}:s", "g", id="0", mkstream=True)
            _queue(p, ns)
            replies = await p.execute(raise_on_error=False)
            await redis.delete(f"{ns}:s", f"{ns}:k", f"{ns}:h", f"{ns}:z")
            # stream entry ids differ between the two runs; the stream name too
            reads = replies[10]
            assert len(reads) == 1
            assert len(reads[0][1]) == 1
            [(_, fields)] = reads[0][1]
            replies[10] = fields
            replies[0] = None
            replies[-1] = type(replies[-1])
            results.append(replies)
        assert Round(redis).direct
        for i, (a, b) in enumerate(zip(*results, strict=True)):
            assert a == b, (i, a, b)
        assert results[0][10] == {b"id": b"e1", b"data": b"\x80\x01"}
        assert results[0][5] == {b"a": b"1"}
        assert results[0][7] == {}
        assert results[0][12] == []
        assert issubclass(results[0][-1], ResponseError)
    finally:
        await redis.aclose()
        await reference.aclose()


async def test_errors_raise_after_every_reply_is_read(redis_url: str) -> None:
    redis = connect(redis_url)
    ns = f"rr{uuid.uuid4().hex[:8]}"
    try:
        p = Round(redis)
        p.evalsha("0" * 40, 0)
        p.set(f"{ns}:k", "after", ex=60)
        with pytest.raises(ResponseError):
            await p.execute()
        assert await redis.get(f"{ns}:k") == b"after"  # the round was sent whole
        follow = Round(redis)  # and the connection went back to the pool in order
        follow.get(f"{ns}:k")
        assert await follow.execute() == [b"after"]
    finally:
        await redis.delete(f"{ns}:k")
        await redis.aclose()
