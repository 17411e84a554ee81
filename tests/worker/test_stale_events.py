"""Stale copies of the event that started a call, after the call ended (issue 18, F3): a
worker that stalled with the INVITE in hand, an INVITE replayed into the stream, a MakeCall
redelivered. Workers on a real Redis and on the embedded store; no second session, nothing
sent again. A call ended by its own INVITE (rejected at once) still gets its answer again
when a worker died before sending it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sessiond.core.types import Event
from sessiond.store import Store
from sessiond.store.store import REDELIVERY_WINDOW
from sessiond.table import Table
from sessiond.worker.process import GROUP, Entry, Worker, _decode

from .test_worker import commands, drain_streams, invite, make_worker, publish

pytestmark = pytest.mark.redis

CALL = "stale@h"


async def streams_sent(store: Store) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """Everything sent to the edge, the media pool and the applications."""
    keys = store.keys
    out = {}
    for key in (keys.edge_commands("e1"), keys.media_pool(), keys.app_events()):
        out[key] = await commands(store, key)
    return out


async def sessions_of(store: Store, call_id: str) -> list[dict[str, str]]:
    found = []
    async for key in store.redis.scan_iter(match=f"{store.keys.ns}:*:session:*"):
        session = await store.get(key.decode().rsplit(":", 1)[1])
        if session is not None and session["call_id"] == call_id:
            found.append(session)
    return found


async def run_the_call(store: Store, worker: Worker, call_id: str = CALL) -> str:
    """Ringing, answered, ACKed, BYE: the call ends. Returns its session id."""
    sid = await store.lookup(store.keys.initial(call_id, "ft"))
    assert sid is not None
    media = Event(f"media:{sid}:ready", "MediaReady", {"sdp": "v=0 ours", "media_node": "m"}, sid)
    await store.publish(store.keys.partition_of(sid), media)
    await drain_streams(worker)
    session = await store.get(sid)
    assert session is not None
    for name, extra in (("Ack", {}), ("Bye", {"txn": "txn-2"})):
        data = {"kind": "request", "call_id": call_id, "from_tag": "ft", "edge": "e1", **extra}
        data["to_tag"] = session["local_tag"]
        await publish(store, Event(f"sip:{call_id}:{name}", name, data), call_id)
    await drain_streams(worker)
    session = await store.get(sid)
    assert session is not None
    assert session["state"] == "Terminated"
    assert session["ended_by"] == f"sip:{call_id}:Bye"
    return sid


async def test_a_stalled_workers_invite_makes_no_second_call(
    store: Store, default_table: Table
) -> None:
    """Worker A reads the INVITE and stalls; B reclaims it and the call runs to its end (the
    registry entries are gone); A resumes with the INVITE in hand: dropped as stale."""
    stalled = make_worker(store, default_table, "w-stalled", claim_idle_ms=50)
    other = make_worker(store, default_table, "w-other", claim_idle_ms=50)
    await stalled.ensure_groups()
    await publish(store, invite(CALL), CALL)
    read = await store.redis.xreadgroup(
        GROUP, "w-stalled", {s: ">" for s in stalled._streams}, count=10
    )
    in_hand = [
        Entry(stalled._partition(stream), eid, _decode(fields), False)
        for stream, items in read
        for eid, fields in items
    ]
    assert len(in_hand) == 1
    await asyncio.sleep(0.1)
    assert await other.reclaim_once() == 1
    sid = await run_the_call(store, other)
    assert not await store.redis.exists(store.keys.initial(CALL, "ft"))  # unmapped at the end
    before = await streams_sent(store)

    handled = await stalled.process(in_hand)  # the stalled worker goes on with its batch

    assert [(h.status, h.sid) for h in handled] == [("stale", sid)]
    assert [s["sid"] for s in await sessions_of(store, CALL)] == [sid]
    assert await streams_sent(store) == before  # no 180/200, no media leg, no IncomingCall
    assert stalled.stats.by_status == {"stale": 1}


@pytest.mark.parametrize("cached", [True, False])
async def test_an_invite_replayed_after_the_call_ended_is_dropped(
    store: Store, default_table: Table, cached: bool
) -> None:
    """The same INVITE event published again after the call: by the worker that ran the call
    (its route cache knows the session) or by another one (it tries to create it)."""
    worker = make_worker(store, default_table, "w-ran")
    await worker.ensure_groups()
    await publish(store, invite(CALL), CALL)
    await drain_streams(worker)
    sid = await run_the_call(store, worker)
    before = await streams_sent(store)
    reader = worker if cached else make_worker(store, default_table, "w-fresh")
    await publish(store, invite(CALL), CALL)
    await drain_streams(reader)
    assert [s["sid"] for s in await sessions_of(store, CALL)] == [sid]
    assert await streams_sent(store) == before  # no 180/200, no media leg, no IncomingCall
    assert reader.stats.by_status.get("stale") == 1
    ttl = await store.redis.ttl(store.keys.session(sid))
    assert ttl > REDELIVERY_WINDOW - 5  # what refuses the replay outlives the redelivery


async def test_a_call_ended_by_its_own_answer_sends_it_once_despite_a_redelivery(
    store: Store, default_table: Table, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rejected at once (the handler's decision ends the session): the answer went out as
    the transitions were stored (nothing is kept), so a worker that died before its last
    round (the acks) leaves the INVITE to be redelivered, and the redelivery, a duplicate,
    sends nothing again; nor does a later copy of the INVITE."""
    dead = make_worker(store, default_table, "w-rej", answer="reject")
    await dead.ensure_groups()
    await publish(store, invite("rej@h"), "rej@h")

    def died(*_: Any) -> None:
        raise ConnectionError("the worker died before its last round")

    monkeypatch.setattr(dead, "_ack", died)
    with pytest.raises(ConnectionError):
        await dead.consume_once()
    monkeypatch.undo()
    edge = store.keys.edge_commands("e1")
    first = await commands(store, edge)
    assert [d["code"] for _, d in first] == [180, 603]  # sent with the transitions
    sessions = await sessions_of(store, "rej@h")
    assert len(sessions) == 1
    sid = sessions[0]["sid"]
    applied, outboxes = store.keys.applied(sid), store.keys.outboxes(sid)
    assert not await store.redis.exists(outboxes)  # nothing kept

    other = make_worker(store, default_table, "w-rej2", answer="reject", claim_idle_ms=1)
    await asyncio.sleep(0.01)
    assert await other.reclaim_once() == 1  # the INVITE, still pending
    assert await commands(store, edge) == first
    assert other.stats.by_status == {"duplicate": 2}  # the INVITE and its answer decision
    session = await store.get(sid)
    assert session is not None
    assert len(session["applied"].split(" ")) == 2  # the events stay applied (digests)
    assert not await store.redis.exists(applied)  # no hash of their own for a short call

    await publish(store, invite("rej@h"), "rej@h")  # a copy after the answer went out
    await drain_streams(other)
    assert await commands(store, edge) == first
    assert len(await sessions_of(store, "rej@h")) == 1


