"""A lost media node in the default table (beside tests/test_media_loss_table.py, which
covers the move's first steps): the moved call's re-INVITE answered (MediaMoved), refused or
impossible (BYE 503), and a loss before the answer (503 as UAS, CANCEL as UAC)."""

from __future__ import annotations

from typing import Any

from sessiond.core.types import Outcome

from .flow import NEW_SDP, OUR_SDP, SID, THEIR_SDP, Call, app_event, one, path, published, sip


def lost(node: str = "m1") -> dict[str, Any]:
    return {"media_node": node, "media_id": f"{SID}.m", "reason": "lost"}


def moving() -> Call:
    """An established call whose node m1 was lost: the new leg's offer (node m2) is out."""
    call = Call.established()
    call.on("MediaLost", **lost())
    call.on("MediaReady", sdp=NEW_SDP, media_node="m2")
    return call


def test_the_new_legs_offer_goes_out_in_a_reinvite() -> None:
    call = Call.established()
    call.on("MediaLost", **lost())
    assert (call.state, call["reoffer"], call["media_node"]) == ("Reoffering", "relocate", "")
    verdict = call.on("MediaReady", sdp=NEW_SDP, media_node="m2")
    request = one(verdict, "edge", "request")
    assert (request["method"], request["sdp"]) == ("INVITE", NEW_SDP)
    assert (call.state, call["media_node"]) == ("Reinviting", "m2")


def test_the_far_end_taking_the_moved_media_completes_the_move() -> None:
    call = moving()
    answer = {"code": 200, "method": "INVITE", "cseq": 4, "sdp": THEIR_SDP}
    verdict = call.on("Answered", **answer)
    assert call.state == "Established"
    assert sip(verdict) == ["ack"]
    assert one(verdict, "media", "update")["remote_sdp"] == THEIR_SDP
    assert published(verdict) == ["MediaMoved"]
    assert app_event(verdict, "MediaMoved")["state"] == "Established"
    assert call["reoffer"] == ""


def test_the_far_end_refusing_the_moved_media_ends_the_call() -> None:
    call = moving()
    verdict = call.on("Rejected", code=488, method="INVITE", cseq=4)
    assert call.state == "Terminating"
    assert sip(verdict) == ["bye"]
    assert (call["end_code"], call["end_reason"]) == ("488", "the far end refused the moved media")


def test_no_other_node_taking_the_call_ends_it_with_503() -> None:
    call = Call.established()
    call.on("MediaLost", **lost())
    verdict = call.timeout()
    assert call.state == "Terminating"
    assert sip(verdict) == ["bye"]
    assert call["end_code"] == "503"


def test_a_loss_while_ringing_refuses_the_call_with_503() -> None:
    call = Call("UAS")
    call.on("Invite", sdp=THEIR_SDP, txn="t")
    call.on("MediaReady", sdp=OUR_SDP, media_node="m1")
    verdict = call.on("MediaLost", **lost())
    assert call.state == "Terminated"
    respond = one(verdict, "edge", "respond")
    assert (respond["code"], respond["reason"]) == (503, "Media Node Lost")
    assert published(verdict) == ["Failed"]


def test_a_loss_before_the_answer_as_uac_cancels() -> None:
    call = Call("UAC", local_cseq="0")
    call.on("MakeCall", target="sip:them@192.0.2.1")
    call.on("MediaReady", sdp=OUR_SDP, media_node="m1")
    call.on("Provisional", code=180, to_tag="them")
    verdict = call.on("MediaLost", **lost())
    assert call.state == "Cancelling"
    assert sip(verdict) == ["cancel"]
    assert call["end_code"] == "503"


def test_a_loss_before_any_1xx_as_uac_waits_to_cancel() -> None:
    """RFC 3261 9.1: the CANCEL waits for a provisional response (or timer B ends it)."""
    call = Call("UAC", local_cseq="0")
    call.on("MakeCall", target="sip:them@192.0.2.1")
    call.on("MediaReady", sdp=OUR_SDP, media_node="m1")
    verdict = call.on("MediaLost", **lost())
    assert call.state == "Withdrawing"
    assert sip(verdict) == []
    assert call["end_code"] == "503"
    call.on("Rejected", code=503)
    assert call.state == "Terminated"


def test_a_loss_before_the_ack_moves_the_call_once_it_comes() -> None:
    call = Call.established(state="Answering")
    waiting = call.on("MediaLost", **lost())
    assert (call.state, call["cond.media_lost"]) == ("Answering", "1")
    assert waiting.commands == ()
    ack = call.on("Ack")
    assert path(ack) == [
        ("Answering", "Ack", "Established"),
        ("Established", "MediaGone", "Reoffering"),
    ]
    assert published(ack) == ["Established"]
    assert call["cond.media_lost"] == "0"
    assert one(ack, "media-pool", "create")["mode"] == "offer"


def test_a_loss_while_answering_their_offer_refuses_it_then_moves() -> None:
    call = Call.established()
    call.on("ReInvite", sdp=THEIR_SDP, txn="z9hG4bK.re")
    verdict = call.on("MediaLost", **lost())
    assert call.state == "Reoffering"
    reply = one(verdict, "edge", "respond")
    assert (reply["code"], reply["txn"]) == (500, "z9hG4bK.re")
    assert one(verdict, "media-pool", "create")["mode"] == "offer"


def test_a_loss_while_ending_is_ignored() -> None:
    call = Call.established(state="Terminating")
    assert call.on("MediaLost", **lost()).outcome is Outcome.IGNORED
