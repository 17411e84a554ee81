"""Server transaction matching beyond the magic cookie (RFC 3261 17.2.3, 8.1.1.7, 9.2):
RFC 2543 requests matched by Request-URI, To tag, From tag, Call-ID, CSeq and top Via; a
branch reused by another request; and what a UAS answers to methods it does not handle or
an Accept it cannot satisfy (8.2.1, 8.2.3). Sans-I/O, on a fake clock."""

from __future__ import annotations

import pytest

from sessiond.edge.mapping import ALLOWED, HANDLED_METHODS, REQUEST_EVENTS
from sessiond.sip.actions import Action, RequestReceived, Send, StrayMessage
from sessiond.sip.errors import SipParseError
from sessiond.sip.message import SipRequest, SipResponse, make_response
from sessiond.sip.methods import accepts, check_accept, not_handled, unhandled_status
from sessiond.sip.server_transaction import ServerState
from sessiond.sip.transaction import TransactionLayer, answers, server_key
from sessiond.table.model import Table

PEER = ("192.0.2.9", 5060)
OLD_VIA = "SIP/2.0/UDP 192.0.2.9:5060"  # RFC 2543: no branch at all


def old(
    method: str,
    *,
    via: str = OLD_VIA,
    uri: str = "sip:bob@example.com",
    to_tag: str = "",
    seq: int = 1,
    call_id: str = "old-1@example.com",
    from_tag: str = "a1",
    cseq_method: str | None = None,
) -> SipRequest:
    to = "<sip:bob@example.com>" + (f";tag={to_tag}" if to_tag else "")
    return SipRequest.create(
        method,
        uri,
        [
            ("Via", via),
            ("From", f"<sip:alice@example.com>;tag={from_tag}"),
            ("To", to),
            ("Call-ID", call_id),
            ("CSeq", f"{seq} {cseq_method or method}"),
        ],
    )


def kinds(actions: list[Action]) -> list[str]:
    return [type(a).__name__ for a in actions]


def sent(actions: list[Action]) -> list[int]:
    return [
        a.message.status
        for a in actions
        if isinstance(a, Send) and isinstance(a.message, SipResponse)
    ]


def answered(layer: TransactionLayer, req: SipRequest, status: int, tag: str = "b1") -> str:
    """Receive ``req`` and answer it ``status`` through its transaction; returns the key."""
    actions = layer.receive(req, PEER, 0.0)
    (received,) = [a for a in actions if isinstance(a, RequestReceived)]
    layer.respond(received.key, make_response(req, status, to_tag=tag), 0.0)
    return received.key


@pytest.mark.parametrize("via", [OLD_VIA, OLD_VIA + ";branch=1234abcd"], ids=["none", "cookieless"])
def test_rfc2543_invite_retransmission_and_ack_of_a_non_2xx(via: str) -> None:
    layer = TransactionLayer()
    invite = old("INVITE", via=via)
    key = answered(layer, invite, 486)
    assert key.startswith("s2543|")
    assert sent(layer.receive(old("INVITE", via=via), PEER, 0.1)) == [486]  # resent
    ack = old("ACK", via=via, to_tag="b1")
    assert layer.receive(ack, PEER, 0.2) == []  # absorbed by the INVITE transaction
    assert layer.servers[key].state is ServerState.CONFIRMED
    assert layer.receive(old("INVITE", via=via), PEER, 0.3) == []  # Confirmed: absorbed


def test_rfc2543_ack_with_another_to_tag_is_not_the_transactions() -> None:
    layer = TransactionLayer()
    key = answered(layer, old("INVITE"), 486)
    stray = old("ACK", to_tag="someone-else")
    assert layer.receive(stray, PEER, 0.1) == [StrayMessage(stray, PEER)]
    assert layer.servers[key].state is ServerState.COMPLETED


def test_rfc2543_ack_of_a_2xx_goes_to_the_tu() -> None:
    """The ACK of a 2xx carries the INVITE's Via, From tag, Call-ID and CSeq number, but
    the remote target as Request-URI: it is the dialog's, not the transaction's."""
    layer = TransactionLayer()
    key = answered(layer, old("INVITE"), 200)
    assert layer.servers[key].state is ServerState.ACCEPTED
    ack = old("ACK", to_tag="b1", uri="sip:sessiond@192.0.2.1:5060")
    assert layer.receive(ack, PEER, 0.1) == [StrayMessage(ack, PEER)]
    same_uri = old("ACK", to_tag="b1")  # an ACK to the INVITE's URI: Accepted hands it up too
    assert layer.receive(same_uri, PEER, 0.1) == [StrayMessage(same_uri, PEER)]


def test_rfc2543_request_uri_and_to_tag_take_part_in_matching() -> None:
    """Same Via, From tag, Call-ID and CSeq but another Request-URI or To tag: not the
    transaction (17.2.3) but a merged request, answered 482 (8.2.2.2) without reaching the
    TU; the transaction itself is untouched."""
    layer = TransactionLayer()
    key = answered(layer, old("INVITE"), 180)
    for other in (old("INVITE", uri="sip:carol@example.com"), old("INVITE", to_tag="x")):
        actions = layer.receive(other, PEER, 0.1)
        assert kinds(actions) == ["Send"]
        assert sent(actions) == [482]
    assert layer.servers[key].state is ServerState.PROCEEDING
    assert sent(layer.receive(old("INVITE"), PEER, 0.2)) == [180]  # the real retransmission


def test_rfc2543_cancel_matches_its_invite() -> None:
    layer = TransactionLayer()
    invite_key = answered(layer, old("INVITE"), 180)
    actions = layer.receive(old("CANCEL"), PEER, 0.1)
    (received,) = [a for a in actions if isinstance(a, RequestReceived)]
    assert received.cancels == invite_key
    target = layer.cancel_target(received.key)
    assert target is not None
    assert target.key == invite_key


