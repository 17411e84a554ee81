"""One round trip of Redis commands, without redis-py's pipeline machinery where it can.

On a plain server (not the embedded store, not a Redis Cluster) a :class:`Round` packs its
commands into one write on a pooled connection and reads the replies in order: redis-py's
asyncio pipeline (command stack, retry wrapper, response callbacks) cost about a third to
two thirds of a round's CPU in the processes' hot loops (worker, applier, edge, media node).
Replies come back in the shapes the pipeline gives (``HGETALL`` a dict, ``XREADGROUP``
``[[stream, [(id, {field: value})]]]``), so callers do not care which path ran. Elsewhere
the commands are replayed on a pipeline. EVALSHA goes out bare, not through redis-py's
``Script``: its NOSCRIPT reply is handled by :func:`sessiond.store.store.eval_many`.

Sending uses public connection API (``send_packed_command``). Reading is the one private
part, kept for speed and confined to :func:`fast_reader`: after the first reply has come
through ``read_response()`` the rest are usually in hiredis' buffer, and are taken from the
parser's hiredis reader directly. Measured with a micro-benchmark of the worker's
``read_many`` round (64 sessions: 128 commands; local Redis 7, redis-py 8.2, hiredis 3.5;
CPU time per round, medians of 6 alternating trials): this path 640 us, every reply through
``read_response()`` 852 us (x1.33), ``pipeline(transaction=False)`` 1227 us (x1.92); for a
4-command round the three are within noise. When the installed redis-py's parser is not one
:func:`fast_reader` knows, every reply goes the public way: redis-py 5.0.1 (the lowest the
pins allow) has no ``NOT_ENOUGH_DATA`` sentinel, and hiredis' default "no data" value
``False`` is also a RESP3 ``#f`` reply. ``tests/test_redis_round.py`` checks which path the
installed version takes and that both give the same replies.

Only the commands the hot loops use are here. Error replies are returned as their
:class:`~redis.exceptions.ResponseError` (``raise_on_error=False``) or raised (the default,
after every reply has been read). A connection error drops the connection and propagates.
"""

from __future__ import annotations

import contextlib
import sys
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import ResponseError

from sessiond.store.client import hiredis_pack, is_cluster, is_embedded

Shape = Callable[[Any], Any]


def _same(reply: Any) -> Any:
    return reply


def _ok(reply: Any) -> Any:
    return reply == b"OK" or reply == "OK" or (reply if reply is None else bool(reply))


def _hash(reply: Any) -> Any:
    if isinstance(reply, dict) or not reply:
        return reply or {}
    return dict(zip(reply[::2], reply[1::2], strict=True))


def _streams(reply: Any) -> Any:
    """RESP2 ``[[stream, [[id, [f, v, ...]]]]]`` or RESP3 ``{stream: ...}`` -> the shape
    redis-py's pipeline gives: ``[[stream, [(id, {f: v} or None)]]]``."""
    if not reply:
        return []
    pairs = reply.items() if isinstance(reply, dict) else reply
    return [
        [stream, [(eid, _hash(flat) if flat is not None else None) for eid, flat in items]]
        for stream, items in pairs
    ]


def direct(redis: Any) -> bool:
    """Whether rounds on ``redis`` bypass the pipeline (a plain asyncio client). Remembered
    per client: the isinstance checks go through a runtime Protocol, a microsecond each."""
    known = _DIRECT.get(redis)
    if known is None:
        known = isinstance(redis, AsyncRedis) and not (is_cluster(redis) or is_embedded(redis))
        _DIRECT[redis] = known
    return known


_DIRECT: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


