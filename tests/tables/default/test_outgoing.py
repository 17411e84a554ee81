"""An outgoing call (UAC) in the default table: our offer from the media pool, the INVITE,
provisionals (with early media and reliable ones), the 2xx and its ACK, failures, the
digest challenge answered once, no answer, no response, and hanging up before the answer."""

from __future__ import annotations

import pytest

from sessiond.core.types import Outcome

from .flow import (
    OUR_SDP,
    THEIR_SDP,
    Call,
    app_event,
    headers,
    media,
    one,
    path,
    published,
    sip,
    timers,
)


def calling() -> Call:
    call = Call("UAC", local_cseq="0")
    call.on("MakeCall", target="sip:them@192.0.2.1")
    call.on("MediaReady", sdp=OUR_SDP, media_node="m1")
    return call


def test_make_call_asks_the_pool_for_an_offer() -> None:
    call = Call("UAC", local_cseq="0")
    verdict = call.on("MakeCall", target="sip:them@192.0.2.1")
    assert call.state == "Preparing"
    assert one(verdict, "media-pool", "create") == {"media_id": call["media_id"], "mode": "offer"}
    assert sip(verdict) == []
    assert timers(verdict) == [("arm", "MediaTimeout")]
    assert call["session_expires"] == "1800"  # RFC 4028: we ask for session timers


def test_our_offer_goes_out_in_the_invite() -> None:
    call = Call("UAC", local_cseq="0")
    call.on("MakeCall", target="sip:them@192.0.2.1")
    verdict = call.on("MediaReady", sdp=OUR_SDP, media_node="m1")
    assert call.state == "Calling"
    invite = one(verdict, "edge", "invite")
    assert (invite["cseq"], invite["sdp"], invite["call_id"]) == (1, OUR_SDP, "c@h")
    assert headers(invite) == {"Session-Expires": "1800", "Min-SE": "90"}
    assert (call["invite_cseq"], call["media_node"]) == ("1", "m1")
    assert timers(verdict) == [("cancel", "MediaTimeout"), ("arm", "NoAnswer")]


def test_no_media_node_in_time_fails_the_call() -> None:
    call = Call("UAC", local_cseq="0")
    call.on("MakeCall", target="sip:them@192.0.2.1")
    verdict = call.timeout()
    assert call.state == "Terminated"
    assert sip(verdict) == []
    assert media(verdict) == ["destroy"]
    assert published(verdict) == ["Failed"]
    assert call["end_code"] == "500"


def test_a_provisional_rings_and_saves_the_remote_tag() -> None:
    call = calling()
    verdict = call.on("Provisional", code=180, to_tag="t1")
    assert call.state == "Early"
    assert call["remote_tag"] == "t1"
    assert published(verdict) == ["Ringing"]
    assert media(verdict) == []
    assert timers(verdict) == [("cancel", "NoAnswer"), ("arm", "NoAnswer")]


def test_a_183_with_sdp_plays_early_media() -> None:
    call = calling()
    verdict = call.on("Provisional", code=183, to_tag="t1", sdp=THEIR_SDP)
    update = one(verdict, "media", "update")
    assert (update["remote_sdp"], update["answer"]) == (THEIR_SDP, True)
    assert call["remote_sdp"] == THEIR_SDP


def test_a_reliable_provisional_is_pracked() -> None:
    call = calling()
    verdict = call.on("Provisional", code=180, to_tag="t1", require="100rel", rseq="5", cseq=1)
    prack = one(verdict, "edge", "request")
    assert prack["method"] == "PRACK"
    assert headers(prack) == {"RAck": "5 1 INVITE"}
    assert prack["cseq"] == 2
    assert call.on("PrackResponse", code=200).outcome is Outcome.IGNORED


def test_the_2xx_is_acked_and_establishes_the_call() -> None:
    call = calling()
    call.on("Provisional", code=180, to_tag="t1")
    verdict = call.on(
        "Answered", code=200, method="INVITE", cseq=1, to_tag="t1", sdp=THEIR_SDP, contact="c"
    )
    assert call.state == "Established"
    assert path(verdict) == [("Early", "Answered", "Established")]
    ack = one(verdict, "edge", "ack")
    assert (ack["cseq"], ack["remote_tag"], ack["remote_target"]) == (1, "t1", "c")
    update = one(verdict, "media", "update")
    assert (update["remote_sdp"], update["answer"]) == (THEIR_SDP, True)
    assert published(verdict) == ["Answered", "Established"]
    assert app_event(verdict, "Answered")["code"] == 200
    assert timers(verdict) == [("cancel", "NoAnswer")]


