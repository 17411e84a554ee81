"""The Redis store and its Lua scripts, on a real Redis and on the embedded store."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgpack
import pytest

from sessiond.core.types import Event
from sessiond.store import Keys, Store, new_sid
from sessiond.store.applied import APPLIED_KEEP
from sessiond.store.applied import digest as applied_digest
from sessiond.store.store import decode_event, delete_namespace
from sessiond.store.tableset import TableSet
from sessiond.table import Table, load_table_text
from sessiond.table.engine import decide
from sessiond.worker.applier import Applier, Work

pytestmark = pytest.mark.redis


def uas_fields(keys: Keys, call_id: str) -> dict[str, str]:
    sid = new_sid(call_id)
    return {
        "sid": sid,
        "role": "UAS",
        "call_id": call_id,
        "local_tag": "ours",
        "remote_tag": "theirs",
        "local_uri": "sip:bob@127.0.0.1",
        "remote_uri": "sip:alice@127.0.0.1",
        "media_id": f"{sid}.m",
        "edge": "e1",
    }


def applier_for(store: Store, *tables: Table) -> Applier:
    return Applier(store, TableSet(tables, store.redis, store.keys))


async def create_uas(applier: Applier, call_id: str = "call-1@h") -> str:
    fields = uas_fields(applier.store.keys, call_id)
    invite = Event(f"{call_id}:invite", "Invite", {"sdp": "v=0\r\n", "txn": "z9hG4bK.1"})
    handled = await applier.create(fields, applier.store.keys.registry_keys(fields), invite)
    assert handled.status == "created", handled
    return handled.sid


async def stream(redis: Any, key: str) -> list[dict[str, Any]]:
    out = []
    for _, fields in await redis.xrange(key):
        entry = {k.decode(): v for k, v in fields.items()}
        entry["data"] = msgpack.unpackb(entry["data"]) if "data" in entry else {}
        out.append({k: (v.decode() if isinstance(v, bytes) else v) for k, v in entry.items()})
    return out


async def test_transitions_refresh_ttls_once_they_have_run_down(
    store: Store, default_table: Table
) -> None:
    """Every key of a session keeps a TTL; a transition renews them all once the session's
    has run down by more than a minute (not on every transition)."""
    applier = applier_for(store, default_table)
    sid = await create_uas(applier)
    session = await store.get(sid)
    assert session is not None
    assert not await store.redis.exists(store.keys.outboxes(sid))  # emitted, forgotten
    keys = [*store.keys.session_keys(sid)[:2], *store.keys.registry_keys(session)]
    assert not await store.redis.exists(store.keys.applied(sid))  # markers in the session
    for key in keys:
        assert 0 < await store.redis.ttl(key) <= store.ttl
    for key in keys:  # an hour on: every TTL has run down
        await store.redis.expire(key, store.ttl - 100)
    ready = Event("e-ready", "MediaReady", {"sdp": "v=0 ours", "media_node": "m1"})
    assert (await applier.handle(sid, ready)).status == "applied"
    for key in keys:
        assert await store.redis.ttl(key) > store.ttl - 100, key
    for key in keys:  # run down by less than a minute: left alone
        await store.redis.expire(key, store.ttl - 30)
    assert (await applier.handle(sid, Event("e-accept", "AcceptCall", {}))).status == "applied"
    for key in keys:
        assert store.ttl - 40 < await store.redis.ttl(key) <= store.ttl - 30, key


async def test_call_lifecycle_is_readable_with_plain_commands(
    store: Store, default_table: Table
) -> None:
    applier = applier_for(store, default_table)
    sid = await create_uas(applier)
    steps = [
        ("MediaReady", {"sdp": "v=0 ours", "media_node": "m1"}),
        ("AcceptCall", {}),
        ("Ack", {}),
        ("Bye", {"txn": "z9hG4bK.2"}),
    ]
    for n, (name, data) in enumerate(steps):
        handled = await applier.handle(sid, Event(f"e{n}", name, data))
        assert handled.status == "applied", handled
    raw = await store.redis.hgetall(store.keys.session(sid))
    session = {k.decode(): v.decode() for k, v in raw.items()}  # plain text, no decoder
    assert session["state"] == "Terminated"
    assert session["version"] == "5"
    assert session["end_reason"] == "remote hangup"
    assert session["remote_sdp"] == "v=0\r\n"
    history = await store.history(sid)
    assert [(h["from"], h["event"], h["to"]) for h in history] == [
        ("Idle", "Invite", "Ringing"),
        ("Ringing", "MediaReady", "Ringing"),
        ("Ringing", "AcceptCall", "Ringing"),
        ("Ringing", "ReadyToAnswer", "Answering"),
        ("Answering", "Ack", "Established"),
        ("Established", "Bye", "Terminated"),
    ]
    # the session ended: registry entries removed, keys expire soon
    for key in store.keys.registry_keys(session):
        assert await store.redis.exists(key) == 0
    assert 0 < await store.redis.ttl(store.keys.session(sid)) <= store.ended_ttl
    edge = await stream(store.redis, store.keys.edge_commands("e1"))
    assert [(c["type"], c["data"]["code"]) for c in edge] == [
        ("respond", 180),
        ("respond", 200),
        ("respond", 200),
    ]
    app = await stream(store.redis, store.keys.app_events())
    assert [c["type"] for c in app] == ["IncomingCall", "Answered", "Established", "Ended"]


async def test_create_if_absent_lets_one_of_two_racing_creators_win(
    store: Store, default_table: Table
) -> None:
    keys = store.keys
    a, b = uas_fields(keys, "race@h"), uas_fields(keys, "race@h")
    assert a["sid"] != b["sid"]
    invite = Event("race:invite", "Invite", {"sdp": "v=0", "txn": "t"})
    appliers = [applier_for(store, default_table) for _ in range(2)]
    results = await asyncio.gather(
        appliers[0].create(a, keys.registry_keys(a), invite),
        appliers[1].create(b, keys.registry_keys(b), invite),
    )
    statuses = sorted(r.status for r in results)
    assert statuses == ["created", "duplicate"], results
    assert results[0].sid == results[1].sid
    loser = b["sid"] if results[0].sid == a["sid"] else a["sid"]
    assert await store.get(loser) is None
    assert await store.lookup(keys.initial("race@h", "theirs")) == results[0].sid


async def test_cas_conflict_duplicate_and_missing(store: Store, default_table: Table) -> None:
    applier = applier_for(store, default_table)
    sid = await create_uas(applier)
    session = await store.get(sid)
    assert session is not None
    d1 = decide(default_table, session, Event("m", "MediaReady", {"sdp": "x"}), 1.0)
    d2 = decide(default_table, session, Event("a", "AcceptCall", {}), 1.0)
    assert (await store.apply(session, "m", d1)).status == "OK"
    conflict = await store.apply(session, "a", d2)  # decided on version 1, now at 2
    assert (conflict.status, conflict.version) == ("CONFLICT", 2)
    duplicate = await store.apply(session, "m", d1)
    assert duplicate.status == "DUPLICATE"
    assert duplicate.outbox == (await store.apply(session, "m", d1)).outbox
    missing = await store.apply({**session, "sid": new_sid("nope")}, "z", d1)
    assert missing.status == "MISSING"
    after = await store.get(sid)
    assert after is not None
    assert after["version"] == "2"


async def test_a_transitions_commands_go_out_with_it_and_a_redelivery_sends_none_twice(
    store: Store, default_table: Table
) -> None:
    """Not a Redis Cluster: the script that stores a transition sends its commands (direct
    emission), so nothing is kept, no crash window lies between storing and sending, and a
    redelivered event (DUPLICATE) sends nothing again."""
    assert store.direct
    applier = applier_for(store, default_table)
    sid = await create_uas(applier)
    session = await store.get(sid)
    assert session is not None
    edge_key, app_key = store.keys.edge_commands("e1"), store.keys.app_events()
    timers = store.keys.timers(store.keys.partition_of(sid))
    assert [c["data"]["code"] for c in await stream(store.redis, edge_key)] == [180]
    assert await store.redis.zcard(timers) == 1  # RingTimeout
    edge_before = await stream(store.redis, edge_key)
    app_before = await stream(store.redis, app_key)
    cancel = Event("cancel-1", "Cancel", {})
    decision = decide(default_table, session, cancel, 1.0)
    # the worker stores the transition (and dies before its last round): the commands are out
    result = await store.apply(session, cancel.id, decision)
    assert (result.status, result.outbox) == ("OK", b"")
    assert not await store.redis.exists(store.keys.outboxes(sid))
    edge = await stream(store.redis, edge_key)
    assert [c["data"]["code"] for c in edge[len(edge_before) :]] == [487]
    assert edge[-1]["id"] == "cancel-1/0"
    assert edge[-1]["sid"] == sid
    app = await stream(store.redis, app_key)
    assert [c["type"] for c in app if c["id"].startswith("cancel-1/")] == ["Ended"]
    assert await store.redis.zcard(timers) == 0  # RingTimeout cancelled (ZREM)
    # another worker gets the redelivered event: applied already, nothing is sent again
    for _ in range(2):
        handled = await applier_for(store, default_table).handle(sid, cancel)
        assert (handled.status, handled.state) == ("duplicate", "Terminated")
        assert await stream(store.redis, edge_key) == edge
        assert await stream(store.redis, app_key) == app
    assert len(app) > len(app_before)


async def test_concurrent_tasks_apply_every_event_exactly_once(
    store: Store, counter_table: Table
) -> None:
    sessions = []
    creator = applier_for(store, counter_table)
    for n in range(6):
        fields = uas_fields(store.keys, f"count-{n}@h")
        create = Event(f"create-{n}", "Hangup")
        handled = await creator.create(fields, store.keys.registry_keys(fields), create, "counter")
        assert handled.status == "created"
        sessions.append(handled.sid)
    per_task = 15

    async def task(t: int) -> int:
        applier = applier_for(store, counter_table)  # its own cache, like another worker
        conflicts = 0
        for n in range(per_task):
            # interleaved: every task hits every session in every round
            batch = [Work(sid, Event(f"t{t}:{sid}:{n}", "Hangup"), None, False) for sid in sessions]
            for handled in await applier.run(batch):
                assert handled.status == "applied", handled
                conflicts += handled.conflicts
        return conflicts

    conflicts = await asyncio.gather(*(task(t) for t in range(8)))
    for sid in sessions:
        session = await store.get(sid)
        assert session is not None
        assert session["version"] == str(1 + 8 * per_task)
        history = await store.history(sid, count=1000)
        ids = [h["event_id"] for h in history]
        assert len(ids) == len(set(ids)) == 1 + 8 * per_task
        versions = [int(h["version"]) for h in history]
        assert versions == list(range(1, 2 + 8 * per_task))  # +1 per applied event, no gaps
    if store.keys.ns and "embedded" not in repr(store.redis):
        assert sum(conflicts) > 0  # the test did exercise the compare-and-set
    # every event redelivered: all refused as duplicates, nothing changes
    again = applier_for(store, counter_table)
    batch = [Work(sid, Event(f"t3:{sid}:{n}", "Hangup")) for sid in sessions for n in range(3)]
    assert {h.status for h in await again.run(batch)} == {"duplicate"}


def test_two_os_processes_apply_every_event_exactly_once(
    counter_table: Table, redis_url: str
) -> None:
    async def setup() -> tuple[Keys, list[str]]:
        from sessiond.store.client import connect

        keys = Keys(f"tp{new_sid('x')[:8]}")
        redis = connect(redis_url)
        applier = Applier(Store(redis, keys), TableSet([counter_table], redis, keys))
        sids = []
        for n in range(4):
            fields = uas_fields(keys, f"proc-{n}@h")
            await applier.create(
                fields, keys.registry_keys(fields), Event(f"c{n}", "Hangup"), "counter"
            )
            sids.append(fields["sid"])
        await redis.aclose()
        return keys, sids

    async def check(keys: Keys, sids: list[str]) -> None:
        from sessiond.store.client import connect

        redis = connect(redis_url)
        store = Store(redis, keys)
        try:
            for sid in sids:
                session = await store.get(sid)
                assert session is not None
                assert session["version"] == str(1 + 2 * 40)
                ids = [h["event_id"] for h in await store.history(sid, count=500)]
                assert len(ids) == len(set(ids)) == 81
        finally:
            await delete_namespace(redis, keys.ns)
            await redis.aclose()

    keys, sids = asyncio.run(setup())
    script = Path(__file__).parent / "store_worker.py"
    procs = [
        subprocess.Popen([sys.executable, str(script), redis_url, keys.ns, f"p{i}", *sids])
        for i in range(2)
    ]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    asyncio.run(check(keys, sids))


async def test_timers_fire_exactly_once_with_many_pollers(
    store: Store, counter_table: Table
) -> None:
    applier = applier_for(store, counter_table)
    fields = uas_fields(store.keys, "timer@h")
    handled = await applier.create(
        fields, store.keys.registry_keys(fields), Event("c", "Hangup"), "counter"
    )
    sid = handled.sid
    partition = store.keys.partition_of(sid)
    timers = store.keys.timers(partition)
    assert await store.redis.zcard(timers) == 1  # Open armed its timeout
    due = (await store.redis.zrange(timers, 0, -1, withscores=True))[0][1]
    counts = await asyncio.gather(*(store.pop_timers(partition, due + 1) for _ in range(10)))
    assert sum(counts) == 1
    events = await store.redis.xrange(store.keys.events(partition))
    assert len(events) == 1
    event = decode_event(events[0][1])
    assert (event.type, event.sid, event.data["epoch"]) == ("Expired", sid, "1")
    result = await applier.handle(event.sid, event)
    assert result.state == "Closed"
    assert await store.redis.zcard(timers) == 0


async def test_noscript_after_script_flush_reloads(store: Store, counter_table: Table) -> None:
    applier = applier_for(store, counter_table)
    fields = uas_fields(store.keys, "flush@h")
    await applier.create(fields, store.keys.registry_keys(fields), Event("c", "Hangup"), "counter")
    await store.redis.script_flush()
    handled = await applier.handle(fields["sid"], Event("after-flush", "Hangup"))
    assert handled.status == "applied"


async def test_unmap_only_removes_entries_that_point_to_the_session(store: Store) -> None:
    keys = store.keys
    mine, theirs = keys.dialog("u@h", "a"), keys.dialog("u@h", "b")
    await store.redis.set(mine, "s1")
    await store.redis.set(theirs, "s2")
    assert await store.unmap("s1", [mine, theirs]) == 1
    assert await store.lookup(mine) is None
    assert await store.lookup(theirs) == "s2"


async def test_session_keys_share_one_hash_tag(store: Store) -> None:
    fields = uas_fields(store.keys, "slot@h")
    keys = [*store.keys.session_keys(fields["sid"]), *store.keys.registry_keys(fields)]
    tags = {k[k.index("{") + 1 : k.index("}")] for k in keys}
    assert len(tags) == 1


async def test_call_in_progress_keeps_its_table_revision(
    store: Store, counter_table: Table
) -> None:
    old = TableSet([counter_table], store.redis, store.keys)
    await old.publish()
    fields = uas_fields(store.keys, "rev@h")
    created = await Applier(store, old).create(
        fields, store.keys.registry_keys(fields), Event("c", "Hangup"), "counter"
    )
    # the file changes (a different end reason), so its revision differs
    changed = load_table_text(
        counter_table.source.replace("reason: tick", "reason: tock"), "counter.yaml"
    )
    assert changed.rev != counter_table.rev
    worker = Applier(store, TableSet([changed], store.redis, store.keys))  # a restarted worker
    await worker.handle(created.sid, Event("h", "Hangup"))
    session = await store.get(created.sid)
    assert session is not None
    assert session["table_rev"] == counter_table.rev
    assert session["end_reason"] == "tick"  # decided by the revision the call started on


async def test_outboxes_are_kept_until_emitted_and_an_older_marker_still_re_emits(
    store: Store, default_table: Table
) -> None:
    """An applied event's outbox (one an older sessiond stored, or in a Redis Cluster) is
    kept apart from its marker (a digest in the session's field ``applied``) until the
    worker's last round sent it; a marker written by an older sessiond in its own hash
    (``""``, or older still the outbox itself) re-emits too."""
    applier = applier_for(store, default_table)
    sid = await create_uas(applier)
    applied, outboxes = store.keys.applied(sid), store.keys.outboxes(sid)
    assert not await store.redis.exists(applied)
    session = await store.get(sid)
    assert session is not None
    markers = session["applied"].split(" ")
    assert len(markers) == int(session["version"])
    assert all(len(m) == 8 for m in markers)
    assert not await store.redis.exists(outboxes)  # run() emitted them: forgotten

    session = await store.get(sid)
    assert session is not None
    cancel = Event("e-cancel", "Cancel", {"txn": "z9hG4bK.2"})
    decision = decide(default_table, session, cancel, 0.0)  # 487, media.destroy, Ended
    result = await store.apply(session, "e-cancel", decision)  # stored and sent
    assert (result.status, result.outbox) == ("OK", b"")
    assert not await store.redis.exists(outboxes)
    assert await store.read(sid, "e-cancel") == (await store.get(sid), b"")
    # as an older sessiond (or a cluster) stores it, not emitted yet: a redelivery gets it
    stored = store.build_outbox({**session, **decision.fields}, decision.commands)
    assert stored
    await store.redis.hset(outboxes, "e-cancel", stored)
    assert await store.read(sid, "e-cancel") == (await store.get(sid), stored)
    again = await store.apply(session, "e-cancel", decision)
    assert (again.status, again.outbox) == ("DUPLICATE", stored)

    await store.redis.hdel(outboxes, "e-cancel")  # emitted
    assert (await store.apply(session, "e-cancel", decision)).outbox == b""
    assert (await store.read(sid, "e-cancel"))[1] == b""

    old = msgpack.packb([["xadd", "s", "old/0", "respond", sid, b""]])
    await store.redis.hset(applied, "e-old", old)
    assert (await store.read(sid, "e-old"))[1] == old
    assert (await store.apply(session, "e-old", decision)).outbox == old
    await store.redis.hset(applied, "e-older", "")
    await store.redis.hset(outboxes, "e-older", old)
    assert (await store.apply(session, "e-older", decision)).outbox == old


async def test_applied_markers_past_the_cap_move_to_their_own_hash_and_stay_refused(
    store: Store, counter_table: Table
) -> None:
    """The session hash keeps the newest APPLIED_KEEP markers; older ones move to the
    applied hash one per transition, and a redelivery of any event is still refused."""
    applier = applier_for(store, counter_table)
    fields = uas_fields(store.keys, "cap@h")
    create = Event("cap-0", "Hangup")
    handled = await applier.create(fields, store.keys.registry_keys(fields), create, "counter")
    sid = handled.sid
    total = APPLIED_KEEP + 5
    for n in range(1, total):
        assert (await applier.handle(sid, Event(f"cap-{n}", "Hangup"))).status == "applied"
    session = await store.get(sid)
    assert session is not None
    kept = session["applied"].split(" ")
    assert kept == [applied_digest(f"cap-{n}") for n in range(total - APPLIED_KEEP, total)]
    moved = await store.redis.hkeys(store.keys.applied(sid))
    assert sorted(m.decode() for m in moved) == sorted(
        applied_digest(f"cap-{n}") for n in range(total - APPLIED_KEEP)
    )
    assert 0 < await store.redis.ttl(store.keys.applied(sid)) <= store.ttl
    for n in (0, total - APPLIED_KEEP - 1, total - APPLIED_KEEP, total - 1):
        assert (await applier.handle(sid, Event(f"cap-{n}", "Hangup"))).status == "duplicate"
    assert (await store.get(sid) or {})["version"] == str(total)
