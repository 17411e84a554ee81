"""An incoming call (UAS) in the default table: INVITE, 180 and our media, the answer (200,
then the ACK), early media (183), CANCEL while ringing, no answer in time, reliable
provisionals, the late offer and the 422 / 481 refusals of the INVITE itself."""

from __future__ import annotations

from typing import Any

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


def ringing(**invite: Any) -> Call:
    call = Call("UAS")
    data = {"sdp": THEIR_SDP, "txn": "z9hG4bK.inv", **invite}
    call.on("Invite", **data)
    return call


def test_an_invite_rings_and_asks_a_media_node_for_the_answer() -> None:
    call = Call("UAS")
    verdict = call.on("Invite", sdp=THEIR_SDP, txn="z9hG4bK.inv")
    assert call.state == "Ringing"
    assert path(verdict) == [("Idle", "Invite", "Ringing")]
    assert sip(verdict) == ["respond 180"]
    assert one(verdict, "edge", "respond")["txn"] == "z9hG4bK.inv"
    create = one(verdict, "media-pool", "create")
    assert create == {
        "media_id": call["media_id"],
        "mode": "answer",
        "remote_sdp": THEIR_SDP,
        "quiet": True,  # no RTP before our answer is out
    }
    assert published(verdict) == ["IncomingCall"]
    assert timers(verdict) == [("arm", "RingTimeout")]
    assert one(verdict, "timer", "arm")["due"] == call.at + 180
    assert call["remote_sdp"] == THEIR_SDP
    assert call["epoch"] == "1"


def test_media_then_accept_answers_with_200_and_our_sdp() -> None:
    call = ringing()
    ready = call.on("MediaReady", sdp=OUR_SDP, media_node="m1")
    assert call.state == "Ringing"
    assert ready.commands == ()  # a self-loop: the ring timer keeps running
    assert call["cond.media_ready"] == "1"
    accepted = call.on("AcceptCall")
    assert path(accepted) == [
        ("Ringing", "AcceptCall", "Ringing"),
        ("Ringing", "ReadyToAnswer", "Answering"),
    ]
    respond = one(accepted, "edge", "respond")
    assert (respond["code"], respond["sdp"], respond["txn"]) == (200, OUR_SDP, "z9hG4bK.inv")
    assert one(accepted, "media", "answered") == {"media_id": call["media_id"]}
    assert published(accepted) == ["Answered"]
    assert timers(accepted) == [("cancel", "RingTimeout"), ("arm", "AckTimeout")]


def test_accept_before_the_media_waits_for_it() -> None:
    call = ringing()
    accepted = call.on("AcceptCall")
    assert call.state == "Ringing"
    assert sip(accepted) == []
    ready = call.on("MediaReady", sdp=OUR_SDP, media_node="m1")
    assert call.state == "Answering"
    assert sip(ready) == ["respond 200"]


def test_the_ack_establishes_the_call() -> None:
    call = ringing()
    call.on("MediaReady", sdp=OUR_SDP, media_node="m1")
    call.on("AcceptCall")
    assert call["txn"] == "z9hG4bK.inv"
    verdict = call.on("Ack")
    assert call.state == "Established"
    assert call["txn"] == ""  # the ACK ended the INVITE's transaction: not kept in Redis
    assert published(verdict) == ["Established"]
    assert app_event(verdict, "Established")["state"] == "Established"
    assert timers(verdict) == [("cancel", "AckTimeout")]
    assert sip(verdict) == []
    assert call.on("Ack").outcome is Outcome.IGNORED  # the ACK of a retransmitted 200


def test_early_media_sends_183_with_our_sdp_once_it_exists() -> None:
    call = ringing()
    asked = call.on("Progress")
    assert sip(asked) == []
    ready = call.on("MediaReady", sdp=OUR_SDP, media_node="m1")
    assert path(ready)[-1] == ("Ringing", "SendProgress", "Ringing")
    respond = one(ready, "edge", "respond")
    assert (respond["code"], respond["sdp"]) == (183, OUR_SDP)
    assert call.state == "Ringing"


