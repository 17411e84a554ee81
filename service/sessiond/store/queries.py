"""Reads for operators and applications (``sessiond ctl``, the Client API): sessions by
scanning, the edges' registrations, the workers' view of the event partitions; and the
processes' batched key reads and status writes (GET or EXISTS of many keys, HSET with
EXPIRE of many hashes: one round trip each).

The operators' reads scan or walk many keys and are not for the processes' hot loops.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sessiond.store.keys import WORKERS_GROUP, Keys
from sessiond.store.round import Round


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def ping(redis: Any) -> None:
    """A round trip that fails when the server is unreachable or silent."""
    await redis.ping()


async def get_many(
    redis: Any, names: Sequence[str], errors: Literal["raise", "return"] = "raise"
) -> list[Any]:
    """GET of every key, in one round trip (none for no keys); ``errors="return"`` puts a
    failed answer's error in its place."""
    if not names:
        return []
    pipe = Round(redis)
    for key in names:
        pipe.get(key)
    return list(await pipe.execute(raise_on_error=errors == "raise"))


async def write_hashes(redis: Any, writes: Sequence[tuple[str, Mapping[str, Any], int]]) -> None:
    """HSET then EXPIRE (seconds) of each (key, fields, ttl), in one round trip."""
    pipe = redis.pipeline(transaction=False)
    for key, fields, ttl in writes:
        pipe.hset(key, mapping=fields)
        pipe.expire(key, ttl)
    await pipe.execute()


async def exist(redis: Any, names: Sequence[str]) -> list[Any]:
    """EXISTS for each key, in one round trip (an error in place of a failed answer)."""
    pipe = redis.pipeline(transaction=False)
    for key in names:
        pipe.exists(key)
    return list(await pipe.execute(raise_on_error=False))


async def session_rows(redis: Any, keys: Keys, fields: Sequence[str]) -> list[dict[str, str]]:
    """``fields`` of every session hash in the namespace ("" where a field is missing)."""
    rows = []
    async for key in redis.scan_iter(match=f"{keys.ns}:*:session:*", count=1000):
        values = await redis.hmget(key, *fields)
        rows.append(dict(zip(fields, (v.decode() if v else "" for v in values), strict=True)))
    return rows


async def session_fields(redis: Any, keys: Keys, sid: str) -> dict[str, str]:
    """Session ``sid``'s hash, values decoded with replacement characters (empty: none)."""
    raw = await redis.hgetall(keys.session(sid))
    return {k.decode(): v.decode("utf-8", "replace") for k, v in raw.items()}


async def session_exists(redis: Any, keys: Keys, sid: str) -> bool:
    return bool(await redis.exists(keys.session(sid)))


async def registrations(redis: Any, keys: Keys) -> list[dict[str, str]]:
    """The edges' registration hashes, then their ``--ping`` keepalive hashes."""
    rows = []
    for kind in ("registration", "keepalive"):
        async for key in redis.scan_iter(match=f"{keys.ns}:{kind}:*", count=1000):
            raw = await redis.hgetall(key)
            rows.append({k.decode(): v.decode() for k, v in raw.items()})
    return rows


@dataclass(frozen=True, slots=True)
class WorkerRow:
    name: str
    alive: bool
    last_seen: float  # time.time() of its last lease round
    pending: int  # entries delivered to it and not acknowledged, over every partition
    partitions: list[int]  # whose lease it holds


async def workers(redis: Any, keys: Keys) -> list[WorkerRow]:
    """Every worker in ``processes:worker``, alive or not."""
    pending: dict[str, int] = {}
    for p in range(keys.partitions):
        try:
            consumers = await redis.xinfo_consumers(keys.events(p), WORKERS_GROUP)
        except Exception:  # no stream or group yet
            continue
        for c in consumers:
            name = _text(c["name"])
            pending[name] = pending.get(name, 0) + int(c["pending"])
    held: dict[str, list[int]] = {}
    pipe = redis.pipeline(transaction=False)
    for lease in keys.leases():
        pipe.get(lease)
    for p, owner in enumerate(await pipe.execute()):
        if owner is not None:
            held.setdefault(owner.decode(), []).append(p)
    rows = []
    for raw, score in await redis.zrange(keys.processes("worker"), 0, -1, withscores=True):
        name = raw.decode()
        alive = bool(await redis.exists(keys.heartbeat("worker", name)))
        rows.append(WorkerRow(name, alive, score, pending.get(name, 0), held.get(name, [])))
    return rows
