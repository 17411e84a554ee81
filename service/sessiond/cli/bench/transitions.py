"""Benchmarks printed by ``sessiond bench``. Speed targets are checked here, never in tests.

``transitions``: the events/s one process applies through the full path (read the session and
its applied-event marker, decide, compare-and-set with transition.lua, which sends the
commands; in a Redis Cluster the worker emits the outbox), next to the raw rate of
transition.lua alone called the same way (one command of typical size), measured in the same
run. The ratio is the cost of the Python side.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from sessiond.core.resources import default_table_path
from sessiond.core.types import Event
from sessiond.store import Keys, Store, new_sid
from sessiond.store.applied import APPLIED_KEEP
from sessiond.store.applied import digest as applied_digest
from sessiond.store.client import connect
from sessiond.store.store import delete_namespace
from sessiond.store.tableset import TableSet
from sessiond.table import load_table
from sessiond.worker.applier import Applier, NewSession, Work

NAMESPACE = "sessiond-bench"


def _call_events(slot: int, n: int, keys: Keys) -> list[Work]:
    """One UAS call, start to end: 5 events, the first creates the session."""
    call_id = f"bench-{slot}-{n}@127.0.0.1"
    sid = new_sid(call_id)
    fields = {
        "sid": sid,
        "role": "UAS",
        "call_id": call_id,
        "local_tag": f"l{n}",
        "remote_tag": f"r{n}",
        "media_id": f"{sid}.m",
        "edge": "bench",
    }
    invite = Event(f"{sid}:1", "Invite", {"sdp": "v=0", "txn": "z9hG4bK1"})
    return [
        Work(sid, invite, NewSession(fields, keys.registry_keys(fields)), False),
        Work(sid, Event(f"{sid}:2", "MediaReady", {"sdp": "v=0", "media_node": "b"}), None, False),
        Work(sid, Event(f"{sid}:3", "AcceptCall"), None, False),
        Work(sid, Event(f"{sid}:4", "Ack"), None, False),
        Work(sid, Event(f"{sid}:5", "Bye", {"txn": "z9hG4bK2"}), None, False),
    ]


async def _full(applier: Applier, seconds: float, batch: int) -> float:
    """``batch`` calls in flight; each round applies the next event of every call."""
    keys = applier.store.keys
    calls = [_call_events(slot, 0, keys) for slot in range(batch)]
    made = [1] * batch
    events = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        work = [c.pop(0) for c in calls]
        for handled in await applier.run(work):
            assert handled.status in ("created", "applied"), handled
        events += len(work)
        for slot, c in enumerate(calls):
            if not c:
                calls[slot] = _call_events(slot, made[slot], keys)
                made[slot] += 1
    return events / (time.perf_counter() - start)


async def _raw(store: Store, seconds: float, batch: int) -> float:
    """transition.lua alone, pipelined the same way: typical arguments and one command (an
    XADD the script sends, or in a cluster an outbox it keeps), no decide."""
    data = b"x" * 120  # a command's data, of typical size
    outbox = b"" if store.direct else b"\x91\x96\xa4xadd" + data
    stream = store.keys.edge_commands("bench")
    sids = [new_sid(f"raw-{slot}@127.0.0.1") for slot in range(batch)]
    for sid in sids:
        await store.redis.hset(store.keys.session(sid), mapping={"sid": sid, "version": "0"})
    version = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        calls = []
        for sid in sids:
            args = [
                version,
                f"{sid}:{version}",
                600,
                200,
                outbox,
                "0",
                sid,
                applied_digest(f"{sid}:{version}"),
                APPLIED_KEEP,
                3,
                "state",
                "B" if version % 2 else "A",
                "updated_at",
                "1.0",
                "version",
                version + 1,
                1,
                f"2026-12-05T09:15:37.123Z v{version + 1} A --Ev--> B"
                f" [sip.respond(code=180)] {sid}:{version} (bench)",
                store.stream_maxlen,
            ]
            keys = store.keys.session_keys(sid)
            if store.direct:
                keys.append(stream)
                args += (1, "x", f"{sid}:{version}/0", "respond", sid, data)
            else:
                args.append(0)
            calls.append((store.scripts.transition, keys, args))
        for status, _ in await store._eval_many(calls):
            assert status == b"OK", status
        version += 1
    return version * batch / (time.perf_counter() - start)


async def transitions(url: str, seconds: float, batch: int) -> int:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    redis = connect(url)
    keys = Keys(NAMESPACE)
    store = Store(redis, keys, worker="bench", ttl=600, ended_ttl=60, stream_maxlen=10_000)
    applier = Applier(store, TableSet([load_table(default_table_path())], redis, keys))
    try:
        await delete_namespace(redis, NAMESPACE)
        raw = await _raw(store, seconds, batch)
        full = await _full(applier, seconds, batch)
    finally:
        await delete_namespace(redis, NAMESPACE)
        await redis.aclose()
    print(f"store: {url}  batch: {batch} sessions per pipeline  seconds each: {seconds:g}")
    print(f"transition.lua alone : {raw:10.0f} calls/s")
    print(f"full path (per event): {full:10.0f} events/s   (read + decide + CAS + commands)")
    print(f"ratio raw/full       : {raw / full:10.2f}x   (goal <= 3x)")
    return 0
