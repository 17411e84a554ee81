"""Telling "that process went silent" from "the store was away", before judging heartbeats.

A heartbeat key (``process:<kind>:<name>``, a few seconds of TTL) that expired says its
owner did not write it in time: the owner died, stalled or lost its network, OR the store
itself was unreachable for everyone (restarted, failed over, stopped, cut off from us). After
a Redis outage longer than the TTL every heartbeat has lapsed at once (with AOF the keys come
back with their old expiry times, without it they are gone), and the first process back
would declare every other one lost.

So a process judges other processes' heartbeats only after ``grace`` seconds of steady
contact with the store: no failed call, no round trip and no gap between successful
heartbeat rounds longer than ``max_gap`` (a stalled store), and the same Redis run
(``run_id`` of ``INFO server``: a restart makes every heartbeat suspect) throughout. A
process that just started has no such history yet and waits too. ``grace`` is the
heartbeat TTL plus the longest retry backoff of the processes (they reconnect at their next
retry) plus one heartbeat interval: by then every live process has written its heartbeat
again, and one still missing is silent.

Sans-I/O: the caller reports its round trips and failures; the clock is injectable.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sessiond.store.keys import HEARTBEAT_TTL, WORKERS_GROUP, Keys
from sessiond.store.streams import MAX_BACKOFF

HEARTBEAT_INTERVAL = 1.0


class StoreContact:
    """One process's recent contact with the store."""

    def __init__(
        self, *, grace: float, max_gap: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.grace = grace
        self.max_gap = max_gap
        self.now = clock
        start = clock()
        self._since = start  # steady contact since then (a start is contact just regained)
        self._last = start  # the last successful round trip ended then
        self._run_id = ""

    @classmethod
    def for_heartbeats(cls, ttl: float) -> StoreContact:
        """For judging heartbeats of ``ttl`` seconds written every second."""
        return cls(grace=ttl + MAX_BACKOFF + HEARTBEAT_INTERVAL, max_gap=ttl / 2)

    def failed(self) -> None:
        """A call to the store failed (connection refused or lost, timeout, loading)."""
        self._since = self._last = self.now()

    def reached(self, started: float, run_id: str = "") -> bool:
        """A round trip that began at ``started`` (this object's clock) succeeded, on the
        Redis run ``run_id`` if known. Returns :meth:`steady`."""
        now = self.now()
        restarted = bool(run_id and self._run_id and run_id != self._run_id)
        if restarted or now - started > self.max_gap or now - self._last > self.max_gap:
            self._since = now
        self._run_id = run_id or self._run_id
        self._last = now
        return self.steady()

    def steady(self) -> bool:
        """Long enough in steady contact to take a missing heartbeat for a silent process."""
        return self.now() - self._since >= self.grace


def run_id(info: Mapping[Any, Any] | None) -> str:
    """The ``run_id`` of a parsed ``INFO server`` reply (empty if absent)."""
    if not info:
        return ""
    value = info.get("run_id", info.get(b"run_id", ""))
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True, slots=True)
class Beat:
    drain: bool  # a drain was requested (and its key deleted)
    extra: list[Any]  # the replies to the caller's own commands (errors as exceptions)


