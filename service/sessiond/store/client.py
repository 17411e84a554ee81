"""Open the Redis the processes share: a real server by URL, or the embedded store.

The embedded store is fakeredis with Lua (lupa): the same scripts, the same commands, in
process, so ``sessiond run`` works on a machine with no Redis server.

For a real server, the connection packs commands with hiredis' C serializer: redis-py's
asyncio client packs in pure Python, which was the largest single cost of a transition
(measured with ``sessiond bench transitions``); its sync client already does this.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import Connection, SSLConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

EMBEDDED = "embedded"

# What a process waits out and retries: the server went away, is restarting, or is loading
# its data (BusyLoadingError is a ConnectionError). redis-py's ConnectionError is NOT the
# builtin one, so both are listed.
RETRYABLE: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionError,
    OSError,
)

try:
    from hiredis import pack_command as _pack_command
except ImportError:  # pragma: no cover - hiredis is a declared dependency
    _pack_command = None  # type: ignore[assignment]
# hiredis' packer (one command -> its RESP bytes), or None without hiredis
hiredis_pack = _pack_command


class _FastPack:
    def pack_command(self, *args: Any) -> list[bytes]:
        if hiredis_pack is None or isinstance(args[0], str) and " " in args[0]:
            return super().pack_command(*args)  # type: ignore[misc,no-any-return]
        return [hiredis_pack(args)]


def is_embedded(client: Any) -> bool:
    """The embedded store answers blocking reads at once (it cannot block): poll instead."""
    return type(client).__module__.startswith("fakeredis")


class FastConnection(_FastPack, Connection):
    pass


class FastSSLConnection(_FastPack, SSLConnection):
    pass


_EMBEDDED_SERVER: Any = None


def _sentinel_master(url: str, options: dict[str, Any]) -> Any:
    """``redis-sentinel://host:port[,host:port...]/service[/db]``: the current master of
    ``service`` as the Sentinels know it. After a failover the old master answers READONLY;
    redis-py then drops the connection (a ConnectionError, which every process retries) and
    asks the Sentinels again."""
    from redis.asyncio.sentinel import Sentinel

    rest = url.removeprefix("redis-sentinel://")
    hosts, _, path = rest.partition("/")
    service, _, db = path.partition("/")
    if not hosts or not service:
        raise ValueError(f"expected redis-sentinel://host:port[,host:port]/service[/db]: {url}")
    nodes = []
    for item in hosts.split(","):
        host, _, port = item.rpartition(":")
        nodes.append((host.strip("[]"), int(port)))
    options.pop("health_check_interval", None)
    timeout = options.get("socket_connect_timeout", 5)
    # Sentinel's constructor is untyped in some redis-py releases and typed in others
    make_sentinel: Any = Sentinel
    sentinel = make_sentinel(nodes, socket_timeout=timeout)
    client = sentinel.master_for(service, redis_class=_SentinelMaster, db=int(db or 0), **options)
    client.sentinel_clients = list(sentinel.sentinels)
    return client


class _SentinelMaster(aioredis.Redis):
    """The master client; closing it also closes the connections to the Sentinels."""

    sentinel_clients: list[Any] = []

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        for sentinel_client in self.sentinel_clients:
            await sentinel_client.aclose()


def embedded_server() -> Any:
    """The one in-process fakeredis server every embedded client of this process shares."""
    global _EMBEDDED_SERVER
    if _EMBEDDED_SERVER is None:
        import fakeredis

        _EMBEDDED_SERVER = fakeredis.FakeServer()
    return _EMBEDDED_SERVER


URL_SCHEMES = (
    "redis://",
    "rediss://",
    "unix://",
    "redis-sentinel://",
    "redis-cluster://",
    "rediss-cluster://",
)


def url_problem(url: str | None) -> str | None:
    """Why ``url`` cannot name a Redis (a scheme, a port, a path), or None when it can. Only
    the text is checked: nothing connects."""
    from redis.asyncio.connection import parse_url

    if url in (None, "", EMBEDDED):
        return None
    assert url is not None
    if not url.startswith(URL_SCHEMES):
        return f"{url!r} is not a Redis URL: it must start with {', '.join(URL_SCHEMES)}"
    try:
        if url.startswith("redis-sentinel://"):
            hosts, _, service = url.removeprefix("redis-sentinel://").partition("/")
            if not hosts or not service:
                raise ValueError("expected redis-sentinel://host:port[,host:port]/service[/db]")
            for host in hosts.split(","):
                parse_url(f"redis://{host}")
        else:
            parse_url(url.replace("-cluster://", "://", 1))
    except ValueError as exc:
        return f"{url!r} is not a usable Redis URL: {exc}"
    return None


def is_cluster(client: Any) -> bool:
    return isinstance(client, RedisCluster)


def connect(url: str | None, **kwargs: Any) -> Any:
    """An asyncio Redis client with ``decode_responses=False``. Every embedded client in one
    process talks to the same in-process server, so in-process components share one store.

    ``redis-cluster://host:port`` (or ``rediss-cluster://``) connects to a Redis Cluster
    through any of its nodes."""
    if url in (None, "", EMBEDDED):
        import fakeredis

        return fakeredis.FakeAsyncRedis(server=embedded_server())
    # No per-read socket timeout: reads are pipelined or blocking (XREADGROUP BLOCK), and a
    # per-reply timeout context costs more than the reply. A dead server is found by TCP
    # keepalive and the periodic health check instead.
    options: dict[str, Any] = {
        "decode_responses": False,
        "socket_timeout": None,
        "socket_connect_timeout": 5,
        "socket_keepalive": True,
        "health_check_interval": 15,
        **kwargs,
    }
    if url.startswith("redis-sentinel://"):
        return _sentinel_master(url, options)
    if url.startswith(("redis-cluster://", "rediss-cluster://")):
        plain = url.replace("-cluster://", "://", 1)
        options.pop("health_check_interval")
        return RedisCluster.from_url(plain, **options)
    if not url.startswith("unix:"):
        options["connection_class"] = (
            FastSSLConnection if url.startswith("rediss:") else FastConnection
        )
    return aioredis.from_url(url, **options)


#: ``hash-max-listpack-value`` the docs recommend (docs/deploy.md): a session hash holds a
#: few values over Redis' default of 64 bytes (its ``txn``, the SDPs), and one such value
#: makes the whole hash a hashtable, about 1.3 KB more per call than a listpack.
LISTPACK_VALUE = 1024


async def listpack_advice(redis: Any) -> str:
    """A warning when the server keeps session hashes as hashtables ("" when it does not,
    or when its configuration cannot be read: the embedded store, an ACL without CONFIG)."""
    if is_embedded(redis) or is_cluster(redis):
        return ""
    try:
        reply = await redis.config_get("hash-max-listpack-value")
        value = int(next(iter(reply.values())))
    except Exception:  # refused (ACL, a managed Redis), or an older server's reply
        return ""
    if value >= LISTPACK_VALUE // 2:
        return ""
    return (
        f"Redis hash-max-listpack-value is {value}: each session hash is a hashtable (about "
        f"1.3 KB more per call); set it to {LISTPACK_VALUE} (docs/deploy.md)"
    )
