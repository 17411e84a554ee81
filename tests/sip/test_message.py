"""Message objects: golden round trips, header access and edits, responses (RFC 3261 8.2.6)."""

from __future__ import annotations

import pytest

from sessiond.sip import (
    Headers,
    SipError,
    SipParseError,
    SipRequest,
    SipResponse,
    SipUri,
    Via,
    error_response,
    is_keepalive,
    make_response,
    parse_message,
    parse_uri,
)
from sessiond.sip.bench import INVITE as BENCH_INVITE
from sessiond.sip.bench import bench_parse
from sessiond.sip.grammar import split_commas

from .rfc4475 import crlf

# RFC 3665 3.1 style messages (F1 INVITE, F4 180, F6 200, F8 ACK, BYE).
GOLDEN = [
    crlf(
        "INVITE sip:bob@biloxi.example.com SIP/2.0\n"
        "Via: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9\n"
        "Max-Forwards: 70\n"
        "From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\n"
        "To: Bob <sip:bob@biloxi.example.com>\n"
        "Call-ID: 3848276298220188511@atlanta.example.com\n"
        "CSeq: 1 INVITE\n"
        "Contact: <sip:alice@client.atlanta.example.com;transport=tcp>\n"
        "Content-Type: application/sdp\n"
        "Content-Length: 151\n"
        "\n"
        "v=0\n"
        "o=alice 2890844526 2890844526 IN IP4 client.atlanta.example.com\n"
        "s=-\n"
        "c=IN IP4 192.0.2.101\n"
        "t=0 0\n"
        "m=audio 49172 RTP/AVP 0\n"
        "a=rtpmap:0 PCMU/8000\n"
    ),
    crlf(
        "SIP/2.0 180 Ringing\n"
        "Via: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9\n"
        " ;received=192.0.2.101\n"
        "From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\n"
        "To: Bob <sip:bob@biloxi.example.com>;tag=8321234356\n"
        "Call-ID: 3848276298220188511@atlanta.example.com\n"
        "CSeq: 1 INVITE\n"
        "Contact: <sip:bob@client.biloxi.example.com;transport=tcp>\n"
        "Content-Length: 0\n"
        "\n"
    ),
    crlf(
        "ACK sip:bob@client.biloxi.example.com SIP/2.0\n"
        "Via: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bd5\n"
        "Max-Forwards: 70\n"
        "From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\n"
        "To: Bob <sip:bob@biloxi.example.com>;tag=8321234356\n"
        "Call-ID: 3848276298220188511@atlanta.example.com\n"
        "CSeq: 1 ACK\n"
        "Content-Length: 0\n"
        "\n"
    ),
    BENCH_INVITE,
]


@pytest.mark.parametrize("data", GOLDEN)
def test_golden_messages_round_trip_byte_for_byte(data: bytes) -> None:
    assert bytes(parse_message(data)) == data


def test_compact_and_long_forms_are_the_same_header() -> None:
    msg = SipRequest.parse(
        crlf(
            "OPTIONS sip:a@b SIP/2.0\nv: SIP/2.0/UDP h;branch=z9hG4bK1\nf: <sip:x@y>;tag=1\n"
            "t: <sip:a@b>\ni: c1\nCSeq: 1 OPTIONS\nm: <sip:x@h>\nl: 0\nk: timer, 100rel\n\n"
        )
    )
    assert msg.call_id == "c1"
    assert msg.header("Call-ID") == msg.header("i") == "c1"
    assert msg.header_values("Supported") == ["timer", "100rel"]
    assert "contact" in msg.headers
    assert [c.uri for c in msg.contacts()] == ["sip:x@h"]


