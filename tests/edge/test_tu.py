"""The edge's transaction user without sockets or Redis: each received request, response
and command answer gives the outcomes the adapter carries out."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from sessiond.core.messages import Respond
from sessiond.edge.access import AccessPolicy
from sessiond.edge.admission import Admission
from sessiond.edge.credentials import CredentialStore
from sessiond.edge.mapping import ALLOWED, Local, request_event
from sessiond.edge.overload import OverloadGuard
from sessiond.edge.ratelimit import SourceRateLimiter
from sessiond.edge.tu import Drop, Publish, Refuse, Register, Reply, TransactionUser, Transmit
from sessiond.edge.unanswered import INVITE_FACTOR
from sessiond.sip.actions import RequestReceived, Send
from sessiond.sip.message import SipRequest, SipResponse, make_response, parse_message
from sessiond.sip.timers import TimerConfig
from sessiond.sip.transaction import TransactionLayer
from sessiond.store import Keys

PEER = ("192.0.2.7", 5060)
LOCAL = Local("127.0.0.1", 5080, "UDP", "e1")
SDP = "v=0\r\no=- 1 1 IN IP4 192.0.2.7\r\ns=-\r\nc=IN IP4 192.0.2.7\r\nt=0 0\r\n"


def message(
    method: str,
    *,
    branch: str = "z9hG4bK-1",
    call_id: str = "c1",
    to_tag: str = "",
    cseq: int = 1,
    extra: str = "",
    body: str = "",
) -> bytes:
    to = f"<sip:bob@127.0.0.1>{f';tag={to_tag}' if to_tag else ''}"
    typed = "Content-Type: application/sdp\r\n" if body else ""
    return (
        f"{method} sip:bob@127.0.0.1:5080 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {PEER[0]}:{PEER[1]};branch={branch}\r\n"
        f"From: <sip:alice@192.0.2.7>;tag=a1\r\nTo: {to}\r\n"
        f"Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\n"
        f"Contact: <sip:alice@192.0.2.7>\r\n{extra}{typed}"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


def make_tu(**kwargs: object) -> TransactionUser:
    timers = TimerConfig()
    options: dict[str, object] = {
        "timers": timers,
        "access": AccessPolicy(),
        "admission": Admission(),
        "limiter": SourceRateLimiter(50.0, 100.0),
        "overload": OverloadGuard(5000, 1.0),
        "credentials": CredentialStore(),
        "max_message": 65_535,
        "max_transactions": 100,
        "started": -1e9,
        **kwargs,
    }
    return TransactionUser(TransactionLayer(timers), Keys("tu"), "e1", **options)  # type: ignore[arg-type]


def received(tu: TransactionUser, data: bytes, now: float = 0.0) -> RequestReceived:
    msg = parse_message(data)
    actions = tu.layer.receive(msg, PEER, now)
    return next(a for a in actions if isinstance(a, RequestReceived))


def statuses(outcomes: list[object]) -> list[int]:
    return [o.response.status for o in outcomes if isinstance(o, Reply)]


def test_options_is_answered_here_with_allow_and_accept() -> None:
    tu = make_tu()
    out = tu.on_request(received(tu, message("OPTIONS")), "UDP", 0.0, 0.0)
    assert statuses(out) == [200]
    reply = out[0]
    assert isinstance(reply, Reply)
    assert reply.response.header("allow") == ALLOWED
    assert reply.response.header("accept") == "application/sdp"


def test_cancel_without_its_invite_is_481() -> None:
    tu = make_tu()
    out = tu.on_request(received(tu, message("CANCEL")), "UDP", 0.0, 0.0)
    assert statuses(out) == [481]
    assert not any(isinstance(o, Publish) for o in out)


def test_cancel_is_answered_200_and_published_with_the_invites_identity() -> None:
    tu = make_tu()
    invite = received(tu, message("INVITE", body=SDP))
    first = tu.on_request(invite, "UDP", 0.0, 0.0)
    assert [type(o) for o in first] == [Publish]
    out = tu.on_request(received(tu, message("CANCEL")), "UDP", 0.0, 0.0)
    assert statuses(out) == [200]
    event = out[-1]
    assert isinstance(event, Publish)
    assert event.event.type == "Cancel"
    assert event.event.id.endswith(":cancel")
    assert event.event.data["txn"] == request_event(invite.request, "UDP", PEER, "e1").data["txn"]  # type: ignore[union-attr]


def test_a_method_we_do_not_handle_is_405_or_501() -> None:
    tu = make_tu()
    out = tu.on_request(received(tu, message("SUBSCRIBE", to_tag="b")), "UDP", 0.0, 0.0)
    assert statuses(out) in ([405], [501])


def test_access_refusal_is_counted_and_answered_through_the_transaction() -> None:
    tu = make_tu(access=AccessPolicy(allow=[ipaddress.ip_network("10.0.0.0/8")]))
    action = received(tu, message("INVITE", body=SDP))
    out = tu.on_request(action, "UDP", 0.0, 0.0)
    assert out[0] == Drop("access-403")
    assert isinstance(out[1], Reply)
    assert out[1].key == action.key
    assert out[1].response.status == 403


def test_admission_sheds_a_source_over_its_share() -> None:
    tu = make_tu(admission=Admission(max_per_source=1))
    assert [type(o) for o in tu.on_request(received(tu, message("INVITE")), "UDP", 0, 0)] == [
        Publish
    ]
    second = received(tu, message("INVITE", branch="z9hG4bK-2", call_id="c2"))
    out = tu.on_request(second, "UDP", 0.0, 0.0)
    assert out[0] == Drop("source-calls")
    assert statuses(out) == [503]
    reply = out[1]
    assert isinstance(reply, Reply)
    assert reply.response.header("retry-after") == "5"


def test_a_request_the_workers_never_answer_gets_503() -> None:
    tu = make_tu()
    bye = received(tu, message("BYE", to_tag="b"))
    assert [type(o) for o in tu.on_request(bye, "UDP", 0.0, 0.0)] == [Publish]
    timeout = tu.timers.timeout
    assert tu.next_deadline() is not None
    assert tu.not_answered(timeout - 0.1) == []
    out = tu.not_answered(timeout)
    assert out[0] == Drop("unanswered")
    assert statuses(out) == [503]


def test_an_invite_waits_longer_for_the_workers() -> None:
    tu = make_tu()
    tu.on_request(received(tu, message("INVITE")), "UDP", 0.0, 0.0)
    timeout = tu.timers.timeout
    assert tu.not_answered(timeout) == []
    assert statuses(tu.not_answered(timeout * INVITE_FACTOR)) == [503]


def test_screen_refuses_statelessly() -> None:
    tu = make_tu(limiter=SourceRateLimiter(1.0, 1.0))
    invite = parse_message(message("INVITE"))
    assert isinstance(invite, SipRequest)
    assert tu.screen(invite, 100, [], PEER, 0.0) is None
    again = parse_message(message("INVITE", branch="z9hG4bK-2", call_id="c2"))
    assert isinstance(again, SipRequest)
    refused = tu.screen(again, 100, [], PEER, 0.0)
    assert isinstance(refused, Refuse)
    assert (refused.error.status, refused.why) == (503, "rate-limit")
    text = parse_message(message("INVITE", extra="Content-Type: text/plain\r\n", body="hi"))
    assert isinstance(text, SipRequest)
    unreadable = tu.screen(text, 100, [], PEER, 0.0)
    assert unreadable is not None
    assert unreadable.error.status == 415


def test_screen_bounds_the_open_transactions() -> None:
    tu = make_tu(max_transactions=1)
    received(tu, message("BYE", to_tag="b"))
    info = parse_message(message("INFO", branch="z9hG4bK-2", to_tag="b", cseq=2))
    assert isinstance(info, SipRequest)
    refused = tu.screen(info, 100, [], PEER, 0.0)
    assert refused is not None
    assert refused.why == "transaction-limit"


def test_a_stored_answer_is_replayed_only_for_its_request() -> None:
    tu = make_tu()
    action = received(tu, message("BYE", to_tag="b"))
    stored = bytes(make_response(action.request, 200))
    replay = tu.replay(action, stored)
    assert replay is not None
    assert replay.key == action.key
    assert replay.response.status == 200
    other = parse_message(message("BYE", call_id="other", to_tag="b"))
    assert isinstance(other, SipRequest)
    assert tu.replay(action, bytes(make_response(other, 200))) is None
    assert tu.replay(action, None) is None
    assert tu.replay(action, b"garbage") is None
    assert tu.answer_key(action.request).startswith("tu:answered:")


def test_the_early_window_is_64_t1() -> None:
    tu = make_tu(started=100.0)
    assert tu.looks_up_answers(100.0 + tu.timers.timeout - 1)
    assert not tu.looks_up_answers(100.0 + tu.timers.timeout)


def _respond_cmd(action: RequestReceived, code: int, **extra: Any) -> Respond:
    event = request_event(action.request, "UDP", PEER, "e1")
    assert event is not None
    return Respond(txn=event.data["txn"], code=code, local_tag="b1", **extra)


def test_a_2xx_to_an_invite_is_retransmitted_until_its_ack() -> None:
    tu = make_tu()
    action = received(tu, message("INVITE", body=SDP))
    tu.on_request(action, "UDP", 0.0, 0.0)
    out = tu.respond(_respond_cmd(action, 200, sdp=SDP), {}, LOCAL, 0.0)
    assert isinstance(out, Reply)
    assert out.key == action.key
    assert tu.next_deadline() == tu.timers.t1  # the 2xx's first retransmission
    ack = parse_message(message("ACK", to_tag="b1"))
    assert tu.on_stray(ack, "UDP")  # published for the workers
    assert tu.duties.next_due() is None


def test_an_answer_after_a_restart_goes_out_statelessly() -> None:
    tu = make_tu()
    action = received(tu, message("BYE", to_tag="b"))
    restarted = make_tu()  # the transaction is gone
    out = restarted.respond(_respond_cmd(action, 200), {}, LOCAL, 0.0)
    assert isinstance(out, Transmit)
    assert out.peer == PEER
    assert out.data.startswith(b"SIP/2.0 200")


def test_a_prack_stops_the_reliable_provisional() -> None:
    tu = make_tu()
    action = received(tu, message("INVITE", body=SDP))
    tu.on_request(action, "UDP", 0.0, 0.0)
    cmd = _respond_cmd(action, 183, reliable=True, headers=[["RSeq", "1"], ["Require", "100rel"]])
    tu.respond(cmd, {}, LOCAL, 0.0)
    assert tu.duties.next_due() == tu.timers.t1
    prack = received(
        tu, message("PRACK", branch="z9hG4bK-p", to_tag="b1", cseq=2, extra="RAck: 1 1 INVITE\r\n")
    )
    assert [type(o) for o in tu.on_request(prack, "UDP", 0.0, 0.0)] == [Publish]
    assert tu.duties.next_due() is None


def test_a_2xx_retransmission_we_acked_is_acked_again_without_the_workers() -> None:
    tu = make_tu()
    tu.duties.sent_ack(("c1", 1), b"ACK sip:bob SIP/2.0\r\n\r\n", "UDP", PEER, 0.0)
    ok = parse_message(
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-x\r\n"
        b"From: <sip:alice@192.0.2.7>;tag=a1\r\nTo: <sip:bob@127.0.0.1>;tag=b\r\n"
        b"Call-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
    assert isinstance(ok, SipResponse)
    assert tu.on_stray(ok, "UDP") == [Transmit("UDP", PEER, b"ACK sip:bob SIP/2.0\r\n\r\n")]
    assert tu.on_response(ok) == [Transmit("UDP", PEER, b"ACK sip:bob SIP/2.0\r\n\r\n")]


def test_replies_go_through_the_transaction_layer() -> None:
    tu = make_tu()
    action = received(tu, message("OPTIONS"))
    (reply,) = tu.on_request(action, "UDP", 0.0, 0.0)
    assert isinstance(reply, Reply)
    sent = tu.layer.respond(reply.key, reply.response, 0.0)
    assert any(isinstance(a, Send) for a in sent)


RECORD_ROUTE = (
    "Record-Route: <sip:p2.example.com;lr>, <sip:p1.example.com;lr>\r\n"
    "Record-Route: <sip:p0.example.com;lr>\r\n"
)
ROUTES = ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>", "<sip:p0.example.com;lr>"]


def _record_routes(data: bytes) -> list[str]:
    resp = parse_message(data)
    return [v.strip() for v in ",".join(resp.header_values("record-route")).split(",")]


@pytest.mark.parametrize("restarted", [False, True])
@pytest.mark.parametrize("code", [180, 200])
def test_a_dialog_making_answer_copies_the_record_route(restarted: bool, code: int) -> None:
    """RFC 3261 12.1.1: 18x/2xx to an initial INVITE carry its Record-Route values, in order,
    through the live transaction or (after a restart) from the ``txn`` text alone."""
    tu = make_tu()
    action = received(tu, message("INVITE", body=SDP, extra=RECORD_ROUTE))
    tu.on_request(action, "UDP", 0.0, 0.0)
    cmd = _respond_cmd(action, code, sdp=SDP if code == 200 else None)
    out = (make_tu() if restarted else tu).respond(cmd, {}, LOCAL, 0.0)
    data = out.data if isinstance(out, Transmit) else bytes(out.response)
    assert isinstance(out, Transmit if restarted else Reply)
    assert _record_routes(data) == ROUTES


def test_other_answers_copy_no_record_route() -> None:
    """A final failure makes no dialog; an answer inside a dialog keeps its route set."""
    tu = make_tu()
    invite = received(tu, message("INVITE", body=SDP, extra=RECORD_ROUTE))
    tu.on_request(invite, "UDP", 0.0, 0.0)
    out = tu.respond(_respond_cmd(invite, 486), {}, LOCAL, 0.0)
    assert isinstance(out, Reply)
    assert out.response.header_values("record-route") == []
    again = received(tu, message("INVITE", branch="z9hG4bK-2", to_tag="b", extra=RECORD_ROUTE))
    tu.on_request(again, "UDP", 0.0, 0.0)
    ok = tu.respond(_respond_cmd(again, 200), {}, LOCAL, 0.0)
    assert isinstance(ok, Reply)
    assert ok.response.header_values("record-route") == []


def test_a_respond_finds_its_live_transaction_by_its_txn_without_parsing_it() -> None:
    """The command's ``txn`` names the server transaction the edge still holds: the response
    goes through it, built on the request it holds (the text is parsed only after a
    restart), and the name is forgotten when the transaction ends."""
    tu = make_tu()
    action = received(tu, message("INVITE", body=SDP))
    tu.on_request(action, "UDP", 0.0, 0.0)
    cmd = _respond_cmd(action, 180)
    out = tu.respond(cmd, {}, LOCAL, 0.0)
    assert isinstance(out, Reply)
    assert out.key == action.key
    assert tu._by_txn[cmd.txn][0] == action.key
    tu.on_terminated(action.key)
    assert cmd.txn not in tu._by_txn


def test_register_is_405_unless_the_edge_is_a_registrar() -> None:
    tu = make_tu()
    out = tu.on_request(received(tu, message("REGISTER")), "UDP", 0.0, 0.0)
    assert statuses(out) == [405]
    reply = out[0]
    assert isinstance(reply, Reply)
    assert "REGISTER" not in (reply.response.header("allow") or "")
    # Require: path is an extension we do not know then (420)
    refused = tu.screen(
        parse_message(message("REGISTER", extra="Require: path\r\n")), 0, [], PEER, 0.0
    )  # type: ignore[arg-type]
    assert refused is not None
    assert refused.error.status == 420


def test_a_registrar_edge_hands_register_over_and_lists_it_in_allow() -> None:
    tu = make_tu(registrar=True)
    action = received(tu, message("REGISTER", extra="Require: path\r\n"))
    assert tu.screen(action.request, 0, [], PEER, 0.0) is None
    out = tu.on_request(action, "UDP", 0.0, 0.0)
    assert out == [Register(action.key, action.request, "UDP", PEER)]
    options = tu.on_request(received(tu, message("OPTIONS", branch="z9hG4bK-2")), "UDP", 0.0, 0.0)
    reply = options[0]
    assert isinstance(reply, Reply)
    assert reply.response.header("allow") == f"{ALLOWED}, REGISTER"
    # the allow list still applies before any digest
    closed = make_tu(
        registrar=True, access=AccessPolicy(allow=[ipaddress.ip_network("10.0.0.0/8")])
    )
    out = closed.on_request(received(closed, message("REGISTER")), "UDP", 0.0, 0.0)
    assert out[0] == Drop("access-403")
    assert statuses(out) == [403]