async def test_a_make_call_redelivered_after_the_call_ended_places_nothing(
    store: Store, default_table: Table
) -> None:
    worker = make_worker(store, default_table, "w-uac")
    await worker.ensure_groups()
    sid = "0123456789-abcdefabcdef"
    data = {"target": "sip:bob@127.0.0.1:5099", "call_id": "uac@h", "local_tag": "lt"}
    data["edge"] = "e1"
    make = Event("app:call:1", "MakeCall", data, sid)
    await store.publish(store.keys.partition_of(sid), make)
    await drain_streams(worker)
    media = Event(f"media:{sid}:ready", "MediaReady", {"sdp": "v=0 ours", "media_node": "m"}, sid)
    await store.publish(store.keys.partition_of(sid), media)
    await drain_streams(worker)
    sent = await commands(store, store.keys.edge_commands("e1"))
    assert [t for t, _ in sent] == ["invite"]
    rejected = {"kind": "response", "call_id": "uac@h", "from_tag": "lt", "code": 486}
    rejected.update(cseq=sent[0][1]["cseq"], edge="e1", method="INVITE")
    await store.publish(store.keys.partition_of(sid), Event("r486", "Rejected", rejected, sid))
    await drain_streams(worker)
    session = await store.get(sid)
    assert session is not None
    assert session["ended_by"] == "r486", session["state"]
    before = await streams_sent(store)
    await store.publish(store.keys.partition_of(sid), make)
    await drain_streams(worker)
    assert await streams_sent(store) == before  # no second INVITE to the callee
    assert worker.stats.by_status.get("stale") == 1  # counted
