"""Dialogs (RFC 3261 12): creation, in-dialog requests, storage, 2xx retransmission."""

from __future__ import annotations

import pytest

from sessiond.sip.actions import (
    RequestReceived,
    ResponseReceived,
    Send,
    StrayMessage,
    TimedOut,
)
from sessiond.sip.dialog import (
    AnswerRetransmitter,
    Dialog,
    request_dialog_id,
    response_dialog_id,
)
from sessiond.sip.errors import DialogError
from sessiond.sip.message import SipRequest, SipResponse, make_response
from sessiond.sip.timers import TimerConfig

from .link import Link, events_of

INVITE = SipRequest.create(
    "INVITE",
    "sip:bob@biloxi.example.com",
    [
        ("Via", "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKinv1"),
        ("Max-Forwards", "70"),
        ("Record-Route", "<sip:p2.example.com;lr>"),
        ("Record-Route", "<sip:p1.example.com;lr>"),
        ("From", '"Alice" <sip:alice@atlanta.example.com>;tag=a1'),
        ("To", "Bob <sip:bob@biloxi.example.com>"),
        ("Call-ID", "dlg-1@atlanta.example.com"),
        ("CSeq", "101 INVITE"),
        ("Contact", "<sip:alice@127.0.0.1:5070>"),
    ],
)
UAC_CONTACT = "<sip:alice@127.0.0.1:5070>"
UAS_CONTACT = "<sip:bob@127.0.0.1:5060>"


def ok(status: int = 200) -> SipResponse:
    return make_response(
        INVITE,
        status,
        to_tag="b1",
        headers=[
            ("Record-Route", "<sip:p2.example.com;lr>, <sip:p1.example.com;lr>"),
            ("Contact", UAS_CONTACT),
        ],
    )


def test_uac_dialog_from_2xx() -> None:
    d = Dialog.for_uac(INVITE, ok(), UAC_CONTACT)
    assert d.id == ("dlg-1@atlanta.example.com", "a1", "b1")
    assert d.id == response_dialog_id(ok())
    assert d.route_set == ("<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>")
    assert d.remote_target == "sip:bob@127.0.0.1:5060"
    assert d.local_uri == '"Alice" <sip:alice@atlanta.example.com>'
    assert d.remote_uri == "Bob <sip:bob@biloxi.example.com>"
    assert (d.local_cseq, d.remote_cseq, d.dialog_state) == (101, None, "confirmed")


def test_uac_early_dialog_from_1xx_with_tag_then_confirmed() -> None:
    d = Dialog.for_uac(INVITE, ok(180), UAC_CONTACT)
    assert d.dialog_state == "early"
    d.confirm(ok(200))
    assert d.dialog_state == "confirmed"
    with pytest.raises(DialogError):
        Dialog.for_uac(INVITE, make_response(INVITE, 180), UAC_CONTACT)  # no To tag


def test_uas_dialog_keeps_record_route_order() -> None:
    d = Dialog.for_uas(INVITE, "b1", UAS_CONTACT)
    assert d.id == ("dlg-1@atlanta.example.com", "b1", "a1")
    assert d.route_set == ("<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>")
    assert d.remote_target == "sip:alice@127.0.0.1:5070"
    assert d.remote_cseq == 101


def test_bye_and_reinvite_use_remote_target_route_set_and_next_cseq() -> None:
    d = Dialog.for_uac(INVITE, ok(), UAC_CONTACT)
    bye = d.create_request("BYE", "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKbye1")
    assert bye.uri == "sip:bob@127.0.0.1:5060"
    assert bye.header_values("Route") == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    assert bye.cseq is not None
    assert (bye.cseq.seq, bye.cseq.method) == (102, "BYE")
    assert (bye.from_tag, bye.to_tag) == ("a1", "b1")
    assert bye.header("Contact") is None
    reinvite = d.create_request(
        "INVITE", "SIP/2.0/UDP h;branch=z9hG4bKre", body=b"v=0\r\n", content_type="application/sdp"
    )
    assert reinvite.cseq is not None
    assert reinvite.cseq.seq == 103
    assert reinvite.header("Contact") == UAC_CONTACT
    assert reinvite.header("Content-Length") == "5"
    assert bytes(SipRequest.parse(bytes(reinvite))) == bytes(reinvite)


def test_ack_for_2xx_reuses_the_invite_cseq() -> None:
    d = Dialog.for_uac(INVITE, ok(), UAC_CONTACT)
    ack = d.create_ack(101, "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKack1")
    assert ack.cseq is not None
    assert (ack.method, ack.cseq.seq, ack.cseq.method) == ("ACK", 101, "ACK")
    assert d.local_cseq == 101
    with pytest.raises(DialogError):
        d.create_request("ACK", "SIP/2.0/UDP h;branch=z9hG4bKx")


def test_strict_route_becomes_request_uri() -> None:
    d = Dialog.for_uac(INVITE, ok(), UAC_CONTACT)
    d.route_set = ("<sip:strict.example.com>", "<sip:p2.example.com;lr>")
    bye = d.create_request("BYE", "SIP/2.0/UDP h;branch=z9hG4bKs")
    assert bye.uri == "sip:strict.example.com"
    assert bye.header_values("Route") == ["<sip:p2.example.com;lr>", "<sip:bob@127.0.0.1:5060>"]