def test_a_retransmitted_2xx_is_acked_again() -> None:
    call = calling()
    call.on("Answered", code=200, method="INVITE", cseq=1, to_tag="t1", sdp=THEIR_SDP)
    again = call.on("Answered", code=200, method="INVITE", cseq=1, to_tag="t1", sdp=THEIR_SDP)
    assert call.state == "Established"
    assert sip(again) == ["ack"]
    assert published(again) == []


@pytest.mark.parametrize("code", [404, 486, 503, 603])
def test_a_final_failure_ends_the_call_with_its_code(code: int) -> None:
    call = calling()
    verdict = call.on("Rejected", code=code, reason="No")
    assert call.state == "Terminated"
    assert verdict.terminal
    assert sip(verdict) == []  # the edge ACKs a non-2xx final response itself
    assert media(verdict) == ["destroy"]
    assert published(verdict) == ["Failed"]
    assert app_event(verdict, "Failed")["code"] == code
    assert call["end_code"] == str(code)


def test_a_challenge_is_answered_once_with_credentials() -> None:
    call = calling()
    challenge = {"code": 407, "auth_user": "alice", "proxy_authenticate": ["Digest x"]}
    verdict = call.on("Rejected", **challenge)
    assert call.state == "Calling"
    invite = one(verdict, "edge", "invite")
    assert (invite["cseq"], invite["challenge_code"]) == (2, 407)
    assert invite["challenges"] == ["Digest x"]
    again = call.on("Rejected", **challenge)
    assert call.state == "Terminated"
    assert call["end_code"] == "407"
    assert sip(again) == []


def test_no_answer_in_time_cancels_and_the_487_ends_the_call() -> None:
    call = calling()
    call.on("Provisional", code=180, to_tag="them")
    verdict = call.timeout()
    assert call.state == "Cancelling"
    assert one(verdict, "edge", "cancel")["cseq"] == 1
    assert call["end_code"] == "408"
    ended = call.on("Rejected", code=487)
    assert call.state == "Terminated"
    assert media(ended) == ["destroy"]
    assert published(ended) == ["Ended"]
    assert call["end_code"] == "408"  # the 487 answers our CANCEL: the cause stays


def test_no_answer_and_no_1xx_waits_for_one_before_cancelling() -> None:
    """RFC 3261 9.1: a CANCEL only after a provisional response."""
    call = calling()
    verdict = call.timeout()
    assert call.state == "Withdrawing"
    assert sip(verdict) == []
    assert call["end_code"] == "408"
    later = call.on("Provisional", code=180, to_tag="them")
    assert call.state == "Cancelling"
    assert sip(later) == ["cancel"]


def test_no_response_at_all_fails_the_call() -> None:
    call = calling()
    verdict = call.on("TransactionTimeout", method="INVITE")
    assert call.state == "Terminated"
    assert call["end_code"] == "408"
    assert published(verdict) == ["Failed"]


def test_hanging_up_before_the_answer_cancels() -> None:
    call = calling()
    call.on("Provisional", code=180, to_tag="t1")
    verdict = call.on("Hangup")
    assert call.state == "Cancelling"
    assert sip(verdict) == ["cancel"]
    assert call["end_code"] == "487"
    assert call.on("Provisional", code=180).outcome is Outcome.IGNORED


def test_a_2xx_crossing_our_cancel_is_acked_then_hung_up() -> None:
    call = calling()
    call.on("Hangup")
    verdict = call.on("Answered", code=200, method="INVITE", cseq=1, to_tag="t1")
    assert call.state == "Terminating"
    assert sip(verdict) == ["ack", "bye"]
    bye = one(verdict, "edge", "bye")
    assert (bye["cseq"], bye["remote_tag"]) == (2, "t1")


def test_a_call_placed_for_a_refer_reports_to_its_peer() -> None:
    call = Call("UAC", local_cseq="0", peer="transferee-sid")
    call.on("MakeCall", target="sip:them@192.0.2.1")
    call.on("MediaReady", sdp=OUR_SDP, media_node="m1")
    verdict = call.on("Answered", code=200, method="INVITE", cseq=1, to_tag="t1", sdp=THEIR_SDP)
    report = one(verdict, "session", "TransferProgress")
    assert report == {"sid": "transferee-sid", "data": {"code": 200, "from_sid": call["sid"]}}
