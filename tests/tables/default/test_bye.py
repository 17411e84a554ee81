"""Ending an established call in the default table: the far end's BYE (in either role, and
in the middle of an offer/answer exchange), our BYE when the application hangs up, its 200,
its timeout, and both sides hanging up at once."""

from __future__ import annotations

import pytest

from sessiond.core.types import Outcome

from .flow import Call, app_event, media, one, path, published, sip, timers


@pytest.mark.parametrize("role", ["UAS", "UAC"])
def test_their_bye_is_answered_and_ends_the_call(role: str) -> None:
    call = Call.established(role)
    verdict = call.on("Bye", txn="z9hG4bK.bye")
    assert call.state == "Terminated"
    assert verdict.terminal
    assert path(verdict) == [("Established", "Bye", "Terminated")]
    reply = one(verdict, "edge", "respond")
    assert (reply["code"], reply["txn"]) == (200, "z9hG4bK.bye")
    assert media(verdict) == ["destroy"]
    assert published(verdict) == ["Ended"]
    ended = app_event(verdict, "Ended")
    assert (ended["end_code"], ended["end_reason"]) == ("200", "remote hangup")


def test_their_bye_stops_the_session_timer() -> None:
    call = Call.established(**{"timer.SessionExpired": "t5"})
    verdict = call.on("Bye", txn="b")
    assert one(verdict, "timer", "cancel") == {
        "sid": call["sid"],
        "event": "SessionExpired",
        "epoch": "t5",
    }
    assert call["timer.SessionExpired"] == ""


def test_their_bye_before_our_200_is_acked_ends_the_call() -> None:
    call = Call.established(state="Answering")
    verdict = call.on("Bye", txn="b")
    assert call.state == "Terminated"
    assert timers(verdict) == [("cancel", "AckTimeout")]


@pytest.mark.parametrize("role", ["UAS", "UAC"])
def test_the_application_hangs_up_with_bye(role: str) -> None:
    call = Call.established(role)
    verdict = call.on("Hangup")
    assert call.state == "Terminating"
    bye = one(verdict, "edge", "bye")
    assert (bye["cseq"], bye["call_id"], bye["remote_tag"]) == (4, "c@h", "r")
    assert call["local_cseq"] == "4"
    assert (call["end_code"], call["end_reason"]) == ("200", "local hangup")
    assert published(verdict) == []  # Ended comes with the BYE's answer
    assert timers(verdict) == [("arm", "ByeTimeout")]


def test_the_answer_to_our_bye_ends_the_call() -> None:
    call = Call.established()
    call.on("Hangup")
    verdict = call.on("ByeDone", code=200)
    assert call.state == "Terminated"
    assert media(verdict) == ["destroy"]
    assert published(verdict) == ["Ended"]
    assert timers(verdict) == [("cancel", "ByeTimeout")]


def test_no_answer_to_our_bye_ends_the_call_anyway() -> None:
    call = Call.established()
    call.on("Hangup")
    verdict = call.timeout()
    assert call.state == "Terminated"
    assert media(verdict) == ["destroy"]
    assert published(verdict) == ["Ended"]


def test_byes_crossing_answer_theirs_and_wait_for_ours() -> None:
    call = Call.established()
    call.on("Hangup")
    verdict = call.on("Bye", txn="b")
    assert call.state == "Terminating"
    assert sip(verdict) == ["respond 200"]
    assert media(verdict) == []
    assert call.on("Hangup").outcome is Outcome.IGNORED


def test_hanging_up_while_answering_their_reinvite_refuses_it_first() -> None:
    call = Call.established(state="Reanswering")
    verdict = call.on("Hangup")
    assert call.state == "Terminating"
    assert sip(verdict) == ["respond 487", "bye"]


def test_the_application_hangs_up_before_the_ack_bye_waits_for_it() -> None:
    call = Call.established(state="Answering")
    verdict = call.on("Hangup")
    assert call.state == "Answering"  # RFC 3261 15: no BYE before the ACK
    assert sip(verdict) == []
    assert call["cond.hangup_pending"] == "1"
    ack = call.on("Ack")
    assert call.state == "Terminating"
    assert sip(ack) == ["bye"]


def test_no_rtp_hangs_up() -> None:
    call = Call.established()
    verdict = call.on("RtpTimeout")
    assert call.state == "Terminating"
    assert sip(verdict) == ["bye"]
    assert (call["end_code"], call["end_reason"]) == ("408", "no RTP received")