def test_fields_round_trip_as_plain_strings() -> None:
    d = Dialog.for_uac(INVITE, ok(), UAC_CONTACT)
    fields = d.to_fields()
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items())
    assert fields["route_set"] == "<sip:p1.example.com;lr>, <sip:p2.example.com;lr>"
    assert fields["remote_cseq"] == ""
    assert Dialog.from_fields(fields) == d
    uas = Dialog.for_uas(INVITE, "b1", UAS_CONTACT)
    assert Dialog.from_fields({**uas.to_fields(), "state": "ignored"}) == uas
    with pytest.raises(DialogError):
        Dialog.from_fields({k: v for k, v in fields.items() if k != "call_id"})
    with pytest.raises(DialogError):
        Dialog.from_fields({**fields, "local_cseq": "x"})


def test_out_of_order_remote_cseq_is_500() -> None:
    d = Dialog.for_uas(INVITE, "b1", UAS_CONTACT)
    uac = Dialog.for_uac(INVITE, ok(), UAC_CONTACT)
    bye = uac.create_request("BYE", "SIP/2.0/UDP h;branch=z9hG4bKb")
    d.receive_request(bye)
    assert d.remote_cseq == 102
    with pytest.raises(DialogError) as exc:
        d.receive_request(bye)
    assert exc.value.status == 500


def test_target_refresh_updates_remote_target() -> None:
    d = Dialog.for_uas(INVITE, "b1", UAS_CONTACT)
    uac = Dialog.for_uac(INVITE, ok(), "<sip:alice@192.0.2.99:5070>")
    reinvite = uac.create_request("INVITE", "SIP/2.0/UDP h;branch=z9hG4bKr")
    d.receive_request(reinvite)
    assert d.remote_target == "sip:alice@192.0.2.99:5070"


def test_2xx_retransmission_doubles_to_t2_and_gives_up_at_64_t1() -> None:
    r = AnswerRetransmitter("k", ok(), ("127.0.0.1", 5070), 0.0, TimerConfig())
    times = []
    while (due := r.get_timer()) is not None:
        actions = r.handle_timer(due)
        if actions and isinstance(actions[0], Send):
            times.append(due)
        else:
            assert actions == [TimedOut("k", "2xx")]
    assert times == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert r.done


def test_2xx_retransmission_stops_on_ack() -> None:
    r = AnswerRetransmitter("k", ok(), ("127.0.0.1", 5070), 0.0, TimerConfig())
    assert len(r.handle_timer(0.5)) == 1
    assert r.handle_timer(0.6) == []
    r.ack_received()
    assert r.get_timer() is None
    assert r.handle_timer(100.0) == []


def test_call_setup_and_teardown_over_the_link() -> None:
    link = Link()
    uac, uas = link.node("uac", 5070), link.node("uas", 5060)
    invite = SipRequest.create(
        "INVITE",
        "sip:bob@127.0.0.1:5060",
        [(n, v) for n, v in INVITE.headers if n != "Record-Route"],
    )
    _, actions = uac.layer.send_request(invite, uas.addr, link.now)
    link.run(uac, actions)
    rx = events_of(uas, RequestReceived)[0]
    assert isinstance(rx, RequestReceived)
    uas_dialog = Dialog.for_uas(rx.request, "b1", UAS_CONTACT)
    answer = make_response(rx.request, 200, to_tag="b1", headers=[("Contact", UAS_CONTACT)])
    link.drop = lambda node, msg: node is uas and len(uas.sent) == 2  # the first 200 is lost
    link.run(uas, uas.layer.respond(rx.key, answer, link.now))
    retrans = AnswerRetransmitter(rx.key, answer, rx.peer, link.now, TimerConfig())
    link.run(uas, retrans.handle_timer(0.5))  # the dialog re-sends the 2xx
    final = events_of(uac, ResponseReceived)[-1]
    assert isinstance(final, ResponseReceived)
    response = final.response
    assert response.status == 200
    uac_dialog = Dialog.for_uac(invite, response, UAC_CONTACT)
    ack = uac_dialog.create_ack(101, "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKack9")
    stray = uas.layer.receive(SipRequest.parse(bytes(ack)), uac.addr, link.now)
    assert len(stray) == 1
    assert isinstance(stray[0], StrayMessage)
    assert isinstance(stray[0].message, SipRequest)
    assert request_dialog_id(stray[0].message) == uas_dialog.id
    retrans.ack_received()
    bye = uac_dialog.create_request("BYE", "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKbye9")
    _, actions = uac.layer.send_request(bye, uas.addr, link.now)
    link.run(uac, actions)
    bye_rx = events_of(uas, RequestReceived)[-1]
    assert isinstance(bye_rx, RequestReceived)
    assert request_dialog_id(bye_rx.request) == uas_dialog.id
    uas_dialog.receive_request(bye_rx.request)
    link.run(uas, uas.layer.respond(bye_rx.key, make_response(bye_rx.request, 200), link.now))
    last = events_of(uac, ResponseReceived)[-1]
    assert isinstance(last, ResponseReceived)
    assert last.response.status == 200
    assert last.response.method == "BYE"
