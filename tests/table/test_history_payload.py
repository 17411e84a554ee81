"""History entries carry the event's meaningful payload (the DTMF digit, the SIP code, the
transfer target), and only that: on a real Redis and on the embedded store."""

from __future__ import annotations

import pytest

from sessiond.core.types import HISTORY_VALUE_MAX, Event, history_data
from sessiond.store import Store
from sessiond.table import Table
from store.test_store import applier_for, create_uas

pytestmark = pytest.mark.redis

BASE = {"id", "event_id", "version", "from", "event", "to", "actions", "worker", "at"}


def payload(entry: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in entry.items() if k not in BASE}


async def test_history_keeps_digit_target_and_code(store: Store, default_table: Table) -> None:
    applier = applier_for(store, default_table)
    sid = await create_uas(applier)
    steps = [
        ("MediaReady", {"sdp": "v=0 ours", "media_node": "m1", "media_id": f"{sid}.m"}),
        ("AcceptCall", {}),
        ("Ack", {}),
        ("DtmfReceived", {"digit": "5", "media_id": f"{sid}.m"}),
        ("SendDtmf", {"digits": "12#"}),
        ("Transfer", {"target": "sip:carol@127.0.0.1:5090"}),
        ("ReferResponse", {"kind": "response", "code": 202, "reason": "Accepted", "sdp": "x"}),
    ]
    for n, (name, data) in enumerate(steps):
        handled = await applier.handle(sid, Event(f"e{n}", name, data))
        assert handled.status == "applied", (name, handled)
    history = {h["event"]: h for h in await store.history(sid)}
    assert payload(history["Invite"]) == {}  # the SDP and txn stay out
    assert payload(history["MediaReady"]) == {}
    assert payload(history["DtmfReceived"]) == {"digit": "5"}
    assert payload(history["SendDtmf"]) == {"digits": "12#"}
    assert payload(history["Transfer"]) == {"target": "sip:carol@127.0.0.1:5090"}
    assert payload(history["ReferResponse"]) == {"code": "202", "reason": "Accepted"}


async def test_history_keeps_the_code_of_a_rejection(store: Store, default_table: Table) -> None:
    applier = applier_for(store, default_table)
    sid = await create_uas(applier, "call-rej@h")
    handled = await applier.handle(sid, Event("r", "RejectCall", {"code": 486}))
    assert handled.terminal, handled
    (entry,) = [h for h in await store.history(sid) if h["event"] == "RejectCall"]
    assert payload(entry) == {"code": "486"}


def test_a_long_value_is_cut_visibly() -> None:
    reason = "x" * (HISTORY_VALUE_MAX + 7)
    ((name, value),) = history_data(Event("e", "Rejected", {"reason": reason, "sdp": "v=0"}))
    assert (name, value) == ("reason", "x" * HISTORY_VALUE_MAX + "...(+7)")


def test_an_srtp_key_never_reaches_the_history() -> None:
    reason = "bad answer a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7"
    ((name, value),) = history_data(Event("e", "MediaFailed", {"reason": reason}))
    assert value == "bad answer a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:<hidden>"
