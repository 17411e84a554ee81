"""A phone behind NAT: its private Contact becomes the address its messages came from, when
nothing but the NAT is in between (edge/nat.py)."""

from __future__ import annotations

from sessiond.edge.mapping import request_event, response_event
from sessiond.edge.nat import reachable_contact
from sessiond.sip.message import parse_message
from sessiond.sip.uri import SipUri

NAT = ("198.51.100.2", 40123)


def test_private_contact_behind_nat_becomes_the_source() -> None:
    uri = SipUri.parse("sip:alice@192.168.1.2:5070;transport=udp")
    assert reachable_contact(uri, NAT, direct=True) == (
        "sip:alice@198.51.100.2:40123;transport=udp"
    )
    # not behind NAT, through a proxy, public, or no source: as sent
    assert reachable_contact(uri, ("192.168.1.2", 5070), direct=True) == str(uri)
    assert reachable_contact(uri, NAT, direct=False) == str(uri)
    assert reachable_contact(uri, None, direct=True) == str(uri)
    public = SipUri.parse("sip:bob@203.0.113.9:5060")
    assert reachable_contact(public, NAT, direct=True) == str(public)
    v6 = SipUri.parse("sip:c@[fd00::2]:5060")
    assert reachable_contact(v6, ("2001:db8::9", 7), direct=True) == "sip:c@[2001:db8::9]:7"


def _invite(vias: str, extra: str = "") -> bytes:
    return (
        "INVITE sip:bob@198.51.100.7 SIP/2.0\r\n"
        f"{vias}"
        "From: <sip:alice@x>;tag=a\r\nTo: <sip:bob@198.51.100.7>\r\nCall-ID: n1\r\n"
        f"CSeq: 1 INVITE\r\nContact: <sip:alice@192.168.1.2:5070>\r\n{extra}"
        "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def test_request_event_publishes_the_reachable_target() -> None:
    via = "Via: SIP/2.0/UDP 192.168.1.2:5070;branch=z9hG4bK1;rport\r\n"
    req = parse_message(_invite(via))
    event = request_event(req, "UDP", NAT, "e")  # type: ignore[arg-type]
    assert event is not None
    assert event.data["contact"] == "sip:alice@198.51.100.2:40123"
    proxied = parse_message(_invite(via + "Via: SIP/2.0/UDP 10.9.9.9;branch=z9hG4bK2\r\n"))
    event = request_event(proxied, "UDP", NAT, "e")  # type: ignore[arg-type]
    assert event is not None
    assert event.data["contact"] == "sip:alice@192.168.1.2:5070"


def test_response_event_publishes_the_reachable_target() -> None:
    ok = parse_message(
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK3\r\n"
        b"From: <sip:s@x>;tag=s\r\nTo: <sip:alice@x>;tag=b\r\nCall-ID: n2\r\n"
        b"CSeq: 1 INVITE\r\nContact: <sip:alice@192.168.1.2:5070>\r\nContent-Length: 0\r\n\r\n"
    )
    event = response_event(ok, "e", NAT)  # type: ignore[arg-type]
    assert event is not None
    assert event.data["contact"] == "sip:alice@198.51.100.2:40123"
