"""RFC 3261 17 transactions on a fake clock over an in-memory lossy link."""

from __future__ import annotations

import pytest

from sessiond.sip.actions import (
    RequestReceived,
    ResponseReceived,
    StrayMessage,
    Terminated,
    TimedOut,
)
from sessiond.sip.client_transaction import build_cancel
from sessiond.sip.errors import TransactionError
from sessiond.sip.message import SipRequest, SipResponse, make_response
from sessiond.sip.transaction import TransactionLayer, server_key

from .link import Link, Node, events_of
from .rfc4475 import INV2543

UAS_PORT = 5060
UAC_PORT = 5070


def request(method: str, branch: str = "z9hG4bKtest1", seq: int = 1) -> SipRequest:
    return SipRequest.create(
        method,
        "sip:bob@127.0.0.1:5060",
        [
            ("Via", f"SIP/2.0/UDP 127.0.0.1:{UAC_PORT};branch={branch}"),
            ("Max-Forwards", "70"),
            ("From", "<sip:alice@example.com>;tag=a1"),
            ("To", "<sip:bob@example.com>"),
            ("Call-ID", "call-1@example.com"),
            ("CSeq", f"{seq} {method}"),
        ],
    )


def pair(reliable: bool = False) -> tuple[Link, Node, Node]:
    link = Link(reliable)
    return link, link.node("uac", UAC_PORT), link.node("uas", UAS_PORT)


def start(link: Link, uac: Node, req: SipRequest) -> str:
    key, actions = uac.layer.send_request(
        req, ("127.0.0.1", UAS_PORT), link.now, reliable=link.reliable
    )
    link.run(uac, actions)
    return key


def answer(link: Link, uas: Node, status: int, which: int = -1) -> None:
    received = events_of(uas, RequestReceived)[which]
    assert isinstance(received, RequestReceived)
    resp = make_response(received.request, status, to_tag="b1")
    link.run(uas, uas.layer.respond(received.key, resp, link.now))


def statuses(node: Node) -> list[int]:
    return [e.response.status for e in node.events if isinstance(e, ResponseReceived)]


def test_non_invite_happy_path_and_timer_k() -> None:
    link, uac, uas = pair()
    key = start(link, uac, request("OPTIONS"))
    answer(link, uas, 200)
    assert statuses(uac) == [200]
    assert Terminated(key) not in uac.events  # Completed: absorbs retransmissions for T4
    link.advance(5.0)
    assert Terminated(key) in uac.events
    link.advance(32.0)
    assert not uac.layer.clients
    assert not uas.layer.servers


def test_lost_request_is_retransmitted_by_timer_e() -> None:
    link, uac, uas = pair()
    link.drop = lambda node, msg: node is uac and len(uac.sent) == 1
    start(link, uac, request("OPTIONS"))
    assert not uas.events
    link.advance(0.5)
    assert len(events_of(uas, RequestReceived)) == 1


def test_retransmitted_request_gets_the_last_response_again() -> None:
    link, uac, uas = pair()
    link.drop = lambda node, msg: node is uas and len(uas.sent) == 1  # first 200 lost
    start(link, uac, request("OPTIONS"))
    answer(link, uas, 200)
    assert statuses(uac) == []
    link.advance(0.5)  # timer E: the request again, absorbed; the 200 again
    assert len(events_of(uas, RequestReceived)) == 1
    assert statuses(uac) == [200]
    assert [m.status for m in uas.sent if isinstance(m, SipResponse)] == [200, 200]


def test_timer_f_times_out_after_64_t1_with_capped_retransmissions() -> None:
    link, uac, _ = pair()
    link.drop = lambda node, msg: True
    key = start(link, uac, request("OPTIONS"))
    link.advance(31.9)
    assert not events_of(uac, TimedOut)
    link.advance(32.0)
    assert events_of(uac, TimedOut) == [TimedOut(key, "F")]
    # sent at 0, .5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5 (E capped at T2)
    assert len(uac.sent) == 11


def test_timer_b_times_out_an_unanswered_invite() -> None:
    link, uac, _ = pair()
    link.drop = lambda node, msg: True
    key = start(link, uac, request("INVITE"))
    link.advance(40.0)
    assert events_of(uac, TimedOut) == [TimedOut(key, "B")]
    assert len(uac.sent) == 7  # 0, .5, 1.5, 3.5, 7.5, 15.5, 31.5: timer A doubles, no cap


