"""Hold and resume by re-INVITE (RFC 3264 8.4, RFC 3261 14) in the default table: ours (a
sendonly offer, then sendrecv; the ``hold`` field once the far end took it), theirs (by
re-INVITE or UPDATE), a refused hold, no answer to our re-INVITE, and glare (491)."""

from __future__ import annotations

from sessiond.core.types import Outcome

from .flow import (
    NEW_SDP,
    THEIR_SDP,
    Call,
    app_event,
    media,
    one,
    path,
    published,
    sip,
    timers,
)


def reinviting(why: str = "Hold", **fields: str) -> Call:
    """Our re-INVITE for ``why`` is out (re-INVITE CSeq 4)."""
    call = Call.established(**fields)
    call.on(why)
    call.on("MediaReady", sdp=NEW_SDP, media_node="m1")
    return call


# the far end's 2xx to our re-INVITE (CSeq 4)
ANSWER = {"code": 200, "method": "INVITE", "cseq": 4, "sdp": THEIR_SDP, "contact": "c2"}


def test_hold_asks_the_media_node_for_a_sendonly_offer() -> None:
    call = Call.established()
    verdict = call.on("Hold")
    assert call.state == "Reoffering"
    assert one(verdict, "media", "reoffer") == {
        "media_id": call["media_id"],
        "direction": "sendonly",
    }
    assert call["reoffer"] == "hold"
    assert call["hold"] == ""  # not yet: the far end has not taken it
    assert timers(verdict) == [("arm", "MediaTimeout")]


def test_the_new_offer_goes_out_in_a_reinvite() -> None:
    call = Call.established()
    call.on("Hold")
    verdict = call.on("MediaReady", sdp=NEW_SDP, media_node="m1")
    assert call.state == "Reinviting"
    request = one(verdict, "edge", "request")
    assert (request["method"], request["cseq"], request["sdp"]) == ("INVITE", 4, NEW_SDP)
    assert call["reinvite_cseq"] == "4"
    assert call["local_sdp"] == NEW_SDP
    assert timers(verdict) == [("cancel", "MediaTimeout"), ("arm", "ReinviteTimeout")]


def test_the_2xx_is_acked_and_the_hold_takes_effect() -> None:
    call = reinviting()
    verdict = call.on("Answered", **ANSWER)
    assert call.state == "Established"
    assert one(verdict, "edge", "ack")["cseq"] == 4
    assert one(verdict, "media", "update")["remote_sdp"] == THEIR_SDP
    assert call["hold"] == "local"
    assert call["reoffer"] == ""
    assert call["remote_target"] == "c2"
    assert published(verdict) == ["HoldChanged"]
    assert app_event(verdict, "HoldChanged")["hold"] == "local"


def test_resume_offers_sendrecv_and_clears_the_hold() -> None:
    call = Call.established(hold="local")
    offer = call.on("Resume")
    assert one(offer, "media", "reoffer")["direction"] == "sendrecv"
    call.on("MediaReady", sdp=NEW_SDP, media_node="m1")
    verdict = call.on("Answered", **ANSWER)
    assert call["hold"] == ""
    assert published(verdict) == ["HoldChanged"]


def test_a_late_2xx_for_an_older_reinvite_is_only_acked() -> None:
    call = reinviting()
    verdict = call.on("Answered", code=200, method="INVITE", cseq=2, sdp=THEIR_SDP)
    assert call.state == "Reinviting"
    assert sip(verdict) == ["ack"]
    assert one(verdict, "edge", "ack")["cseq"] == 2
    assert call["hold"] == ""


def test_a_refused_hold_leaves_the_call_as_it_was() -> None:
    call = reinviting()
    verdict = call.on("Rejected", code=488, method="INVITE", cseq=4)
    assert call.state == "Established"
    assert one(verdict, "media", "update")["remote_sdp"] == THEIR_SDP  # the old answer again
    assert published(verdict) == ["HoldFailed"]
    assert (call["hold"], call["reoffer"]) == ("", "")


def test_408_to_our_reinvite_ends_the_dialog_with_bye() -> None:
    call = reinviting()
    verdict = call.on("Rejected", code=408, method="INVITE", cseq=4)
    assert call.state == "Terminating"
    assert sip(verdict) == ["bye"]
    assert call["end_reason"] == "re-INVITE failed"


def test_481_to_our_reinvite_ends_the_call_without_bye() -> None:
    call = reinviting()
    verdict = call.on("Rejected", code=481, method="INVITE", cseq=4)
    assert call.state == "Terminated"
    assert sip(verdict) == []
    assert media(verdict) == ["destroy"]
    assert published(verdict) == ["Ended"]


def test_no_answer_to_our_reinvite_ends_the_dialog() -> None:
    call = reinviting()
    verdict = call.timeout()
    assert call.state == "Terminating"
    assert sip(verdict) == ["bye"]
    assert call["end_code"] == "408"


