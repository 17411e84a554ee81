"""store.round.Round against a real Redis: the same commands give the replies redis-py's
pipeline gives on RESP2, whichever protocol the Round's client speaks (on RESP3 the
pipeline itself would answer XREADGROUP with a dict)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from redis import __version__ as redis_version
from redis.exceptions import ResponseError

from sessiond.store import round as round_module
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


def _hiredis_sentinel() -> bool:
    """Whether the installed redis-py's hiredis parser has the "no data" sentinel the fast
    read needs (redis-py 5.0.1 has none: every reply then goes through read_response)."""
    try:
        from redis._parsers import hiredis as parser_module
    except ImportError:
        return False
    return hasattr(parser_module, "NOT_ENOUGH_DATA")


@pytest.mark.parametrize("protocol", [2, 3])
async def test_the_installed_redis_py_takes_the_path_it_should(
    redis_url: str, protocol: int
) -> None:
    """The private read (round.fast_reader) works with this redis-py, or is not used."""
    redis = connect(redis_url, protocol=protocol)
    try:
        await redis.ping()
        pool = redis.connection_pool
        try:
            conn = await pool.get_connection()
        except TypeError:  # redis-py < 5.3 wants a command name
            conn = await pool.get_connection("_")
        try:
            found = round_module.fast_reader(conn)
        finally:
            await pool.release(conn)
        assert (found is not None) == _hiredis_sentinel(), redis_version
        if found is not None:
            reader, missing = found
            assert reader.gets() is missing  # nothing buffered between rounds
    finally:
        await redis.aclose()


@pytest.mark.parametrize("protocol", [2, 3])
async def test_the_fast_and_the_public_read_give_the_same_replies(
    redis_url: str, protocol: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    redis = connect(redis_url, protocol=protocol)
    results = []
    try:
        for fast in (True, False):
            monkeypatch.setattr(round_module, "FAST_READ", fast)
            ns = f"rr{uuid.uuid4().hex[:8]}"
            await redis.xgroup_create(f"{ns}:s", "g", id="0", mkstream=True)
            p = Round(redis)
            _queue(p, ns)
            replies = await p.execute(raise_on_error=False)
            await redis.delete(f"{ns}:s", f"{ns}:k", f"{ns}:h", f"{ns}:z")
            [(_, [(_, fields)])] = replies[10]
            replies[10] = fields
            replies[0] = None
            replies[-1] = type(replies[-1])
            results.append(replies)
        assert results[0] == results[1]
    finally:
        await redis.aclose()
