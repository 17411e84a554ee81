"""RFC 3261 rules the default table once broke: every request is answered (a NOTIFY while
our BYE is out; their pending re-INVITE or UPDATE when their BYE comes; the INVITE when a
BYE ends the early dialog), and a 481 or 408 to a request of ours inside the dialog ends
it (12.2.1.2)."""

from __future__ import annotations

import pytest

from .flow import OUR_SDP, THEIR_SDP, Call, one, published, sip, timers


def test_a_notify_while_our_bye_is_out_is_answered_200() -> None:
    """RFC 3261 8.2 / RFC 6665 4.1.3: the transfer report after our hangup gets its answer
    (the ignore entry left it unanswered: the worker answers only when no entry exists)."""
    call = Call.established()
    call.on("Hangup")
    assert call.state == "Terminating"
    verdict = call.on("Notify", code=200, txn="z9hG4bK.notify")
    reply = one(verdict, "edge", "respond")
    assert (reply["code"], reply["txn"]) == (200, "z9hG4bK.notify")
    assert call.state == "Terminating"


@pytest.mark.parametrize("request_event", ["ReInvite", "Update"])
def test_their_bye_while_we_answer_their_offer_answers_both(request_event: str) -> None:
    """RFC 3261 15.1.2: 200 to the BYE and 487 to the re-INVITE or UPDATE still pending."""
    call = Call.established()
    call.on(request_event, sdp=THEIR_SDP, txn="z9hG4bK.re", contact="c2")
    assert call.state == "Reanswering"
    verdict = call.on("Bye", txn="z9hG4bK.bye")
    answers = [(c.data["code"], c.data["txn"]) for c in verdict.commands if c.name == "respond"]
    assert answers == [(200, "z9hG4bK.bye"), (487, "z9hG4bK.re")]
    assert call.state == "Terminated"
    assert published(verdict) == ["Ended"]


@pytest.mark.parametrize("deferred", [False, True], ids=["Ringing", "Deferred"])
def test_a_bye_on_the_early_dialog_gets_200_and_the_invite_487(deferred: bool) -> None:
    """RFC 3261 15.1.2: the caller's BYE on the early dialog our 180 made: 200 to it, 487 to
    the INVITE, the call ends (there was no entry: the worker answered the BYE 500 and the
    INVITE never got a final response)."""
    call = Call("UAS")
    call.on("Invite", sdp=THEIR_SDP, txn="z9hG4bK.inv")
    if deferred:
        call.on("DeferCall")
    state = call.state
    verdict = call.on("Bye", txn="z9hG4bK.bye")
    answers = [(c.data["code"], c.data["txn"]) for c in verdict.commands if c.name == "respond"]
    assert answers == [(200, "z9hG4bK.bye"), (487, "z9hG4bK.inv")]
    assert call.state == "Terminated"
    assert verdict.terminal
    assert published(verdict) == ["Ended"]
    assert (call["end_code"], call["end_reason"]) == ("487", "remote hangup before answer")
    timeout = "DeferTimeout" if state == "Deferred" else "RingTimeout"
    assert timers(verdict) == [("cancel", timeout)]


RESPONSES = [
    ("NotifyResponse", "NOTIFY"),
    ("InfoResponse", "INFO"),
    ("ReferResponse", "REFER"),
    ("PrackResponse", "PRACK"),
]


@pytest.mark.parametrize(("event", "method"), RESPONSES)
def test_a_481_to_our_request_in_the_dialog_ends_it_without_bye(event: str, method: str) -> None:
    """RFC 3261 12.2.1.2: the far end has no such dialog: end it, no BYE to send."""
    call = Call.established("UAC")
    verdict = call.on(event, code=481, method=method)
    assert call.state == "Terminated"
    assert sip(verdict) == []
    assert published(verdict)[-1] == "Ended"
    assert (call["end_code"], call["end_reason"]) == ("481", "the far end lost the dialog")


@pytest.mark.parametrize(("event", "method"), RESPONSES)
def test_a_408_to_our_request_in_the_dialog_ends_it_with_bye(event: str, method: str) -> None:
    """RFC 3261 12.2.1.2: a 408 ends the dialog too; it still exists, so say BYE."""
    call = Call.established("UAC")
    verdict = call.on(event, code=408, method=method)
    assert call.state == "Terminating"
    assert sip(verdict) == ["bye"]
    assert call["end_code"] == "408"


def test_a_481_while_we_answer_their_offer_answers_it_487_first() -> None:
    call = Call.established()
    call.on("ReInvite", sdp=THEIR_SDP, txn="z9hG4bK.re", contact="c2")
    verdict = call.on("NotifyResponse", code=481, method="NOTIFY")
    assert sip(verdict) == ["respond 487"]
    assert one(verdict, "edge", "respond")["txn"] == "z9hG4bK.re"
    assert call.state == "Terminated"


@pytest.mark.parametrize("code", [200, 403])
def test_other_answers_to_our_notify_keep_the_dialog(code: int) -> None:
    call = Call.established()
    verdict = call.on("NotifyResponse", code=code, method="NOTIFY")
    assert call.state == "Established"
    assert sip(verdict) == []


def calling() -> Call:
    """Our INVITE is out; no provisional response has come."""
    call = Call("UAC", local_cseq="0")
    call.on("MakeCall", target="sip:them@192.0.2.1")
    call.on("MediaReady", sdp=OUR_SDP, media_node="m1")
    assert call.state == "Calling"
    return call


def test_a_hangup_before_any_provisional_holds_the_cancel_back() -> None:
    """RFC 3261 9.1: no CANCEL before a provisional response; the first 1xx sends it."""
    call = calling()
    verdict = call.on("Hangup")
    assert sip(verdict) == []
    assert call.state == "Withdrawing"
    assert call["end_code"] == "487"
    first = call.on("Provisional", code=180, to_tag="t1")
    assert sip(first) == ["cancel"]
    assert one(first, "edge", "cancel")["cseq"] == 1
    assert call.state == "Cancelling"
    ended = call.on("Rejected", code=487, method="INVITE", cseq=1)
    assert call.state == "Terminated"
    assert published(ended) == ["Ended"]


def test_a_held_back_cancel_goes_when_only_a_100_trying_came() -> None:
    """Timer B (32 s) did not end the INVITE, so a 100 Trying came: CANCEL then."""
    call = calling()
    call.on("Hangup")
    verdict = call.timeout()
    assert sip(verdict) == ["cancel"]
    assert call.state == "Cancelling"


def test_a_final_response_after_a_held_back_cancel_needs_none() -> None:
    call = calling()
    call.on("Hangup")
    verdict = call.on("Rejected", code=486, method="INVITE", cseq=1)
    assert sip(verdict) == []
    assert call.state == "Terminated"
    assert published(verdict) == ["Ended"]
    assert call["end_code"] == "487"