def test_cancel_while_ringing_answers_487_and_frees_the_media() -> None:
    call = ringing()
    verdict = call.on("Cancel")
    assert call.state == "Terminated"
    assert verdict.terminal
    assert sip(verdict) == ["respond 487"]
    assert media(verdict) == ["destroy"]
    assert published(verdict) == ["Ended"]
    assert app_event(verdict, "Ended")["end_code"] == "487"
    assert (call["end_code"], call["end_reason"]) == ("487", "cancelled")
    assert timers(verdict) == [("cancel", "RingTimeout")]


def test_cancel_after_the_200_changes_nothing() -> None:
    call = ringing()
    call.on("MediaReady", sdp=OUR_SDP, media_node="m1")
    call.on("AcceptCall")
    assert call.on("Cancel").outcome is Outcome.IGNORED
    assert call.state == "Answering"


def test_no_answer_in_time_is_480() -> None:
    call = ringing()
    verdict = call.timeout()
    assert call.state == "Terminated"
    assert sip(verdict) == ["respond 480"]
    assert media(verdict) == ["destroy"]
    assert call["end_code"] == "480"
    assert published(verdict) == ["Ended"]


def test_no_ack_for_our_200_hangs_up_with_bye() -> None:
    call = ringing()
    call.on("MediaReady", sdp=OUR_SDP, media_node="m1")
    call.on("AcceptCall")
    verdict = call.timeout()
    assert call.state == "Terminating"
    assert sip(verdict) == ["bye"]
    assert call["end_code"] == "408"
    assert timers(verdict) == [("cancel", "AckTimeout"), ("arm", "ByeTimeout")]


def test_a_late_offer_is_offered_in_the_200_and_answered_by_the_ack() -> None:
    call = Call("UAS")
    invite = call.on("Invite", txn="z9hG4bK.inv")
    assert one(invite, "media-pool", "create")["mode"] == "offer"
    assert sip(invite) == ["respond 180"]
    call.on("MediaReady", sdp=OUR_SDP, media_node="m1")
    call.on("AcceptCall")
    ack = call.on("Ack", sdp=THEIR_SDP)
    assert call.state == "Established"
    assert one(ack, "media", "update")["remote_sdp"] == THEIR_SDP


def test_reliable_provisionals_carry_100rel_and_the_prack_is_answered() -> None:
    call = Call("UAS")
    invite = call.on("Invite", sdp=THEIR_SDP, txn="z9hG4bK.inv", require="100rel")
    respond = one(invite, "edge", "respond")
    assert respond["reliable"] is True
    assert headers(respond) == {"Require": "100rel", "RSeq": "1"}
    prack = call.on("Prack", txn="z9hG4bK.prack")
    assert call.state == "Ringing"
    reply = one(prack, "edge", "respond")
    assert (reply["code"], reply["txn"]) == (200, "z9hG4bK.prack")


def test_a_session_interval_below_min_se_gets_422() -> None:
    call = Call("UAS")
    verdict = call.on("Invite", sdp=THEIR_SDP, txn="t", session_expires="30")
    assert call.state == "Terminated"
    respond = one(verdict, "edge", "respond")
    assert respond["code"] == 422
    assert headers(respond)["Min-SE"] == "90"
    assert media(verdict) == []
    assert call["end_code"] == "422"


def test_replaces_naming_no_dialog_of_ours_gets_481() -> None:
    call = Call("UAS")
    verdict = call.on("Invite", sdp=THEIR_SDP, txn="t", replaces="x@y;to-tag=a;from-tag=b")
    assert call.state == "Terminated"
    assert sip(verdict) == ["respond 481"]
    assert media(verdict) == []


def test_replaces_naming_our_dialog_takes_it_over_and_answers() -> None:
    call = Call("UAS")
    verdict = call.on("Invite", sdp=THEIR_SDP, txn="t", replaces="x", replaces_sid="other-sid")
    assert call.state == "Ringing"
    assert call["cond.accepted"] == "1"
    replaced = one(verdict, "session", "Replaced")
    assert replaced["sid"] == "other-sid"
    assert sip(verdict) == []  # no 180: answered as soon as the media is there
    ready = call.on("MediaReady", sdp=OUR_SDP, media_node="m1")
    assert sip(ready) == ["respond 200"]
