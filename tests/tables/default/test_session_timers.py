"""Session timers (RFC 4028) in the default table: the interval and the refresher taken
from the INVITE or the 2xx, the timer started once the call is established, our refresh by
re-INVITE at half the interval, the far end's refresh (re-INVITE or UPDATE) restarting our
expiry timer, and the BYE when no refresh came."""

from __future__ import annotations

from sessiond.core.types import Outcome

from .flow import (
    NEW_SDP,
    OUR_SDP,
    THEIR_SDP,
    Call,
    headers,
    one,
    published,
    sip,
    timers,
)


def answered_uas(supported: str) -> Call:
    """An incoming call asking for 1800 s, answered and ACKed."""
    call = Call("UAS")
    call.on("Invite", sdp=THEIR_SDP, txn="t", session_expires="1800", supported=supported)
    call.on("MediaReady", sdp=OUR_SDP, media_node="m1")
    return call


def test_the_200_says_who_refreshes_and_the_ack_starts_the_expiry_timer() -> None:
    call = answered_uas(supported="timer")
    accepted = call.on("AcceptCall")
    respond = one(accepted, "edge", "respond")
    assert headers(respond) == {"Session-Expires": "1800;refresher=uac", "Require": "timer"}
    assert (call["session_expires"], call["refresher"]) == ("1800", "them")
    ack = call.on("Ack")
    arm = [c.data for c in ack.commands if c.name == "arm"]
    assert [a["event"] for a in arm] == ["SessionExpired"]
    assert arm[0]["due"] == call.at + 1800 - 32  # RFC 4028 10: interval - min(32, I/3)
    assert call["timer.SessionExpired"] == arm[0]["epoch"]


def test_we_refresh_when_the_caller_does_not_support_timers() -> None:
    call = answered_uas(supported="")
    call.on("AcceptCall")
    ack = call.on("Ack")
    assert call["refresher"] == "us"
    arm = one(ack, "timer", "arm")
    assert (arm["event"], arm["due"]) == ("RefreshDue", call.at + 900)


def test_our_refresh_is_a_reinvite_with_the_same_direction() -> None:
    call = Call.established(session_expires="1800", refresher="us", **{"timer.RefreshDue": "t5"})
    due = call.timer("RefreshDue")
    assert call.state == "Reoffering"
    assert one(due, "media", "reoffer")["direction"] == "sendrecv"
    assert call["reoffer"] == "refresh"
    ready = call.on("MediaReady", sdp=NEW_SDP, media_node="m1")
    reinvite = one(ready, "edge", "request")
    assert reinvite["method"] == "INVITE"
    assert headers(reinvite) == {"Session-Expires": "1800;refresher=uac", "Min-SE": "90"}
    answer = {"code": 200, "method": "INVITE", "cseq": 4, "sdp": THEIR_SDP}
    done = call.on("Answered", session_expires="1800;refresher=uac", **answer)
    assert call.state == "Established"
    assert published(done) == []  # a refresh is no hold change
    assert [t for t in timers(done) if t[1] == "RefreshDue"] == [
        ("cancel", "RefreshDue"),
        ("arm", "RefreshDue"),
    ]


def test_a_refused_refresh_keeps_the_session() -> None:
    call = Call.established(reoffer="refresh", reinvite_cseq="4", state="Reinviting")
    verdict = call.on("Rejected", code=488, method="INVITE", cseq=4)
    assert call.state == "Established"
    assert published(verdict) == []
    assert call["reoffer"] == ""


def test_their_refresh_by_reinvite_restarts_our_expiry_timer() -> None:
    call = Call.established(
        session_expires="1800", refresher="them", **{"timer.SessionExpired": "t5"}
    )
    verdict = call.on("ReInvite", sdp=THEIR_SDP, txn="t", session_expires="1800;refresher=uac")
    assert timers(verdict)[:2] == [("cancel", "SessionExpired"), ("arm", "SessionExpired")]
    assert call["timer.SessionExpired"] == "t8"


def test_their_refresh_by_update_without_sdp_is_answered_at_once() -> None:
    call = Call.established(
        session_expires="1800", refresher="them", **{"timer.SessionExpired": "t5"}
    )
    verdict = call.on("Update", txn="u", session_expires="1800;refresher=uac", supported="timer")
    assert call.state == "Established"
    reply = one(verdict, "edge", "respond")
    assert (reply["code"], reply["txn"]) == (200, "u")
    assert headers(reply) == {"Session-Expires": "1800;refresher=uac", "Require": "timer"}
    assert timers(verdict) == [("cancel", "SessionExpired"), ("arm", "SessionExpired")]


def test_no_refresh_in_time_hangs_up() -> None:
    call = Call.established(
        session_expires="1800", refresher="them", **{"timer.SessionExpired": "t5"}
    )
    verdict = call.timer("SessionExpired")
    assert call.state == "Terminating"
    assert sip(verdict) == ["bye"]
    assert call["end_code"] == "408"


def test_an_expiry_timer_restarted_since_is_stale() -> None:
    call = Call.established(**{"timer.SessionExpired": "t6"})
    verdict = call.timer("SessionExpired", epoch="t5")
    assert verdict.outcome is Outcome.IGNORED
    assert call.state == "Established"


def test_the_uac_takes_the_refresher_from_the_2xx() -> None:
    call = Call("UAC", local_cseq="0")
    call.on("MakeCall", target="sip:them@192.0.2.1")
    call.on("MediaReady", sdp=OUR_SDP, media_node="m1")
    answer = {"code": 200, "method": "INVITE", "cseq": 1, "to_tag": "t", "sdp": THEIR_SDP}
    verdict = call.on("Answered", session_expires="1200;refresher=uas", **answer)
    assert (call["session_expires"], call["refresher"]) == ("1200", "them")
    arm = [c.data for c in verdict.commands if c.name == "arm" and c.data["event"] != "NoAnswer"]
    assert [(a["event"], a["due"]) for a in arm] == [("SessionExpired", call.at + 1168)]


def test_no_session_expires_in_the_2xx_means_no_session_timer() -> None:
    call = Call("UAC", local_cseq="0")
    call.on("MakeCall", target="sip:them@192.0.2.1")
    call.on("MediaReady", sdp=OUR_SDP, media_node="m1")
    verdict = call.on("Answered", code=200, method="INVITE", cseq=1, to_tag="t", sdp=THEIR_SDP)
    assert timers(verdict) == [("cancel", "NoAnswer")]
    assert call["session_expires"] == ""