class Round:
    """Commands for one round trip (the subset of the pipeline API the hot loops use)."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis
        self.direct = direct(redis)
        self._args: list[tuple[Any, ...]] = []
        self._shapes: list[Shape] = []
        self._calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __len__(self) -> int:
        return len(self._args)

    def _add(self, args: tuple[Any, ...], shape: Shape, name: str, *a: Any, **kw: Any) -> None:
        self._args.append(args)
        self._shapes.append(shape)
        self._calls.append((name, a, kw))

    def get(self, key: str) -> None:
        self._add(("GET", key), _same, "get", key)

    def set(self, key: str, value: Any, ex: int) -> None:
        self._add(("SET", key, value, "EX", ex), _ok, "set", key, value, ex=ex)

    def hset(self, key: str, mapping: Mapping[str, Any]) -> None:
        flat = (x for item in mapping.items() for x in item)
        self._add(("HSET", key, *flat), _same, "hset", key, mapping=mapping)

    def hdel(self, key: str, *fields: str) -> None:
        self._add(("HDEL", key, *fields), _same, "hdel", key, *fields)

    def hget(self, key: str, field: str) -> None:
        self._add(("HGET", key, field), _same, "hget", key, field)

    def hgetall(self, key: str) -> None:
        self._add(("HGETALL", key), _hash, "hgetall", key)

    def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> None:
        self._add(
            ("EVALSHA", sha, numkeys, *keys_and_args),
            _same,
            "evalsha",
            sha,
            numkeys,
            *keys_and_args,
        )

    def xadd(
        self, stream: str, fields: Mapping[Any, Any], maxlen: int, approximate: bool = True
    ) -> None:
        flat = (x for item in fields.items() for x in item)
        args = ("XADD", stream, "MAXLEN", "~" if approximate else "=", maxlen, "*", *flat)
        self._add(args, _same, "xadd", stream, fields, maxlen=maxlen, approximate=approximate)

    def xack(self, stream: str, group: str, *ids: Any) -> None:
        self._add(("XACK", stream, group, *ids), _same, "xack", stream, group, *ids)

    def zadd(self, key: str, mapping: Mapping[Any, float]) -> None:
        flat = (x for member, score in mapping.items() for x in (repr(float(score)), member))
        self._add(("ZADD", key, *flat), _same, "zadd", key, mapping)

    def zrem(self, key: str, *members: Any) -> None:
        self._add(("ZREM", key, *members), _same, "zrem", key, *members)

    def xreadgroup(
        self,
        group: str,
        consumer: str,
        streams: Mapping[str, str],
        count: int,
        block: int | None = None,
    ) -> None:
        args: tuple[Any, ...] = ("XREADGROUP", "GROUP", group, consumer, "COUNT", count)
        if block is not None:
            args += ("BLOCK", block)
        args += ("STREAMS", *streams.keys(), *streams.values())
        self._add(args, _streams, "xreadgroup", group, consumer, streams, count=count, block=block)

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        if not self._args:
            return []
        if not self.direct:
            pipe = self.redis.pipeline(transaction=False)
            for name, a, kw in self._calls:
                getattr(pipe, name)(*a, **kw)
            return list(await pipe.execute(raise_on_error=raise_on_error))
        pool = self.redis.connection_pool
        try:
            conn = await pool.get_connection()
        except TypeError:  # redis-py < 5.3 wants a command name
            conn = await pool.get_connection("_")
        try:
            if hiredis_pack is not None:  # a third cheaper than redis-py's chunked packing
                await conn.send_packed_command(b"".join([hiredis_pack(a) for a in self._args]))
            else:
                await conn.send_packed_command(conn.pack_commands(self._args))
            replies = await _read_replies(conn, self._shapes)
        except BaseException:
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)
            raise
        finally:
            await pool.release(conn)
        if raise_on_error:
            for reply in replies:
                if isinstance(reply, ResponseError):
                    raise reply
        return replies


FAST_READ = True  # False: every reply through read_response() (tests, benchmarks)


def fast_reader(conn: Any) -> tuple[Any, Any] | None:
    """The hiredis reader behind ``conn``'s parser and the value its ``gets()`` returns
    when no whole reply is buffered; None if this redis-py's parser is not one we know
    (or :data:`FAST_READ` is off). The only place that touches redis-py internals."""
    parser = getattr(conn, "_parser", None)
    reader = getattr(parser, "_reader", None)
    missing = getattr(sys.modules.get(type(parser).__module__), "NOT_ENOUGH_DATA", None)
    if not FAST_READ or reader is None or missing is None:
        return None
    return reader, missing


async def _read_replies(conn: Any, shapes: list[Shape]) -> list[Any]:
    """One reply per command, in order. The first waits through redis-py's full read path
    (timeouts, connection errors); the rest are taken from hiredis' buffer when they are
    there (:func:`fast_reader`), which skips four layers of coroutines per reply. Anything
    unusual goes the full way."""
    fast = fast_reader(conn)
    reader, missing = fast if fast is not None else (None, _NONE)
    replies: list[Any] = []
    for shape in shapes:
        reply = reader.gets() if replies and reader is not None else missing
        if reply is missing or type(reply).__name__ == "PushNotification":
            if reply is not missing:  # RESP3 push: not a reply to us
                raise ResponseError("unexpected RESP3 push reply in a command round")
            try:
                reply = await conn.read_response()
            except ResponseError as exc:
                reply = exc
        elif isinstance(reply, Exception) and not isinstance(reply, ResponseError):
            raise reply  # a connection-level error reply (LOADING, NOAUTH...), as redis-py
        replies.append(reply if isinstance(reply, ResponseError) else shape(reply))
    return replies


_NONE = object()  # never a reply: without a fast reader every reply is read the full way