def test_header_edits_return_new_messages_and_keep_order() -> None:
    msg = SipRequest.parse(GOLDEN[0])
    via = "SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp1"
    forwarded = msg.add_header("Via", via, first=True).with_header("Max-Forwards", "69")
    assert [v.host for v in forwarded.vias] == ["proxy.example.com", "client.atlanta.example.com"]
    assert forwarded.max_forwards == 69
    assert msg.max_forwards == 70
    lines = bytes(forwarded).split(b"\r\n")
    assert lines[1] == b"Via: " + via.encode()
    assert lines[3] == b"Max-Forwards: 69"
    stripped = forwarded.without_header("Contact").with_body(b"")
    assert stripped.header("Contact") is None
    assert stripped.header("Content-Type") is None
    assert stripped.header("Content-Length") == "0"
    assert bytes(SipRequest.parse(bytes(stripped))) == bytes(stripped)


def test_make_response_copies_the_right_fields() -> None:
    req = SipRequest.parse(GOLDEN[0]).add_header(
        "Via", "SIP/2.0/UDP p1;branch=z9hG4bKa", first=True
    )
    resp = make_response(req, 486, to_tag="t9")
    assert resp.start_line() == "SIP/2.0 486 Busy Here"
    assert [v.host for v in resp.vias] == ["p1", "client.atlanta.example.com"]
    assert (resp.call_id, resp.cseq, resp.from_tag, resp.to_tag) == (
        req.call_id,
        req.cseq,
        req.from_tag,
        "t9",
    )
    assert resp.method == "INVITE"
    assert make_response(req, 100, to_tag="t9").to_tag is None  # 8.2.6.2: not on 100
    tagged = SipRequest.parse(GOLDEN[2])
    assert make_response(tagged, 200, to_tag="other").to_tag == "8321234356"
    with_body = make_response(req, 200, "Fine", to_tag="t", body=b"x")
    assert with_body.reason == "Fine"
    assert with_body.header("Content-Length") == "1"
    assert SipResponse.parse(bytes(with_body)).body == b"x"


def test_via_received_and_rport() -> None:
    via = Via.parse("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKx;rport")
    assert via.wants_rport
    assert via.rport is None
    updated = via.with_received("192.0.2.7", 40001)
    assert (updated.received, updated.rport) == ("192.0.2.7", 40001)
    assert (
        str(updated) == "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKx;received=192.0.2.7;rport=40001"
    )
    assert Via.parse("SIP/2.0/UDP h;branch=z9hG4bKx").with_received("h").received is None


def test_uri_parsing() -> None:
    uri = SipUri.parse("sips:alice:pw@[2001:db8::1]:5061;transport=TLS;lr?subject=hi&x=y")
    assert (uri.scheme, uri.user, uri.password, uri.host, uri.port) == (
        "sips",
        "alice",
        "pw",
        "[2001:db8::1]",
        5061,
    )
    assert uri.transport == "tls"
    assert uri.lr
    assert uri.headers == (("subject", "hi"), ("x", "y"))
    assert str(uri) == "sips:alice:pw@[2001:db8::1]:5061;transport=TLS;lr?subject=hi&x=y"
    assert str(uri.with_param("transport", "tcp")).endswith(";lr;transport=tcp?subject=hi&x=y")
    assert str(parse_uri("tel:+1-201-555-0123")) == "tel:+1-201-555-0123"
    for bad in ["sip:", "sip:a@", "sip:host:99999", "nocolon", "sip:a b@c", "sip:h;p=a=b"]:
        with pytest.raises(SipParseError):
            parse_uri(bad)
    with pytest.raises(SipParseError) as exc:
        SipUri.parse("tel:123")
    assert exc.value.status == 416


def test_split_commas_respects_quotes_and_brackets() -> None:
    value = '"Doe, J" <sip:a@b;x=1,2>;q=1, <sip:c@d>, "q\\",x" <sip:e@f>'
    assert split_commas(value) == [
        '"Doe, J" <sip:a@b;x=1,2>;q=1',
        "<sip:c@d>",
        '"q\\",x" <sip:e@f>',
    ]


