"""What the application decides about a ringing call, in the default table: reject with a
code, redirect (302 with its contacts), decline by hanging up, defer the decision (480 when
it does not come in time), or accept after deferring."""

from __future__ import annotations

import pytest

from .flow import OUR_SDP, THEIR_SDP, Call, app_event, media, one, published, sip, timers


def ringing() -> Call:
    call = Call("UAS")
    call.on("Invite", sdp=THEIR_SDP, txn="z9hG4bK.inv")
    call.on("MediaReady", sdp=OUR_SDP, media_node="m1")
    return call


@pytest.mark.parametrize("code", [403, 486, 603])
def test_reject_answers_with_the_applications_code(code: int) -> None:
    call = ringing()
    verdict = call.on("RejectCall", code=code)
    assert call.state == "Terminated"
    respond = one(verdict, "edge", "respond")
    assert (respond["code"], respond["txn"]) == (code, "z9hG4bK.inv")
    assert media(verdict) == ["destroy"]
    assert app_event(verdict, "Ended")["end_code"] == str(code)
    assert call["end_reason"] == "rejected"


def test_redirect_answers_302_with_the_contacts() -> None:
    call = ringing()
    verdict = call.on("RedirectCall", contacts=["sip:a@example.com", "sip:b@example.com"])
    assert call.state == "Terminated"
    respond = one(verdict, "edge", "respond")
    assert respond["code"] == 302
    assert respond["contacts"] == ["sip:a@example.com", "sip:b@example.com"]
    assert media(verdict) == ["destroy"]
    assert call["end_code"] == "302"


def test_a_single_contact_is_a_list_of_one() -> None:
    verdict = ringing().on("RedirectCall", contacts="sip:a@example.com")
    assert one(verdict, "edge", "respond")["contacts"] == ["sip:a@example.com"]


def test_hangup_while_ringing_declines_with_603() -> None:
    call = ringing()
    verdict = call.on("Hangup")
    respond = one(verdict, "edge", "respond")
    assert (respond["code"], respond["reason"]) == (603, "Decline")
    assert call.state == "Terminated"
    assert published(verdict) == ["Ended"]


def test_a_deferred_call_times_out_with_480() -> None:
    call = ringing()
    deferred = call.on("DeferCall")
    assert call.state == "Deferred"
    assert timers(deferred) == [("cancel", "RingTimeout"), ("arm", "DeferTimeout")]
    assert one(deferred, "timer", "arm")["due"] == call.at + 20
    verdict = call.timeout()
    assert call.state == "Terminated"
    assert sip(verdict) == ["respond 480"]
    assert call["end_reason"] == "the application did not answer in time"


def test_a_deferred_call_can_still_be_accepted() -> None:
    call = ringing()
    call.on("DeferCall")
    verdict = call.on("AcceptCall")
    assert call.state == "Answering"
    assert sip(verdict) == ["respond 200"]
    assert timers(verdict) == [("cancel", "DeferTimeout"), ("arm", "AckTimeout")]


def test_a_media_failure_before_the_answer_fails_the_call_with_its_code() -> None:
    call = Call("UAS")
    call.on("Invite", sdp=THEIR_SDP, txn="t")
    verdict = call.on("MediaFailed", code=488)
    assert call.state == "Terminated"
    assert sip(verdict) == ["respond 488"]
    assert published(verdict) == ["Failed"]
