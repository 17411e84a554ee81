"""Blind transfer (RFC 3515) in the default table. As the transferor: our REFER, its 202,
the NOTIFYs (message/sipfrag) telling how the new call went. As the transferee: their REFER
accepted with 202 and NOTIFY 100, the new call placed as a new session, and its outcome
reported by NOTIFY."""

from __future__ import annotations

from .flow import Call, app_event, headers, one, published, sip


def referred() -> Call:
    """The transferor, its REFER (CSeq 4) out to sip:carol@example.com."""
    call = Call.established()
    call.on("Transfer", target="sip:carol@example.com")
    return call


def test_transfer_sends_refer_with_the_target() -> None:
    call = Call.established()
    verdict = call.on("Transfer", target="sip:carol@example.com")
    assert call.state == "Established"
    refer = one(verdict, "edge", "request")
    assert (refer["method"], refer["cseq"]) == ("REFER", 4)
    assert headers(refer) == {
        "Refer-To": "<sip:carol@example.com>",
        "Referred-By": "<sip:us@127.0.0.1>",
    }
    assert (call["transfer_target"], call["refer_cseq"]) == ("sip:carol@example.com", "4")


def test_an_attended_transfer_puts_replaces_in_the_refer_to() -> None:
    call = Call.established()
    verdict = call.on("Transfer", target="sip:carol@example.com", replaces="x@h;to-tag=a")
    refer_to = headers(one(verdict, "edge", "request"))["Refer-To"]
    assert refer_to == "<sip:carol@example.com?Replaces=x%40h%3Bto-tag%3Da>"


def test_the_202_waits_for_the_notifys() -> None:
    call = referred()
    verdict = call.on("ReferResponse", code=202, method="REFER")
    assert verdict.commands == ()
    assert call.state == "Established"


def test_a_refused_refer_is_a_failed_transfer() -> None:
    call = referred()
    verdict = call.on("ReferResponse", code=403, method="REFER")
    assert published(verdict) == ["TransferFailed"]
    assert app_event(verdict, "TransferFailed")["transfer_target"] == "sip:carol@example.com"
    assert call.state == "Established"


def test_a_provisional_notify_is_answered_only() -> None:
    call = referred()
    verdict = call.on("Notify", code=180, txn="n1")
    assert sip(verdict) == ["respond 200"]
    assert published(verdict) == []


def test_a_2xx_notify_completes_the_transfer_and_hangs_up() -> None:
    call = referred()
    verdict = call.on("Notify", code=200, txn="n2")
    assert call.state == "Terminating"
    assert sip(verdict) == ["respond 200", "bye"]
    assert published(verdict) == ["TransferSucceeded"]
    assert (call["end_code"], call["end_reason"]) == ("200", "transferred")


def test_a_failed_notify_keeps_the_call() -> None:
    call = referred()
    verdict = call.on("Notify", code=486, txn="n3")
    assert call.state == "Established"
    assert sip(verdict) == ["respond 200"]
    assert published(verdict) == ["TransferFailed"]


def test_no_answer_to_our_refer_fails_the_transfer_and_ends_the_dialog() -> None:
    """RFC 3261 12.2.1.2: no response at all to a request in the dialog ends it, as a 408."""
    call = referred()
    verdict = call.on("TransactionTimeout", method="REFER")
    assert published(verdict) == ["TransferFailed"]
    assert call.state == "Terminating"
    assert sip(verdict) == ["bye"]
    assert (call["end_code"], call["end_reason"]) == ("408", "a request in the dialog timed out")


def test_their_refer_is_accepted_and_the_new_call_placed() -> None:
    call = Call.established(table="default", edge="e1")
    verdict = call.on("Refer", target="sip:carol@example.com", cseq=7, txn="z9hG4bK.refer")
    assert call.state == "Established"
    assert sip(verdict) == ["respond 202", "request NOTIFY"]
    assert one(verdict, "edge", "respond")["txn"] == "z9hG4bK.refer"
    notify = one(verdict, "edge", "request")
    assert notify["body"] == "SIP/2.0 100 Trying\r\n"
    assert notify["content_type"] == "message/sipfrag;version=2.0"
    assert headers(notify) == {"Event": "refer;id=7", "Subscription-State": "active;expires=60"}
    make = one(verdict, "session", "MakeCall")
    assert make["sid"] == call["transfer_sid"]
    new = make["data"]
    assert (new["target"], new["peer"], new["from"]) == (
        "sip:carol@example.com",
        call["sid"],
        "sip:us@127.0.0.1",
    )
    assert (new["table"], new["edge"]) == ("default", "e1")
    assert published(verdict) == ["TransferRequested"]


def test_a_refer_without_a_target_gets_400() -> None:
    call = Call.established()
    verdict = call.on("Refer", cseq=7, txn="t")
    reply = one(verdict, "edge", "respond")
    assert (reply["code"], reply["reason"]) == (400, "Bad Refer-To")
    assert call["transfer_sid"] == ""


def test_the_new_calls_outcome_is_reported_by_a_final_notify() -> None:
    call = Call.established()
    call.on("Refer", target="sip:carol@example.com", cseq=7, txn="t")
    verdict = call.on("TransferProgress", code=200, from_sid=call["transfer_sid"])
    notify = one(verdict, "edge", "request")
    assert notify["body"] == "SIP/2.0 200 OK\r\n"
    assert headers(notify)["Subscription-State"] == "terminated;reason=noresource"
    assert published(verdict) == ["TransferSucceeded"]
    assert call.state == "Established"  # the transferor hangs up, not us


def test_a_failed_new_call_is_reported_too() -> None:
    call = Call.established()
    call.on("Refer", target="sip:carol@example.com", cseq=7, txn="t")
    verdict = call.on("TransferProgress", code=486)
    assert one(verdict, "edge", "request")["body"] == "SIP/2.0 486 Busy Here\r\n"
    assert published(verdict) == ["TransferFailed"]
