"""RFC 4475 torture messages: valid ones parse and round-trip, invalid ones are refused."""

from __future__ import annotations

import pytest

from sessiond.sip.errors import SipParseError
from sessiond.sip.message import SipRequest, SipResponse, parse_message
from sessiond.sip.stateless import error_response
from sessiond.sip.uri import AbsoluteUri, SipUri
from sessiond.sip.validate import validate_request

from .rfc4475 import (
    CPARAM01,
    CPARAM02,
    DBLREQ,
    DBLREQ_FIRST,
    ESC01,
    ESC02,
    INTMETH,
    INV2543,
    LONGREQ,
    MPART01,
    NOREASON,
    REGESCRT,
    SEMIURI,
    TRANSPORTS,
    UNKSM2,
    UNREASON,
    VALID,
    WSINV,
    ZEROMF,
)
from .rfc4475_invalid import INVALID


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_messages_parse_and_round_trip(name: str) -> None:
    data = VALID[name]
    msg = parse_message(data)
    expected = DBLREQ_FIRST if name == "dblreq" else data
    assert bytes(msg) == expected
    if isinstance(msg, SipRequest) and name != "unksm2":
        validate_request(msg)


def test_wsinv_fields() -> None:
    msg = SipRequest.parse(WSINV)
    assert msg.method == "INVITE"
    assert msg.to_tag == "1918181833n"
    assert msg.from_tag == "98asjd8"
    assert msg.from_addr is not None
    assert msg.from_addr.display_text == 'J Rosenberg \\"'
    assert msg.max_forwards == 68
    assert msg.call_id == "wsinv.ndaksdj@192.0.2.1"
    assert msg.cseq is not None
    assert (msg.cseq.seq, msg.cseq.method) == (9, "INVITE")
    assert [(v.transport, v.host, v.branch) for v in msg.vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert msg.header("Subject") == ""
    assert msg.header("NewFangledHeader") == "newfangled value continued newfangled value"
    assert msg.header("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    (route,) = msg.addresses("Route")
    uri = route.sip_uri()
    assert uri.lr
    assert uri.param("unknownwith") == "value"
    (contact,) = msg.contacts()
    assert contact.display_text == 'Quoted string ""'
    assert contact.param("newparam") == "newvalue"
    assert contact.param("secondparam") == ""
    assert contact.param("q") == "0.33"
    assert msg.content_type == "application/sdp"
    assert len(msg.body) == 150


def test_intmeth_fields() -> None:
    msg = SipRequest.parse(INTMETH)
    assert msg.method == "!interesting-Method0123456789_*+`.%indeed'~"
    uri = msg.request_uri()
    assert isinstance(uri, SipUri)
    assert uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert msg.from_tag == "_token~1'+`*%!-."
    assert msg.from_addr is not None
    assert msg.from_addr.display_name == "token1~` token2'+_ token3*%!.-"
    assert msg.to_addr is not None
    assert msg.to_addr.display_text == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert msg.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert msg.header("extensionHeader-!.%*+_`'~") == "\ufeff\u5927\u505c\u96fb"


def test_escapes_kept_and_compared_unescaped() -> None:
    msg = SipRequest.parse(ESC01)
    assert msg.to_addr is not None
    to = msg.to_addr.sip_uri()
    assert to.user == "%75se%72"
    assert to.key() == SipUri.parse("sip:user@example.com").key()
    (contact,) = msg.contacts()
    assert contact.sip_uri().params == (("%6C%72", None), ("n%61me", "v%61lue%25%34%31"))
    esc02 = SipRequest.parse(ESC02)
    assert esc02.method == "RE%47IST%45R"
    assert [c.uri for c in esc02.contacts()] == [
        "sip:alias1@host1.example.com",
        "sip:alias3@host3.example.com",
    ]
    assert esc02.header("C%6Fntact") == "<sip:alias2@host2.example.com>"


def test_long_request() -> None:
    msg = SipRequest.parse(LONGREQ)
    assert len(msg.vias) == 34
    assert msg.vias[-1].received == "192.0.2.5"
    assert msg.to_addr is not None
    assert msg.to_addr.sip_uri().port == 6000


def test_dblreq_ignores_trailing_octets_on_datagram() -> None:
    msg = SipRequest.parse(DBLREQ)
    assert msg.method == "REGISTER"
    assert msg.body == b""


def test_semiuri_and_accept_list() -> None:
    msg = SipRequest.parse(SEMIURI)
    uri = msg.request_uri()
    assert isinstance(uri, SipUri)
    assert (uri.user, uri.host, uri.params) == ("user;par=u%40example.net", "example.com", ())
    assert len(msg.header_values("Accept")) == 6


def test_transports_and_multipart() -> None:
    msg = SipRequest.parse(TRANSPORTS)
    assert [v.transport for v in msg.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    mp = SipRequest.parse(MPART01)
    assert mp.content_type == "multipart/mixed"
    assert mp.body.endswith(b"--7a9cbec02ceef655--\r\n")
    assert mp.top_via is not None
    assert mp.top_via.wants_rport
    assert mp.top_via.port == 5070


def test_reason_phrases() -> None:
    resp = SipResponse.parse(UNREASON)
    assert resp.status == 200
    assert resp.reason.startswith("= 2**3 * 5**2 \u043d\u043e")
    empty = SipResponse.parse(NOREASON)
    assert (empty.status, empty.reason) == (100, "")
    assert bytes(empty) == NOREASON


def test_unknown_schemes_in_headers_parse() -> None:
    msg = SipRequest.parse(UNKSM2)
    assert msg.to_addr is not None
    assert msg.to_addr.parsed_uri() == AbsoluteUri("isbn", "2983792873")
    with pytest.raises(SipParseError) as exc:
        validate_request(msg)
    assert exc.value.status == 400
    assert "REGISTER" in exc.value.problem


def _admit(data: bytes) -> None:
    """What the edge does with a datagram: parse, then validate requests."""
    msg = parse_message(data)
    if isinstance(msg, SipRequest):
        validate_request(msg, supported=("100rel", "timer"))


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_messages_rejected_with_the_right_error(name: str) -> None:
    data, status, fragment = INVALID[name]
    with pytest.raises(SipParseError) as exc:
        _admit(data)
    assert exc.value.status == status
    assert fragment in exc.value.problem
    assert exc.value.reason.endswith(exc.value.problem)


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_requests_get_a_stateless_answer(name: str) -> None:
    data, status, _ = INVALID[name]
    with pytest.raises(SipParseError) as exc:
        _admit(data)
    answer = error_response(data, exc.value, to_tag="t1")
    if data.startswith(b"SIP/"):
        assert answer is None
        return
    assert answer is not None
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"SIP/2.0 %d " % status)
    assert b"\r\nVia:" in b"\r\n" + rest
    assert answer.endswith(b"Content-Length: 0\r\n\r\n")
    if b"\r\nTo:" in data:
        to_lines = [line for line in rest.split(b"\r\n") if line.startswith(b"To:")]
        assert to_lines
        assert all(b";tag=" in line for line in to_lines)


def test_semantic_cases_of_section_3_1_4() -> None:
    (c1,) = SipRequest.parse(CPARAM01).contacts()
    assert (c1.uri, c1.params) == ("sip:+19725552222@gw1.example.net", (("unknownparam", None),))
    (c2,) = SipRequest.parse(CPARAM02).contacts()
    assert c2.sip_uri().params == (("unknownparam", None),)
    (c3,) = SipRequest.parse(REGESCRT).contacts()
    assert c3.sip_uri().headers == (("Route", "%3Csip:sip.example.com%3E"),)
    zeromf = SipRequest.parse(ZEROMF)
    assert zeromf.max_forwards == 0
    validate_request(zeromf, proxy=True)  # OPTIONS may be answered by the proxy itself
    old = SipRequest.parse(INV2543)
    assert old.branch is None
    assert old.from_tag is None
    validate_request(old)  # RFC 4475 3.2.1: accepted without Max-Forwards (RFC 2543 style)
    with pytest.raises(SipParseError) as exc:  # an RFC 3261 request still needs it
        validate_request(
            SipRequest.parse(INV2543.replace(b"iftgw.example.com", b"h;branch=z9hG4bK1"))
        )
    assert exc.value.problem == "Missing Max-Forwards"