def test_rfc2543_cancel_for_another_uri_targets_nothing() -> None:
    layer = TransactionLayer()
    answered(layer, old("INVITE"), 180)
    actions = layer.receive(old("CANCEL", uri="sip:carol@example.com"), PEER, 0.1)
    (received,) = [a for a in actions if isinstance(a, RequestReceived)]
    assert received.cancels is None


def test_rfc2543_key_found_from_the_header_fields_a_response_copies() -> None:
    """The tables answer from the request's Via, From, To, Call-ID and CSeq only (the edge's
    ``txn``): the key rebuilt from those names the transaction, whatever the Request-URI."""
    layer = TransactionLayer()
    invite = old("INVITE", via=OLD_VIA + ";branch=1234abcd")
    key = answered(layer, invite, 180)
    rebuilt = SipRequest.create(
        "INVITE", "sip:sessiond", [(n, v) for n, v in invite.headers if n != "Content-Length"]
    )
    assert layer.key_for(rebuilt) == key == server_key(invite)
    layer.respond(key, make_response(rebuilt, 200, to_tag="b1"), 0.1)
    assert layer.servers[key].state is ServerState.ACCEPTED


def test_a_reused_branch_with_another_call_id_is_a_new_request() -> None:
    """RFC 4475's cparam01/cparam02: one branch and sent-by, two REGISTERs. The second is
    no retransmission of the first: it reaches the TU, is answered through a transaction of
    its own, and its retransmissions get its own answer."""
    layer = TransactionLayer()
    via = "SIP/2.0/UDP saturn.example.com:5060;branch=z9hG4bKkdjuw"
    first = old("REGISTER", via=via, call_id="cparam01", seq=2)
    second = old("REGISTER", via=via, call_id="cparam02", seq=3, from_tag="b")
    first_key = answered(layer, first, 405)
    actions = layer.receive(second, ("192.0.2.10", 5060), 0.1)
    (received,) = actions
    assert isinstance(received, RequestReceived)
    second_key = received.key
    assert second_key != first_key
    assert layer.key_for(second) == second_key
    assert layer.key_for(first) == first_key
    layer.respond(second_key, make_response(second, 405, to_tag="t2"), 0.1)
    again = layer.receive(second, ("192.0.2.10", 5060), 0.2)
    assert [(a.message.call_id, a.peer) for a in again if isinstance(a, Send)] == [
        ("cparam02", ("192.0.2.10", 5060))
    ]
    # once the first is gone, the second's key still resolves to it
    del layer.servers[first_key]
    assert layer.key_for(second) == second_key
    assert layer.key_for(first) == first_key  # (a new first would take the plain key)


def test_answers_tells_a_stored_answer_of_another_request() -> None:
    via = "SIP/2.0/UDP saturn.example.com:5060;branch=z9hG4bKkdjuw"
    first = old("REGISTER", via=via, call_id="cparam01", seq=2)
    second = old("REGISTER", via=via, call_id="cparam02", seq=3)
    stored = make_response(first, 405, to_tag="t")
    assert answers(stored, first)
    assert not answers(stored, second)


def test_unhandled_methods_get_405_when_known_and_501_otherwise() -> None:
    assert unhandled_status("REGISTER") == (405, "Method Not Allowed")
    assert unhandled_status("SUBSCRIBE")[0] == 405
    assert unhandled_status("FROBNICATE") == (501, "Not Implemented")
    assert unhandled_status("register")[0] == 501  # methods are case-sensitive (7.1)
    resp = not_handled(old("FROBNICATE"), "INVITE, ACK", to_tag="t")
    assert isinstance(resp, SipResponse)
    assert (resp.status, resp.header("allow"), resp.to_tag) == (501, "INVITE, ACK", "t")


@pytest.mark.parametrize(
    ("accept", "ok"),
    [
        (None, True),  # no Accept: application/sdp (20.1)
        ("application/sdp", True),
        ("text/plain, Application/SDP;level=1", True),
        ("application/*", True),
        ("*/*", True),
        ("text/plain", False),
        ("", False),  # an empty Accept admits nothing (20.1)
        ("application/sdp;q=0, text/plain", False),
        ("application/sdp;q=0.5", True),
    ],
)
def test_accept(accept: str | None, ok: bool) -> None:
    req = old("INVITE")
    if accept is not None:
        req = req.add_header("Accept", accept)
    assert accepts(req, "application/sdp") is ok
    if ok:
        check_accept(req, "application/sdp")
    else:
        with pytest.raises(SipParseError) as exc:
            check_accept(req, "application/sdp")
        assert exc.value.status == 406
        assert exc.value.headers == (("Accept", "application/sdp"),)


def test_allow_lists_exactly_the_methods_the_edge_and_the_default_table_handle(
    default_table: Table,
) -> None:
    """Allow (every place it is built uses ALLOWED) names INVITE, OPTIONS (answered by the
    edge) and the methods that become events, and the default table handles each event."""
    assert ALLOWED == ", ".join(HANDLED_METHODS)
    assert set(HANDLED_METHODS) == {"INVITE", "OPTIONS", *REQUEST_EVENTS}
    handled = {event for (_, _, event) in default_table.entries}
    for method in HANDLED_METHODS:
        if method != "OPTIONS":
            event = REQUEST_EVENTS.get(method, "Invite")
            assert event in handled, method
    assert "ReInvite" in handled
    assert not {"REGISTER", "SUBSCRIBE", "MESSAGE", "PUBLISH"} & set(HANDLED_METHODS)
