"""The registrar's reading of a REGISTER and its 200 (RFC 3261 10.3, RFC 3327): every refusal."""

from __future__ import annotations

import pytest

from sessiond.sip.message import SipRequest, SipResponse, parse_message
from sessiond.sip.registrar import (
    Current,
    RegisterRefused,
    RegistrarPolicy,
    ok_response,
    out_of_order,
    read_register,
    refused_response,
)

POLICY = RegistrarPolicy(frozenset({"example.com"}), min_expires=60, max_expires=3600)


def register(*extra: str, to: str = "<sip:alice@example.com>") -> SipRequest:
    lines = [
        "REGISTER sip:example.com SIP/2.0",
        "Via: SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bK-r1",
        "From: <sip:alice@example.com>;tag=f1",
        f"To: {to}",
        "Call-ID: reg-1@10.0.0.5",
        "CSeq: 7 REGISTER",
        "Max-Forwards: 70",
        *extra,
        "Content-Length: 0",
    ]
    msg = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(msg, SipRequest)
    return msg


def refused(req: SipRequest, policy: RegistrarPolicy = POLICY) -> RegisterRefused:
    with pytest.raises(RegisterRefused) as info:
        read_register(req, policy)
    return info.value


def test_contacts_expiry_and_q() -> None:
    req = register(
        "Contact: <sip:alice@10.0.0.5:5070>;q=0.5, <sip:alice@10.0.0.6>;expires=120",
        "Contact: <sip:alice@10.0.0.7>;expires=999999",
        "Expires: 600",
    )
    got = read_register(req, POLICY)
    assert got.aor == "sip:alice@example.com"
    assert (got.user, got.domain, got.call_id, got.cseq) == (
        "alice",
        "example.com",
        "reg-1@10.0.0.5",
        7,
    )
    assert [(c.uri, c.expires, c.q) for c in got.contacts] == [
        ("sip:alice@10.0.0.5:5070", 600, 0.5),  # the Expires header
        ("sip:alice@10.0.0.6", 120, None),  # its own parameter wins
        ("sip:alice@10.0.0.7", 3600, None),  # shortened to max_expires
    ]
    assert not got.wildcard


def test_default_expiry_and_query() -> None:
    got = read_register(register("Contact: <sip:alice@10.0.0.5>"), POLICY)
    assert got.contacts[0].expires == 3600
    query = read_register(register(), POLICY)
    assert query.contacts == ()
    assert not query.wildcard


def test_canonical_aor() -> None:
    got = read_register(register(to='"A" <sip:al%69ce@EXAMPLE.com:5060;user=phone>'), POLICY)
    assert got.aor == "sip:alice@example.com"


def test_wildcard_needs_expires_zero_and_nothing_else() -> None:
    got = read_register(register("Contact: *", "Expires: 0"), POLICY)
    assert got.wildcard
    assert got.contacts == ()
    assert refused(register("Contact: *")).status == 400
    assert refused(register("Contact: *", "Expires: 60")).status == 400
    assert refused(register("Contact: *, <sip:alice@10.0.0.5>", "Expires: 0")).status == 400


def test_interval_too_brief_is_423_with_min_expires() -> None:
    error = refused(register("Contact: <sip:alice@10.0.0.5>;expires=30"))
    assert error.status == 423
    assert error.headers == (("Min-Expires", "60"),)
    resp = refused_response(register("Contact: <sip:a@b>;expires=30"), error, "t")
    assert resp.status == 423
    assert resp.header("min-expires") == "60"
    # zero is a removal, never too brief
    got = read_register(register("Contact: <sip:alice@10.0.0.5>;expires=0"), POLICY)
    assert got.contacts[0].expires == 0


