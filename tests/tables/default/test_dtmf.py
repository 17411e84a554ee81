"""DTMF in the default table: digits received from the media node (RFC 4733 / 2833 events
in the RTP) and by SIP INFO (RFC 6086) reach the application with the digit; the
application's digits go out in the RTP, or by INFO one digit at a time."""

from __future__ import annotations

import pytest

from sessiond.core.types import Outcome

from .flow import Call, app_event, one, path, published, sip


@pytest.mark.parametrize("state", ["Established", "Reinviting", "Answering"])
def test_a_digit_from_the_media_node_reaches_the_application(state: str) -> None:
    call = Call.established(state=state)
    verdict = call.on("DtmfReceived", digit="5", media_id=call["media_id"])
    assert call.state == state
    assert published(verdict) == ["DtmfReceived"]
    event = app_event(verdict, "DtmfReceived")
    assert (event["digit"], event["sid"], event["state"]) == ("5", call["sid"], state)
    assert verdict.steps[0].data == (("digit", "5"),)  # kept in the history
    assert sip(verdict) == []


def test_a_digit_after_the_call_ended_is_not_reported() -> None:
    call = Call.established(state="Terminated")
    assert call.on("DtmfReceived", digit="5").outcome is Outcome.NO_TRANSITION


def test_a_sip_info_digit_is_answered_and_reaches_the_application() -> None:
    call = Call.established()
    verdict = call.on("Info", digit="#", txn="z9hG4bK.info")
    assert call.state == "Established"
    reply = one(verdict, "edge", "respond")
    assert (reply["code"], reply["txn"]) == (200, "z9hG4bK.info")
    assert app_event(verdict, "DtmfReceived")["digit"] == "#"
    assert path(verdict) == [("Established", "Info", "Established")]


def test_an_info_body_we_cannot_read_gets_415() -> None:
    call = Call.established()
    verdict = call.on("Info", txn="t")
    assert sip(verdict) == ["respond 415"]
    assert published(verdict) == []


def test_the_applications_digits_go_in_the_rtp_by_default() -> None:
    call = Call.established()
    verdict = call.on("SendDtmf", digits="123", duration_ms=100)
    assert one(verdict, "media", "send_dtmf") == {
        "media_id": call["media_id"],
        "digits": "123",
        "duration_ms": 100,
    }
    assert sip(verdict) == []


def test_the_applications_digits_by_info_go_one_at_a_time() -> None:
    call = Call.established()
    first = call.on("SendDtmf", digits="12", method="info", duration_ms=250)
    info = one(first, "edge", "request")
    assert (info["method"], info["cseq"]) == ("INFO", 4)
    assert info["body"] == "Signal=1\r\nDuration=250\r\n"
    assert info["content_type"] == "application/dtmf-relay"
    assert (call["info_digits"], call["info_pending"]) == ("2", "1")
    second = call.on("InfoResponse", code=200, method="INFO")
    assert one(second, "edge", "request")["body"] == "Signal=2\r\nDuration=250\r\n"
    last = call.on("InfoResponse", code=200, method="INFO")
    assert sip(last) == []
    assert call["info_pending"] == ""
