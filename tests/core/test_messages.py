"""The typed messages, their one stream entry codec, and the generated schema page."""

from __future__ import annotations

from pathlib import Path

import msgpack
import pytest

from sessiond.core import messages
from sessiond.core.messages_doc import render
from sessiond.core.types import Event
from sessiond.edge.mapping import request_event, response_event, timeout_event
from sessiond.sip.message import SipRequest, SipResponse
from sessiond.store import entries

PAGE = Path(__file__).resolve().parents[2] / "docs" / "messages.md"

REFER = (
    b"REFER sip:bob@10.0.0.2 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-1\r\n"
    b"From: <sip:alice@a.example>;tag=a1\r\n"
    b"To: <sip:bob@b.example>;tag=b1\r\n"
    b"Call-ID: call-1\r\n"
    b"CSeq: 7 REFER\r\n"
    b"Contact: <sip:alice@10.0.0.1>\r\n"
    b"Referred-By: <sip:alice@a.example>\r\n"
    b"Refer-To: <sip:carol@c.example?Replaces=x%3Bto-tag%3D1%3Bfrom-tag%3D2>\r\n"
    b"Max-Forwards: 70\r\n"
    b"Content-Length: 0\r\n\r\n"
)
CHALLENGE = (
    b"SIP/2.0 407 Proxy Authentication Required\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-2\r\n"
    b"From: <sip:alice@a.example>;tag=a1\r\n"
    b"To: <sip:bob@b.example>;tag=b9\r\n"
    b"Call-ID: call-2\r\n"
    b"CSeq: 1 INVITE\r\n"
    b'Proxy-Authenticate: Digest realm="b.example", nonce="n1"\r\n'
    b"Content-Length: 0\r\n\r\n"
)


def test_the_schema_page_is_generated_from_the_types() -> None:
    """Stale? Run: python -m sessiond.core.messages_doc docs/messages.md"""
    assert PAGE.read_text(encoding="utf-8") == render()


def test_event_entries_leave_out_an_empty_sid_and_data() -> None:
    assert entries.encode_event(Event("e1", "Hangup")) == {"id": "e1", "type": "Hangup"}
    fields = entries.encode_event(Event("e2", "Play", {"tone": 440.0}, "s1"))
    assert fields == {
        "id": "e2",
        "type": "Play",
        "sid": "s1",
        "data": msgpack.packb({"tone": 440.0}),
    }


def test_command_entries_carry_all_four_fields() -> None:
    packed = entries.pack({"media_id": "m1"})
    assert entries.fields("c1", "destroy", "", packed) == {
        "id": "c1",
        "type": "destroy",
        "sid": "",
        "data": msgpack.packb({"media_id": "m1"}),
    }


def test_decoding_reads_bytes_and_folds_plain_fields_into_data() -> None:
    timer = {b"id": b"timer:s1|NoAnswer|3", b"type": b"NoAnswer", b"sid": b"s1", b"epoch": b"3"}
    assert entries.decode_event(timer) == Event(
        "timer:s1|NoAnswer|3", "NoAnswer", {"epoch": "3"}, "s1"
    )
    wire = entries.encode_event(Event("e2", "Play", {"tone": 440.0}, "s1"))
    assert entries.decode({k.encode(): v for k, v in wire.items()}).data == {"tone": 440.0}


def test_a_data_field_that_is_no_map_is_refused_or_read_as_empty() -> None:
    raw = {b"id": b"x", b"type": b"T", b"data": msgpack.packb([1, 2])}
    with pytest.raises(entries.EntryError):
        entries.decode(raw)
    assert entries.decode(raw, lenient=True).data == {}
    with pytest.raises(entries.EntryError):
        entries.decode_event({b"type": b"T"})


def test_edge_events_are_their_records() -> None:
    refer = request_event(SipRequest.parse(REFER), "udp", ("10.0.0.1", 5060), "edge-1")
    assert refer is not None
    record = messages.read(messages.EVENTS, refer.type, refer.data)
    assert isinstance(record, messages.RequestEvent)
    assert (record.target, record.replaces) == ("sip:carol@c.example", "x;to-tag=1;from-tag=2")
    assert refer.data["from"] == "<sip:alice@a.example>"
    assert "held" not in refer.data
    # header fields in the order the message had them: the wire is what it was before records
    assert list(refer.data)[-4:] == ["referred_by", "refer_to", "target", "replaces"]

    challenge = response_event(SipResponse.parse(CHALLENGE), "edge-1")
    assert challenge is not None
    assert challenge.type == "Rejected"
    record = messages.read(messages.EVENTS, challenge.type, challenge.data)
    assert isinstance(record, messages.ResponseEvent)
    assert record.proxy_authenticate == ['Digest realm="b.example", nonce="n1"']
    assert "www_authenticate" not in challenge.data

    timeout = timeout_event("call-3", "a1", "BYE", 2, "edge-1")
    assert list(timeout.data) == [
        *("kind", "method", "code", "reason", "call_id", "from_tag", "to_tag", "edge")
    ]
    assert messages.read(
        messages.EVENTS, timeout.type, timeout.data
    ) == messages.TransactionTimeout(method="BYE", call_id="call-3", from_tag="a1", edge="edge-1")


def test_every_entry_type_has_one_record_per_stream() -> None:
    seen: dict[tuple[str, str], str] = {}
    for cls in messages.RECORDS:
        for entry_type in cls.TYPES:
            assert seen.setdefault((cls.STREAM, entry_type), cls.__name__) == cls.__name__
    with pytest.raises(KeyError):
        messages.read(messages.EDGE, "Nope", {})
