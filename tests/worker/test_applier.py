"""The applier's batch: one session's events in order within a batch, a new call's
follow-up stored with its creation, and each transition's commands sent as it is stored
(not a Redis Cluster), in order, an older sessiond's stored outbox among them."""

from __future__ import annotations

import pytest

from sessiond.core.types import Event
from sessiond.store import Store
from sessiond.table import Table
from sessiond.table.engine import decide
from sessiond.worker.applier import NewSession, Work
from store.test_store import applier_for, uas_fields

pytestmark = pytest.mark.redis


def new_call(store: Store, call_id: str) -> tuple[Work, str]:
    fields = uas_fields(store.keys, call_id)
    sid = fields["sid"]
    invite = Event(f"{call_id}:invite", "Invite", {"sdp": "v=0\r\n", "txn": "z9hG4bK.1"})
    accept = Event(f"{call_id}:invite:answer", "AcceptCall", {}, sid)
    new = NewSession(fields, store.keys.registry_keys(fields))
    return Work(sid, invite, new, False, accept), sid


async def test_a_whole_call_in_one_batch(store: Store, default_table: Table) -> None:
    applier = applier_for(store, default_table)
    work, sid = new_call(store, "batch@h")
    later = [
        Work(sid, Event("e-ready", "MediaReady", {"sdp": "v=0\r\n", "media_node": "m"})),
        Work(sid, Event("e-ack", "Ack")),
        Work(sid, Event("e-bye", "Bye", {"txn": "z9hG4bK.2"})),
    ]
    edge = store.keys.edge_commands("e1")

    applied = await applier.apply([work, *later])

    assert [h.status for h in applied.handled] == ["created", "applied", "applied", "applied"]
    first = applied.handled[0]
    assert first.followup is not None
    assert first.followup.status == "applied"
    assert [h.state for h in applied.handled][-1] == "Terminated"
    history = list(dict.fromkeys(h["event_id"] for h in await store.history(sid)))
    assert history == [work.event.id, f"{work.event.id}:answer", "e-ready", "e-ack", "e-bye"]
    # sent by the scripts as they were stored, in order: nothing left for the caller
    assert [o for o in applied.outboxes if o] == []
    sent = await store.redis.xrange(edge)
    assert [f[b"id"].rsplit(b"/", 1)[0] for _, f in sent] == [
        work.event.id.encode(),  # 180
        b"e-ready",  # 200
        b"e-bye",  # 200 to the BYE
    ]


async def test_an_older_sessionds_stored_outbox_goes_out_before_the_next_transition(
    store: Store, default_table: Table
) -> None:
    """A redelivered event whose transition an older sessiond stored with its outbox (not
    sent: it died) gets it sent, and deleted, before the session's next transition, whose
    commands the script sends as it stores it."""
    applier = applier_for(store, default_table)
    work, sid = new_call(store, "older@h")
    await applier.run([work])
    session = await store.get(sid)
    assert session is not None
    ready = Event("e-ready", "MediaReady", {"sdp": "v=0\r\n", "media_node": "m"})
    store.direct = False  # as an older sessiond: the outbox is stored, not sent
    try:
        decision = decide(default_table, session, ready, 1.0)
        assert (await store.apply(session, ready.id, decision)).status == "OK"
    finally:
        store.direct = True
    assert await store.redis.hlen(store.keys.outboxes(sid)) == 1
    edge = store.keys.edge_commands("e1")
    assert await store.redis.xlen(edge) == 1  # the 180 only

    later = [Work(sid, ready), Work(sid, Event("e-ack", "Ack")), Work(sid, Event("e-bye", "Bye"))]
    handled = await applier.run(later)

    assert [h.status for h in handled] == ["duplicate", "applied", "applied"]
    ids = [f[b"id"].rsplit(b"/", 1)[0] for _, f in await store.redis.xrange(edge)]
    assert ids == [work.event.id.encode(), b"e-ready", b"e-bye"]
    assert not await store.redis.exists(store.keys.outboxes(sid))  # sent: deleted


async def test_a_new_call_created_elsewhere_still_gets_its_decision(
    store: Store, default_table: Table
) -> None:
    """Another worker created the session from the same INVITE and died before the
    decision: our creation finds it, the INVITE is a duplicate there, and the decision is
    applied once."""
    work, sid = new_call(store, "elsewhere@h")
    assert work.new is not None
    other = applier_for(store, default_table)
    await other.create(work.new.fields, work.new.registry, work.event)

    (handled,) = await applier_for(store, default_table).run([work])

    assert handled.status == "duplicate"
    assert handled.followup is not None  # stored with our creation's round, or after it
    assert handled.followup.status in ("applied", "duplicate")
    history = [h["event_id"] for h in await store.history(sid)]
    assert history == [work.event.id, f"{work.event.id}:answer"]
    session = await store.get(sid)
    assert session is not None
    assert session["version"] == "2"
    assert session["cond.accepted"] == "1"