def test_reliable_transport_never_retransmits() -> None:
    link, uac, _ = pair(reliable=True)
    link.drop = lambda node, msg: True
    key = start(link, uac, request("INVITE"))
    link.advance(40.0)
    assert len(uac.sent) == 1
    assert events_of(uac, TimedOut) == [TimedOut(key, "B")]


def test_invite_gets_immediate_100_trying_and_retransmissions_are_absorbed() -> None:
    link, uac, uas = pair()
    start(link, uac, request("INVITE"))
    assert statuses(uac) == [100]
    answer(link, uas, 180)
    link.advance(2.0)  # no timer A after a provisional response
    assert [m.method for m in uac.sent if isinstance(m, SipRequest)] == ["INVITE"]
    assert statuses(uac) == [100, 180]


def test_non_2xx_final_is_acked_by_the_client_transaction() -> None:
    link, uac, uas = pair()
    key = start(link, uac, request("INVITE"))
    answer(link, uas, 486)
    assert statuses(uac) == [100, 486]
    ack = uac.sent[-1]
    assert isinstance(ack, SipRequest)
    assert ack.method == "ACK"
    assert ack.branch == "z9hG4bKtest1"
    assert ack.to_tag == "b1"
    assert ack.cseq is not None
    assert (ack.cseq.seq, ack.cseq.method) == (1, "ACK")
    assert not events_of(uas, StrayMessage)  # the ACK matched the server transaction
    link.advance(40.0)
    assert Terminated(key) in uac.events
    assert not uas.layer.servers


def test_lost_ack_makes_the_server_retransmit_the_final_response() -> None:
    link, uac, uas = pair()
    link.drop = lambda node, msg: (
        isinstance(msg, SipRequest)
        and msg.method == "ACK"
        and (sum(1 for m in uac.sent if isinstance(m, SipRequest) and m.method == "ACK") == 1)
    )
    start(link, uac, request("INVITE"))
    answer(link, uas, 486)
    link.advance(0.5)  # timer G: 486 again; the client ACKs again, the server confirms
    assert [m.status for m in uas.sent if isinstance(m, SipResponse)] == [100, 486, 486]
    assert statuses(uac) == [100, 486]  # the retransmission is not shown to the TU
    link.advance(10.0)
    assert [m.status for m in uas.sent if isinstance(m, SipResponse)] == [100, 486, 486]
    assert not events_of(uas, TimedOut)


def test_timer_h_when_no_ack_ever_arrives() -> None:
    link, uac, uas = pair()
    link.drop = lambda node, msg: isinstance(msg, SipRequest) and msg.method == "ACK"
    start(link, uac, request("INVITE"))
    answer(link, uas, 404)
    link.advance(40.0)
    (timeout,) = events_of(uas, TimedOut)
    assert isinstance(timeout, TimedOut)
    assert timeout.timer == "H"


def test_lost_2xx_invite_retransmission_absorbed_and_2xx_left_to_the_dialog() -> None:
    link, uac, uas = pair()
    link.drop = lambda node, msg: isinstance(msg, SipResponse)  # the 100 and the 200 lost
    start(link, uac, request("INVITE"))
    answer(link, uas, 200)
    link.advance(2.0)  # timer A retransmits the INVITE; the Accepted server absorbs it
    assert [m.method for m in uac.sent] == ["INVITE", "INVITE", "INVITE"]
    assert len(events_of(uas, RequestReceived)) == 1
    assert [m.status for m in uas.sent if isinstance(m, SipResponse)] == [100, 200]
    # The dialog re-sends the 2xx through the transaction while it is Accepted:
    received = events_of(uas, RequestReceived)[0]
    assert isinstance(received, RequestReceived)
    link.drop = lambda node, msg: False
    resp = uas.sent[-1]
    assert isinstance(resp, SipResponse)
    link.run(uas, uas.layer.respond(received.key, resp, link.now))
    assert statuses(uac) == [200]
    ack = SipRequest.create(
        "ACK",
        "sip:bob@127.0.0.1:5060",
        [
            ("Via", f"SIP/2.0/UDP 127.0.0.1:{UAC_PORT};branch=z9hG4bKack2"),
            ("From", "<sip:alice@example.com>;tag=a1"),
            ("To", "<sip:bob@example.com>;tag=b1"),
            ("Call-ID", "call-1@example.com"),
            ("CSeq", "1 ACK"),
        ],
    )
    actions = uas.layer.receive(ack, uac.addr, link.now)
    assert actions == [StrayMessage(ack, uac.addr)]


