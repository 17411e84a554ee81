"""The applier's batch: one session's events in order within a batch, a new call's
follow-up stored with its creation, and nothing emitted until the caller's last round."""

from __future__ import annotations

import pytest

from sessiond.core.types import Event
from sessiond.store import Store
from sessiond.store.round import Round
from sessiond.table import Table
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
    assert await store.redis.xlen(edge) == 0  # stored, not emitted: the caller's round
    last = Round(store.redis)
    assert store.queue_outboxes(last, applied.outboxes) > 0
    await last.execute()
    assert await store.redis.xlen(edge) > 0


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