class Liveness:
    """A process's presence in the store, for the worker, the edge and the media node: its
    heartbeat key (``process:<kind>:<name>``, pid, ``ttl`` seconds), its entry in
    ``processes:<kind>`` (``listed``; a worker's is written by its lease loop) and the drain
    request ``drain:<name>`` that ``sessiond ctl drain`` sets."""

    def __init__(
        self,
        redis: Any,
        keys: Keys,
        kind: str,
        name: str,
        *,
        ttl: int = HEARTBEAT_TTL,
        listed: bool = True,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.kind = kind
        self.name = name
        self.ttl = ttl
        self.listed = listed

    async def beat(
        self,
        extra: Callable[[Any], None] | None = None,
        *,
        accept_drain: bool = True,
        errors: Literal["raise", "own", "return"] = "raise",
        info: bool = False,
    ) -> Beat:
        """Write the heartbeat and look for a drain request, with the commands ``extra``
        queues on the same pipeline. A drain request found is consumed (its key deleted)
        when ``accept_drain``. An error reply (the whole round is read first) raises
        (``errors="raise"``), raises only for the heartbeat's own commands (``"own"``: the
        caller looks at its replies), or is left in :attr:`Beat.extra` (``"return"``). With
        ``info``, the first extra reply is ``INFO server`` (see :func:`run_id`)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(self.keys.heartbeat(self.kind, self.name), str(os.getpid()), ex=self.ttl)
        if self.listed:
            pipe.zadd(self.keys.processes(self.kind), {self.name: time.time()})
        pipe.exists(self.keys.drain(self.name))
        if info:
            pipe.info("server")
        if extra is not None:
            extra(pipe)
        replies = await pipe.execute(raise_on_error=False)
        own = 3 if self.listed else 2
        if errors != "return":
            for reply in replies if errors == "raise" else replies[:own]:
                if isinstance(reply, Exception):
                    raise reply
        drain = replies[own - 1]
        requested = bool(drain) and not isinstance(drain, Exception) and accept_drain
        if requested:
            await self.redis.delete(self.keys.drain(self.name))
        return Beat(requested, replies[own:])

    def queue_leave(self, pipe: Any) -> None:
        """Queue the removal of the heartbeat and of the ``processes`` entry."""
        pipe.delete(self.keys.heartbeat(self.kind, self.name))
        pipe.zrem(self.keys.processes(self.kind), self.name)

    async def leave(self, extra: Callable[[Any], None] | None = None) -> None:
        """Remove the heartbeat and the ``processes`` entry, after the commands ``extra``
        queues (in one round trip)."""
        pipe = self.redis.pipeline(transaction=False)
        if extra is not None:
            extra(pipe)
        self.queue_leave(pipe)
        await pipe.execute()


async def list_and_count(redis: Any, keys: Keys, kind: str, name: str, since: float) -> int:
    """Score ``name`` now in ``processes:<kind>``; how many there were scored since
    ``since`` (one round trip: the workers' live count for their leases)."""
    listed = keys.processes(kind)
    pipe = redis.pipeline(transaction=False)
    pipe.zadd(listed, {name: time.time()})
    pipe.zcount(listed, since, "+inf")
    _, count = await pipe.execute()
    return int(count)


async def unlist(redis: Any, keys: Keys, kind: str, name: str) -> None:
    """Remove ``name`` from ``processes:<kind>``."""
    await redis.zrem(keys.processes(kind), name)


async def live_processes(redis: Any, keys: Keys, kind: str) -> list[str]:
    """Names of the processes of ``kind`` whose heartbeat is alive."""
    names = [n.decode() for n in await redis.zrange(keys.processes(kind), 0, -1)]
    return [n for n in names if await redis.exists(keys.heartbeat(kind, n))]


async def request_drain(redis: Any, keys: Keys, name: str, ttl: int = 60) -> None:
    """Ask the process ``name`` to drain (it consumes the request at its next heartbeat)."""
    await redis.set(keys.drain(name), "1", ex=ttl)


async def edge_beat(presence: Liveness, keys: Keys) -> tuple[bool, dict[str, str], int]:
    """The edge's heartbeat round: whether a drain was asked (its key is then deleted), the
    media nodes' capacity reports and the workers' lag (entries not yet delivered to them),
    in one round trip."""

    def extra(pipe: Any) -> None:
        pipe.hgetall(keys.media_capacity())
        for partition in range(keys.partitions):
            pipe.xinfo_groups(keys.events(partition))

    done = await presence.beat(extra, errors="return")
    media, *groups = done.extra
    reports = media if isinstance(media, dict) else {}
    return done.drain, {_text(k): _text(v) for k, v in reports.items()}, worker_lag(groups)


def worker_lag(replies: list[Any]) -> int:
    """Entries not yet delivered to the workers, summed over the partition streams (XINFO
    GROUPS; a stream that does not exist yet answers an error and counts 0)."""
    lag = 0
    names = (WORKERS_GROUP, WORKERS_GROUP.encode())
    for reply in replies:
        if isinstance(reply, list):
            for group in reply:
                if group.get("name") in names:
                    lag += int(group.get("lag") or 0)
    return lag


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