def test_their_reinvite_puts_us_on_hold() -> None:
    call = Call.established()
    verdict = call.on("ReInvite", sdp=THEIR_SDP, held=True, txn="z9hG4bK.re", contact="c2")
    assert call.state == "Reanswering"
    assert call["hold"] == "remote"
    assert call["txn"] == "z9hG4bK.re"
    assert one(verdict, "media", "update")["remote_sdp"] == THEIR_SDP
    assert published(verdict) == ["HoldChanged"]
    assert app_event(verdict, "HoldChanged")["hold"] == "remote"
    assert call["cond.answering_update"] == "0"
    ready = call.on("MediaReady", sdp=NEW_SDP)
    assert call.state == "Reconfirming"
    reply = one(ready, "edge", "respond")
    assert (reply["code"], reply["sdp"], reply["txn"]) == (200, NEW_SDP, "z9hG4bK.re")
    ack = call.on("Ack")
    assert call.state == "Established"
    assert path(ack) == [("Reconfirming", "Ack", "Established")]
    assert timers(ack) == [("cancel", "AckTimeout")]


def test_their_reinvite_without_a_hold_change_is_no_hold_event() -> None:
    call = Call.established()
    verdict = call.on("ReInvite", sdp=THEIR_SDP, held=False, txn="t")
    assert call.state == "Reanswering"
    assert published(verdict) == []
    assert call["hold"] == ""


def test_their_update_hold_is_answered_with_no_ack_to_wait_for() -> None:
    call = Call.established(hold="local")
    call.on("Update", sdp=THEIR_SDP, held=True, txn="z9hG4bK.up")
    assert call["hold"] == "both"
    verdict = call.on("MediaReady", sdp=NEW_SDP)
    assert call.state == "Established"
    assert sip(verdict) == ["respond 200"]


def test_their_offerless_reinvite_gets_our_offer_and_the_ack_answers() -> None:
    call = Call.established()
    verdict = call.on("ReInvite", txn="t")
    assert one(verdict, "media", "reoffer")["direction"] == "sendrecv"
    call.on("MediaReady", sdp=NEW_SDP)
    ack = call.on("Ack", sdp=THEIR_SDP)
    assert call.state == "Established"
    assert one(ack, "media", "update")["remote_sdp"] == THEIR_SDP


def test_an_offer_we_cannot_take_is_refused_with_488() -> None:
    call = Call.established()
    call.on("ReInvite", sdp=THEIR_SDP, txn="t")
    verdict = call.on("MediaFailed", code=488)
    assert call.state == "Established"
    assert sip(verdict) == ["respond 488"]


def test_a_second_offer_while_answering_gets_500_with_retry_after() -> None:
    call = Call.established()
    call.on("ReInvite", sdp=THEIR_SDP, txn="t1")
    verdict = call.on("ReInvite", sdp=THEIR_SDP, txn="t2")
    reply = one(verdict, "edge", "respond")
    assert (reply["code"], reply["txn"], reply["headers"]) == (500, "t2", [["Retry-After", "1"]])
    assert call.state == "Reanswering"


def test_glare_their_reinvite_while_ours_is_out_gets_491() -> None:
    call = reinviting()
    verdict = call.on("ReInvite", sdp=THEIR_SDP, txn="t")
    assert call.state == "Reinviting"
    reply = one(verdict, "edge", "respond")
    assert (reply["code"], reply["txn"]) == (491, "t")


def test_glare_a_491_to_ours_retries_after_a_delay() -> None:
    call = reinviting(role="UAC")
    verdict = call.on("Rejected", code=491, method="INVITE", cseq=4)
    assert call.state == "Established"
    assert media(verdict) == ["update"]  # back to the answer we had
    arm = one(verdict, "timer", "arm")
    assert arm["event"] == "ReinviteRetry"
    assert 2.1 <= float(arm["due"]) - call.at <= 4.0  # RFC 3261 14.1: the Call-ID owner
    assert call["reoffer"] == "hold"
    retry = call.timer("ReinviteRetry")
    assert call.state == "Reoffering"
    assert one(retry, "media", "reoffer")["direction"] == "sendonly"  # still the hold


def test_glare_as_uas_retries_within_two_seconds() -> None:
    call = reinviting(role="UAS")
    verdict = call.on("Rejected", code=491, method="INVITE", cseq=4)
    assert 0 <= float(one(verdict, "timer", "arm")["due"]) - call.at <= 2.0


def test_a_retry_due_during_another_exchange_is_ignored() -> None:
    call = reinviting(**{"timer.ReinviteRetry": "t3"})
    assert call.on("ReinviteRetry", epoch="t3").outcome is Outcome.IGNORED