def test_headers_container() -> None:
    h = Headers.of([("Route", "<sip:a;lr>"), ("Route", "<sip:b;lr>, <sip:c;lr>"), ("X", "1")])
    assert h.values("route") == ["<sip:a;lr>", "<sip:b;lr>", "<sip:c;lr>"]
    assert h.get_all("Route") == ["<sip:a;lr>", "<sip:b;lr>, <sip:c;lr>"]
    assert h.count("route") == 2
    assert list(h.replace("route", ["<sip:z;lr>"])) == [("Route", "<sip:z;lr>"), ("X", "1")]
    assert list(h.remove("x")) == [("Route", "<sip:a;lr>"), ("Route", "<sip:b;lr>, <sip:c;lr>")]
    assert h.get("Date") is None
    assert 5 not in h


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "Empty"),
        (b"\r\n\r\n", "Empty"),
        (b"OPTIONS sip:a@b SIP/2.0\r\nVia", "empty line"),
        (b"OPTIONS sip:a@b SIP/2.0\r\nVia SIP/2.0/UDP h\r\n\r\n", "header"),
        (b"OPTIONS sip:a@b SIP/2.0\r\nX: a\rb\r\n\r\n", "Bare CR"),
        (b"OPTIONS sip:a@b SIP/2.0\r\n folded: x\r\n\r\n", "Continuation"),
        (b"OPTIONS sip:a@b SIP/2.0\r\nX y: 1\r\n\r\n", "header name"),
        (b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: a b\r\n\r\n", "Call-ID"),
        (b"OPTIONS sip:a@b SIP/2.0\r\nCSeq: 1\r\n\r\n", "CSeq"),
        (b"OPTIONS sip:a@b HTTP/1.1\r\n\r\n", "SIP-Version"),
        (b"SIP/2.0 099 Low\r\n\r\n", "Status-Code"),
        (b"OPTIONS sip:a@b SIP/2.0\r\nl: 5\r\n\r\nabc", "Content-Length"),
    ],
)
def test_parse_errors_name_the_problem(data: bytes, problem: str) -> None:
    with pytest.raises(SipParseError) as exc:
        parse_message(data)
    assert exc.value.status == 400
    assert problem in exc.value.problem


def test_stream_mode_requires_content_length() -> None:
    data = b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\n"
    assert parse_message(data).body == b""
    with pytest.raises(SipParseError):
        parse_message(data, stream=True)


def test_keepalives_and_what_gets_no_stateless_answer() -> None:
    assert is_keepalive(b"\r\n\r\n")
    assert is_keepalive(b"\r\n")
    assert not is_keepalive(b"\r\nOPTIONS")
    err = SipParseError(400, "x")
    assert error_response(GOLDEN[1], err) is None  # a response
    assert error_response(GOLDEN[2], err) is None  # an ACK
    assert error_response(b"\x00garbage", err) is None  # no Via to answer to


def test_bench_parse_reports_a_rate() -> None:
    result = bench_parse(0.05)
    assert result["messages_per_s"] > 1000
    assert result["bytes"] == len(BENCH_INVITE)


def test_with_source_stamps_only_the_top_via() -> None:
    req = SipRequest.parse(
        crlf(
            "OPTIONS sip:a@b SIP/2.0\n"
            "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa;rport, SIP/2.0/UDP p;branch=z9hG4bKb\n"
            "Call-ID: c\n\n"
        )
    )
    stamped = req.with_source("198.51.100.4", 61000)
    assert [v.received for v in stamped.vias] == ["198.51.100.4", None]
    assert stamped.vias[0].rport == 61000
    assert stamped.header("Via") == (
        "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa;received=198.51.100.4;rport=61000, "
        "SIP/2.0/UDP p;branch=z9hG4bKb"
    )
    assert make_response(stamped, 200, to_tag="x").vias[0].rport == 61000
    same = SipRequest.parse(crlf("OPTIONS sip:a@b SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bKa\n\n"))
    assert same.with_source("h") is same


def test_header_injection_is_refused() -> None:
    req = SipRequest.parse(GOLDEN[2])
    with pytest.raises(SipError):
        req.with_header("Subject", "hi\r\nVia: evil")
    with pytest.raises(SipError):
        req.add_header("Bad Name", "x")