def test_cancel_before_final_response() -> None:
    link, uac, uas = pair()
    invite = request("INVITE")
    start(link, uac, invite)
    start(link, uac, build_cancel(invite))
    cancel_rx = events_of(uas, RequestReceived)[-1]
    assert isinstance(cancel_rx, RequestReceived)
    assert cancel_rx.request.method == "CANCEL"
    target = uas.layer.cancel_target(cancel_rx.key)
    assert target is not None
    assert not target.final_sent
    answer(link, uas, 200, which=-1)  # 200 to the CANCEL
    answer(link, uas, 487, which=0)  # 487 to the INVITE
    assert statuses(uac) == [100, 200, 487]
    assert [m.method for m in uac.sent if isinstance(m, SipRequest)] == ["INVITE", "CANCEL", "ACK"]


def test_cancel_after_final_response_changes_nothing() -> None:
    link, uac, uas = pair()
    invite = request("INVITE")
    start(link, uac, invite)
    answer(link, uas, 200)
    start(link, uac, build_cancel(invite))
    cancel_rx = events_of(uas, RequestReceived)[-1]
    assert isinstance(cancel_rx, RequestReceived)
    target = uas.layer.cancel_target(cancel_rx.key)
    assert target is not None
    assert target.final_sent
    invite_rx = events_of(uas, RequestReceived)[0]
    assert isinstance(invite_rx, RequestReceived)
    late = make_response(invite_rx.request, 487, to_tag="b1")
    with pytest.raises(TransactionError):
        uas.layer.respond(invite_rx.key, late, link.now)


def test_cancel_for_unknown_transaction_has_no_target() -> None:
    link, uac, uas = pair()
    start(link, uac, build_cancel(request("INVITE", branch="z9hG4bKnothere")))
    cancel_rx = events_of(uas, RequestReceived)[-1]
    assert isinstance(cancel_rx, RequestReceived)
    assert cancel_rx.cancels is None
    assert uas.layer.cancel_target(cancel_rx.key) is None


def test_stray_response_goes_to_the_tu() -> None:
    link, _, uas = pair()
    resp = make_response(request("OPTIONS"), 200, to_tag="x")
    assert uas.layer.receive(resp, ("127.0.0.1", 1), 0.0) == [StrayMessage(resp, ("127.0.0.1", 1))]


def test_send_request_rejects_ack_and_missing_branch() -> None:
    link, uac, _ = pair()
    with pytest.raises(TransactionError):
        uac.layer.send_request(request("ACK"), ("127.0.0.1", UAS_PORT), 0.0)
    with pytest.raises(TransactionError):
        uac.layer.send_request(request("OPTIONS", branch="old"), ("127.0.0.1", UAS_PORT), 0.0)


def test_transport_error_terminates_and_reports() -> None:
    link, uac, _ = pair()
    link.drop = lambda node, msg: True
    key = start(link, uac, request("INVITE"))
    assert uac.layer.transport_error(key) == [TimedOut(key, "transport"), Terminated(key)]
    assert uac.layer.get_timer() is None
    assert uac.layer.transport_error(key) == []


def test_ack_reusing_the_invite_branch_after_2xx_goes_to_the_tu() -> None:
    link, uac, uas = pair()
    invite = request("INVITE")
    start(link, uac, invite)
    answer(link, uas, 200)
    ack = SipRequest.create(
        "ACK",
        invite.uri,
        [(n, v) for n, v in invite.headers if n not in ("CSeq", "To")]
        + [("To", "<sip:bob@example.com>;tag=b1"), ("CSeq", "1 ACK")],
    )
    actions = uas.layer.receive(ack, uac.addr, link.now)
    assert actions == [StrayMessage(ack, uac.addr)]