def test_bad_values_are_400() -> None:
    assert refused(register("Contact: <sip:alice@10.0.0.5>", "Expires: soon")).status == 400
    assert refused(register("Contact: <sip:alice@10.0.0.5>;expires=-1")).status == 400
    assert refused(register("Contact: <sip:alice@10.0.0.5>;q=1.5")).status == 400
    assert refused(register("Contact: <sip:alice@10.0.0.5>;q=x")).status == 400
    assert refused(register("Contact: <http://example.com/>")).status == 400
    assert refused(register(to="<sip:example.com>")).status == 400


def test_foreign_domain_is_404() -> None:
    error = refused(register("Contact: <sip:bob@10.0.0.5>", to="<sip:bob@other.org>"))
    assert error.status == 404


def test_too_many_contacts_is_403() -> None:
    policy = RegistrarPolicy(frozenset({"example.com"}), max_contacts=2)
    contacts = ", ".join(f"<sip:alice@10.0.0.{n}>" for n in range(3))
    assert refused(register(f"Contact: {contacts}"), policy).status == 403


def test_out_of_order_is_500() -> None:
    assert out_of_order().status == 500


def test_ok_lists_bindings_highest_q_first_and_path_when_supported() -> None:
    req = register(
        "Contact: <sip:alice@10.0.0.5>",
        "Path: <sip:edge1.example.com;lr>",
        "Supported: path",
    )
    got = read_register(req, POLICY)
    assert got.path == ("<sip:edge1.example.com;lr>",)
    assert got.supports_path
    bindings = [Current("sip:a@1", 100, 0.2), Current("sip:a@2", 50), Current("sip:a@3", 70, 0.7)]
    resp = ok_response(req, got, bindings, 0.0, "tag1")
    assert isinstance(resp, SipResponse)
    assert resp.status == 200
    assert resp.header_values("contact") == [
        "<sip:a@2>;expires=50",
        "<sip:a@3>;expires=70;q=0.7",
        "<sip:a@1>;expires=100;q=0.2",
    ]
    assert resp.header_values("path") == ["<sip:edge1.example.com;lr>"]
    assert resp.header("date") == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert resp.to_tag == "tag1"
    plain = read_register(register("Contact: <sip:a@1>", "Supported: path"), POLICY)
    assert plain.supports_path
    assert not plain.path
    assert ok_response(req, plain, [], 0.0, "t").header("path") is None


def test_path_without_supported_path_is_420_bad_extension() -> None:
    """RFC 3327 5.3: a Path the UA did not say it supports is refused (strict mode)."""
    got = refused(register("Contact: <sip:a@1>", "Path: <sip:p;lr>", "Supported: timer"))
    assert (got.status, got.reason) == (420, "Bad Extension")
    assert got.headers == (("Unsupported", "path"),)


def test_a_strict_router_in_path_is_refused() -> None:
    """Only loose routers: a Path URI without ;lr (or not a SIP URI) is 400, naming it."""
    for value in ("<sip:edge1.example.com>", "<tel:+123;lr>", "<sip:a;lr>, <sip:b>"):
        got = refused(register("Contact: <sip:a@1>", f"Path: {value}", "Supported: path"))
        assert got.status == 400
        assert "not a loose router" in got.reason
    two = register("Contact: <sip:a@1>", "Path: <sip:a;lr>, <sip:b;lr>", "Supported: path")
    assert read_register(two, POLICY).path == ("<sip:a;lr>", "<sip:b;lr>")


def test_outbound_parameters_and_a_repeated_contact() -> None:
    instance = "<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"
    outbound = f'Contact: <sip:alice@10.0.0.5>;+sip.instance="{instance}";reg-id=1;expires=100'
    (contact,) = read_register(register(outbound), POLICY).contacts
    assert (contact.instance, contact.reg_id, contact.expires) == (instance, "1", 100)
    # a contact listed twice: the last one counts
    twice = register(outbound, "Contact: <sip:alice@10.0.0.5>;expires=200")
    (contact,) = read_register(twice, POLICY).contacts
    assert (contact.instance, contact.expires) == ("", 200)
