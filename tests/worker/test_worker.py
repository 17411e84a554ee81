"""The worker loop against a real Redis and the embedded store: streams in, commands out."""

from __future__ import annotations

import asyncio
from typing import Any

import msgpack
import pytest

from sessiond.core.types import Event
from sessiond.store import Keys, Store
from sessiond.store.tableset import TableSet
from sessiond.table import Table
from sessiond.worker.applier import Applier
from sessiond.worker.process import GROUP, Worker

pytestmark = pytest.mark.redis


def make_worker(store: Store, table: Table, name: str, **kw: Any) -> Worker:
    applier = Applier(store, TableSet([table], store.redis, store.keys))
    return Worker(applier, name=name, block_ms=10, **kw)


def invite(call_id: str = "w1@h", **extra: Any) -> Event:
    data = {
        "kind": "request",
        "call_id": call_id,
        "from_tag": "ft",
        "to_tag": "",
        "from": "sip:alice@127.0.0.1",
        "to": "sip:bob@127.0.0.1",
        "cseq": 1,
        "contact": "sip:alice@127.0.0.1:5070",
        "sdp": "v=0\r\n",
        "txn": "txn-1",
        "edge": "e1",
        **extra,
    }
    return Event(f"sip:{call_id}:invite", "Invite", data)


async def publish(store: Store, event: Event, call_id: str) -> None:
    await store.publish(store.keys.partition_of_call(call_id), event)


async def drain_streams(worker: Worker, rounds: int = 20) -> None:
    for _ in range(rounds):
        if await worker.consume_once() == 0:
            return