def test_rfc2543_requests_match_by_their_fields() -> None:
    invite = SipRequest.parse(INV2543)
    key = server_key(invite)
    assert key.startswith("s2543|")
    ack = SipRequest.create(
        "ACK",
        invite.uri,
        [(n, v) for n, v in invite.headers if n not in ("CSeq", "Content-Type", "Record-Route")]
        + [("CSeq", "56 ACK")],
    )
    assert server_key(ack) == key
    _, _, uas = pair()
    actions = uas.layer.receive(invite, ("192.0.2.9", 5060), 0.0)
    assert [type(a).__name__ for a in actions] == ["Send", "RequestReceived"]
    assert uas.layer.receive(ack, ("192.0.2.9", 5060), 0.0) == []  # Proceeding: absorbed


def delayed_trying_pair() -> tuple[Link, Node, Node]:
    """A UAS whose INVITE server transactions hold the 100 Trying back for 200 ms."""
    link, uac, uas = pair()
    uas.layer = TransactionLayer(trying_delay=0.2)
    return link, uac, uas


def uas_statuses(uas: Node) -> list[int]:
    return [m.status for m in uas.sent if isinstance(m, SipResponse)]


def test_no_100_trying_when_a_180_goes_out_within_200_ms() -> None:
    link, uac, uas = delayed_trying_pair()
    start(link, uac, request("INVITE"))
    assert uas_statuses(uas) == []
    link.advance(0.15)
    answer(link, uas, 180)
    link.advance(0.45)  # past the 200 ms, before timer A would retransmit the INVITE
    assert uas_statuses(uas) == [180]
    assert statuses(uac) == [180]
    answer(link, uas, 200, which=0)
    link.advance(2.0)
    assert uas_statuses(uas) == [180, 200]
    assert len(events_of(uas, RequestReceived)) == 1


def test_no_100_trying_when_a_final_response_goes_out_at_once() -> None:
    link, uac, uas = delayed_trying_pair()
    start(link, uac, request("INVITE"))
    answer(link, uas, 486)
    link.advance(5.0)
    assert uas_statuses(uas) == [486]
    assert statuses(uac) == [486]


def test_100_trying_at_200_ms_when_the_tu_is_silent() -> None:
    link, uac, uas = delayed_trying_pair()
    start(link, uac, request("INVITE"))
    link.advance(0.199)
    assert uas_statuses(uas) == []
    link.advance(0.2)
    assert uas_statuses(uas) == [100]
    assert statuses(uac) == [100]
    link.advance(2.0)  # the 100 stopped timer A: no INVITE retransmission, no second 100
    assert [m.method for m in uac.sent if isinstance(m, SipRequest)] == ["INVITE"]
    assert uas_statuses(uas) == [100]
    answer(link, uas, 180)
    assert uas_statuses(uas) == [100, 180]


def test_retransmitted_invite_before_200_ms_gets_100_trying_at_once() -> None:
    link, uac, uas = delayed_trying_pair()
    invite = request("INVITE")
    start(link, uac, invite)
    link.advance(0.05)
    link.run(uas, uas.layer.receive(invite, uac.addr, link.now))  # a retransmission
    assert uas_statuses(uas) == [100]
    assert len(events_of(uas, RequestReceived)) == 1  # absorbed, not shown to the TU again
    link.advance(1.0)  # timer 100 was stopped by the 100 already sent
    assert uas_statuses(uas) == [100]
    answer(link, uas, 180)
    link.run(uas, uas.layer.receive(invite, uac.addr, link.now))  # again: the last response
    assert uas_statuses(uas) == [100, 180, 180]


def test_delayed_100_trying_is_not_sent_after_cancel_and_487() -> None:
    link, uac, uas = delayed_trying_pair()
    invite = request("INVITE")
    start(link, uac, invite)
    start(link, uac, build_cancel(invite))
    answer(link, uas, 200, which=-1)  # 200 to the CANCEL
    answer(link, uas, 487, which=0)  # 487 to the INVITE
    link.advance(1.0)
    assert uas_statuses(uas) == [200, 487]


def test_a_stopped_timer_costs_no_wake_up() -> None:
    """A 180 stops Timers A and B (Proceeding runs none): the layer has no deadline left,
    where its heap still held Timer A's entry (the edge woke for it, to do nothing)."""
    layer = TransactionLayer()
    req = request("INVITE")
    _, _ = layer.send_request(req, ("127.0.0.1", UAS_PORT), 0.0)
    assert layer.get_timer() == 0.5  # Timer A
    layer.receive(make_response(req, 180, to_tag="b1"), ("127.0.0.1", UAS_PORT), 0.1)
    assert layer.get_timer() is None
