"""Timers that escaped cancellation in the default table: a state timeout armed in an
earlier state (its epoch is not the session's) is ignored wherever the call is now, while
the current one fires; a named timer restarted or stopped since is ignored too."""

from __future__ import annotations

import pytest

from sessiond.core.types import Outcome

from .flow import OUR_SDP, THEIR_SDP, Call, sip


def answering() -> Call:
    call = Call("UAS")
    call.on("Invite", sdp=THEIR_SDP, txn="t")  # RingTimeout armed at epoch 1
    call.on("MediaReady", sdp=OUR_SDP, media_node="m1")
    call.on("AcceptCall")  # AckTimeout armed at epoch 3
    return call


def test_a_ring_timeout_armed_before_the_answer_is_ignored() -> None:
    call = answering()
    verdict = call.on("RingTimeout", epoch="1")
    assert verdict.outcome is Outcome.IGNORED
    assert call.state == "Answering"
    assert verdict.commands == ()


def test_the_current_states_timeout_still_fires() -> None:
    call = answering()
    assert call["epoch"] == "3"
    verdict = call.on("AckTimeout", epoch="3")
    assert call.state == "Terminating"
    assert sip(verdict) == ["bye"]


def test_an_ack_timeout_from_an_earlier_answer_is_ignored() -> None:
    call = answering()
    call.on("Ack")
    call.on("ReInvite", sdp=THEIR_SDP, txn="t2")
    call.on("MediaReady", sdp=OUR_SDP)
    assert call.state == "Reconfirming"  # AckTimeout again, armed at a later epoch
    assert call.on("AckTimeout", epoch="3").outcome is Outcome.IGNORED
    assert call.state == "Reconfirming"


@pytest.mark.parametrize("event", ["RingTimeout", "AckTimeout", "NoAnswer", "ByeTimeout"])
def test_any_old_timeout_is_ignored_in_an_established_call(event: str) -> None:
    call = Call.established()
    assert call.on(event, epoch="2").outcome is Outcome.IGNORED


def test_a_stopped_named_timer_is_ignored() -> None:
    call = Call.established(**{"timer.RefreshDue": "t5"})
    call.on("Bye", txn="b")  # timer.stop: the field is cleared
    assert call.timer("RefreshDue", epoch="t5").outcome is Outcome.IGNORED


def test_refresh_and_retry_while_ending_are_ignored() -> None:
    call = Call.established(state="Terminating", **{"timer.RefreshDue": "t5"})
    assert call.timer("RefreshDue").outcome is Outcome.IGNORED
    assert call.state == "Terminating"