async def commands(store: Store, key: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for _, fields in await store.redis.xrange(key):
        out.append((fields[b"type"].decode(), msgpack.unpackb(fields[b"data"])))
    return out


async def test_incoming_call_auto_answered_end_to_end(store: Store, default_table: Table) -> None:
    worker = make_worker(store, default_table, "w-a")
    await worker.ensure_groups()
    await publish(store, invite(), "w1@h")
    await drain_streams(worker)
    sid = await store.lookup(store.keys.initial("w1@h", "ft"))
    assert sid is not None
    session = await store.get(sid)
    assert session is not None
    assert session["state"] == "Ringing"
    assert session["cond.accepted"] == "1"
    # the media node answers
    media = Event(f"media:{sid}:ready", "MediaReady", {"sdp": "v=0 ours", "media_node": "m"}, sid)
    await store.publish(store.keys.partition_of(sid), media)
    await drain_streams(worker)
    session = await store.get(sid)
    assert session is not None
    assert session["state"] == "Answering"
    local_tag = session["local_tag"]
    for name, extra in (("Ack", {}), ("Bye", {"txn": "txn-2"})):
        data = {
            "kind": "request",
            "call_id": "w1@h",
            "from_tag": "ft",
            "to_tag": local_tag,
            "edge": "e1",
            **extra,
        }
        await publish(store, Event(f"sip:w1@h:{name}", name, data), "w1@h")
    await drain_streams(worker)
    session = await store.get(sid)
    assert session is not None
    assert session["state"] == "Terminated"
    sent = await commands(store, store.keys.edge_commands("e1"))
    assert [(t, d["code"]) for t, d in sent] == [
        ("respond", 180),
        ("respond", 200),
        ("respond", 200),
    ]
    assert sent[1][1]["sdp"] == "v=0 ours"
    assert sent[1][1]["local_tag"] == local_tag
    pending = await store.redis.xpending(store.keys.events(store.keys.partition_of(sid)), GROUP)
    assert pending["pending"] == 0  # everything acknowledged


async def test_orphan_request_gets_481(store: Store, default_table: Table) -> None:
    worker = make_worker(store, default_table, "w-b")
    await worker.ensure_groups()
    data = {
        "kind": "request",
        "call_id": "ghost@h",
        "from_tag": "a",
        "to_tag": "b",
        "txn": "txn-9",
        "edge": "e1",
    }
    await publish(store, Event("sip:ghost:bye", "Bye", data), "ghost@h")
    await drain_streams(worker)
    sent = await commands(store, store.keys.edge_commands("e1"))
    assert [(t, d["code"], d["txn"]) for t, d in sent] == [("respond", 481, "txn-9")]


async def test_request_to_an_ended_dialog_gets_481(store: Store, default_table: Table) -> None:
    """RFC 3261 12.2.2: a request inside a dialog that no longer exists gets 481, not 500,
    also while the ended session is still kept (its registry entry answers retransmissions)."""
    worker = make_worker(store, default_table, "w-e")
    await worker.ensure_groups()
    await publish(store, invite("end@h"), "end@h")
    await drain_streams(worker)
    sid = await store.lookup(store.keys.initial("end@h", "ft"))
    assert sid is not None
    ready = Event(f"media:{sid}:ready", "MediaReady", {"sdp": "v=0 ours", "media_node": "m"}, sid)
    await store.publish(store.keys.partition_of(sid), ready)
    await drain_streams(worker)
    session = await store.get(sid)
    assert session is not None
    dialog = {"kind": "request", "call_id": "end@h", "from_tag": "ft", "edge": "e1"}
    dialog["to_tag"] = session["local_tag"]
    for name, txn in (("Ack", ""), ("Bye", "txn-2"), ("Info", "txn-3")):
        event = Event(f"sip:end@h:{name}", name, {**dialog, "txn": txn} if txn else dialog)
        await publish(store, event, "end@h")
        await drain_streams(worker)
    session = await store.get(sid)
    assert session is not None
    assert session["state"] == "Terminated"
    sent = await commands(store, store.keys.edge_commands("e1"))
    assert [(d["code"], d["txn"]) for _, d in sent if d.get("txn") == "txn-3"] == [(481, "txn-3")]


async def test_reject_mode_declines(store: Store, default_table: Table) -> None:
    worker = make_worker(store, default_table, "w-c", answer="reject")
    await worker.ensure_groups()
    await publish(store, invite("rej@h"), "rej@h")
    await drain_streams(worker)
    sent = await commands(store, store.keys.edge_commands("e1"))
    assert [d["code"] for _, d in sent] == [180, 603]


async def test_entries_of_a_dead_worker_are_reclaimed(store: Store, default_table: Table) -> None:
    dead = make_worker(store, default_table, "w-dead", claim_idle_ms=50)
    alive = make_worker(store, default_table, "w-alive", claim_idle_ms=50)
    await dead.ensure_groups()
    await publish(store, invite("kill@h"), "kill@h")
    # the dead worker read the entry, then died before processing or acking it
    read = await store.redis.xreadgroup(GROUP, "w-dead", {s: ">" for s in dead._streams}, count=10)
    assert sum(len(items) for _, items in read) == 1
    assert await alive.consume_once() == 0  # nothing new for the live worker
    await asyncio.sleep(0.1)
    assert await alive.reclaim_once() == 1
    sid = await store.lookup(store.keys.initial("kill@h", "ft"))
    assert sid is not None
    # reclaiming again finds nothing; the accept decision was published and is processed
    assert await alive.reclaim_once() == 0
    await drain_streams(alive)
    session = await store.get(sid)
    assert session is not None
    assert session["cond.accepted"] == "1"


async def test_state_timeout_fires_through_the_worker(store: Store, counter_table: Table) -> None:
    worker = make_worker(store, counter_table, "w-t")
    await worker.ensure_groups()
    applier = worker.applier
    fields = {"sid": "", "role": "UAS", "call_id": "tmo@h", "local_tag": "l", "remote_tag": "r"}
    from sessiond.store import new_sid

    fields["sid"] = new_sid("tmo@h")
    created = await applier.create(
        fields, store.keys.registry_keys(fields), Event("c", "Hangup"), "counter"
    )
    await asyncio.sleep(0.25)  # the Open state's timeout is 0.2 s
    assert await worker.timers_once() == 1
    assert await worker.timers_once() == 0
    await drain_streams(worker)
    session = await store.get(created.sid)
    assert session is not None
    assert session["state"] == "Closed"


async def test_drain_request_stops_the_worker(store: Store, default_table: Table) -> None:
    worker = make_worker(store, default_table, "w-d")
    task = asyncio.create_task(worker.run())
    await asyncio.sleep(0.2)
    assert await store.redis.exists(store.keys.heartbeat("worker", "w-d")) == 1
    await store.redis.set(store.keys.drain("w-d"), "1")
    await asyncio.wait_for(task, 5)
    assert await store.redis.exists(store.keys.heartbeat("worker", "w-d")) == 0


async def test_decision_is_applied_in_the_invites_batch(store: Store, default_table: Table) -> None:
    """The handler's decision on a new call is chained to the session's creation: one
    batch, one stream entry (the INVITE), both transitions in the history."""
    worker = make_worker(store, default_table, "w-chain")
    await worker.ensure_groups()
    await publish(store, invite("chain@h"), "chain@h")
    assert await worker.consume_once() == 1
    sid = await store.lookup(store.keys.initial("chain@h", "ft"))
    assert sid is not None
    session = await store.get(sid)
    assert session is not None
    assert session["cond.accepted"] == "1"
    assert session["version"] == "2"
    steps = [(h["event"], h["event_id"]) for h in await store.history(sid)]
    assert steps[0] == ("Invite", "sip:chain@h:invite")
    assert ("AcceptCall", "sip:chain@h:invite:answer") in steps
    stream = store.keys.events(store.keys.partition_of_call("chain@h"))
    assert await store.redis.xlen(stream) == 1  # the decision never went through a stream
    assert worker.stats.by_status == {"created": 1, "applied": 1}


async def test_redelivered_invite_still_gets_its_decision(
    store: Store, default_table: Table
) -> None:
    """A worker died after creating the session, before the decision: the INVITE's
    redelivery finds the session created, and the decision is applied then (once)."""
    worker = make_worker(store, default_table, "w-redo", claim_idle_ms=1)
    await worker.ensure_groups()
    from sessiond.worker.router import new_uas

    event = invite("redo@h")
    new = new_uas(store.keys, event)
    assert new is not None
    await worker.applier.create(new.fields, new.registry, event)  # the dead worker's step
    await publish(store, event, "redo@h")
    read = await store.redis.xreadgroup(GROUP, "w-dead", {s: ">" for s in worker._streams})
    assert sum(len(items) for _, items in read) == 1
    await asyncio.sleep(0.01)
    assert await worker.reclaim_once() == 1
    session = await store.get(new.fields["sid"])
    assert session is not None
    assert session["cond.accepted"] == "1"
    assert await worker.reclaim_once() == 0
    assert await worker.consume_once() == 0


async def test_workers_share_the_partitions(store: Store, default_table: Table) -> None:
    """Each live worker holds a fair share of the partition leases and reads only those;
    a stopping worker gives its leases up and the others take them."""
    one = make_worker(store, default_table, "w-l1")
    two = make_worker(store, default_table, "w-l2")
    everything = set(range(store.keys.partitions))
    await one.ensure_groups()
    await one.lease_once()
    assert one.owned == everything  # alone: every partition
    await two.lease_once()  # sees two live workers, takes what is free: nothing yet
    await one.lease_once()  # gives half up
    await two.lease_once()  # takes it
    assert one.owned | two.owned == everything
    assert not one.owned & two.owned
    assert len(one.owned) == len(two.owned) == len(everything) // 2
    await one.leases.leave()  # what a stopping worker does
    await two.lease_once()
    assert two.owned == everything


def test_keys_partition_of_call_matches_session(default_table: Table) -> None:
    from sessiond.store import new_sid

    keys = Keys()
    for n in range(50):
        call_id = f"{n}@h"
        assert keys.partition_of_call(call_id) == keys.partition_of(new_sid(call_id))
