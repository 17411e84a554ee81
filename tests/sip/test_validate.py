"""Admission checks of RFC 3261 8.2 / 16.3 beyond the RFC 4475 cases."""

from __future__ import annotations

import pytest

from sessiond.sip import SipParseError, SipRequest, check_loop, merge_key, validate_request

BASE = [
    ("Via", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKv1"),
    ("Via", "SIP/2.0/UDP edge.example.com:5060;branch=z9hG4bKv0"),
    ("Max-Forwards", "70"),
    ("From", "<sip:a@example.com>;tag=f1"),
    ("To", "<sip:b@example.com>"),
    ("Call-ID", "v@example.com"),
    ("CSeq", "7 INVITE"),
]


def invite(*extra: tuple[str, str], uri: str = "sip:b@example.com") -> SipRequest:
    return SipRequest.create("INVITE", uri, [*BASE, *extra])


def test_a_good_request_passes() -> None:
    validate_request(invite(("Require", "100rel")), supported=("100rel",))
    validate_request(invite(uri="tel:+15551234567"))


def test_size_limit_is_513() -> None:
    req = invite()
    with pytest.raises(SipParseError) as exc:
        validate_request(req, size=5000, max_size=4096)
    assert exc.value.status == 513


def test_require_is_420_with_unsupported_header_but_not_for_ack() -> None:
    with pytest.raises(SipParseError) as exc:
        validate_request(invite(("Require", "100rel, foo")), supported=("100rel",))
    assert exc.value.status == 420
    assert exc.value.headers == (("Unsupported", "foo"),)
    ack = SipRequest.create(
        "ACK", "sip:b@example.com", [*BASE[:-1], ("CSeq", "7 ACK"), ("Require", "foo")]
    )
    validate_request(ack)


def test_proxy_checks_proxy_require_and_max_forwards() -> None:
    validate_request(invite(("Require", "foo")), proxy=True)
    with pytest.raises(SipParseError) as exc:
        validate_request(invite(("Proxy-Require", "foo")), proxy=True)
    assert exc.value.status == 420
    hop = invite().with_header("Max-Forwards", "0")
    validate_request(hop)
    with pytest.raises(SipParseError) as exc:
        validate_request(hop, proxy=True)
    assert exc.value.status == 483


def test_loop_detection_482() -> None:
    req = invite()
    check_loop(req, [("other.example.com", 5060)])
    with pytest.raises(SipParseError) as exc:
        check_loop(req, [("EDGE.example.com", 5060)])
    assert exc.value.status == 482


def test_merge_key_only_for_out_of_dialog_requests() -> None:
    assert merge_key(invite()) == ("f1", "v@example.com", 7, "INVITE")
    in_dialog = invite().with_header("To", "<sip:b@example.com>;tag=t")
    assert merge_key(in_dialog) is None


def test_missing_max_forwards_and_via() -> None:
    req = SipRequest.create("OPTIONS", "sip:b@example.com", [*BASE[3:6], ("CSeq", "1 OPTIONS")])
    with pytest.raises(SipParseError) as exc:
        validate_request(req)
    assert exc.value.problem == "Missing Via, Max-Forwards"


def test_duplicate_max_forwards_and_malformed_values() -> None:
    with pytest.raises(SipParseError) as exc:
        validate_request(invite(("Max-Forwards", "69")))
    assert exc.value.problem == "Multiple Max-Forwards headers"
    with pytest.raises(SipParseError) as exc:
        validate_request(invite().with_header("Max-Forwards", "256"))
    assert exc.value.problem == "Malformed Max-Forwards"
    with pytest.raises(SipParseError) as exc:
        validate_request(invite(("Contact", "<sip:a@b;x=\x01>")))
    assert exc.value.status == 400
