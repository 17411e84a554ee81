"""The gateway table answers every request (RFC 3261 15.1.2): the caller's BYE on the early
dialog gets 200 and its INVITE 487 (the outbound INVITE is cancelled), and a BYE or a
hangup while a leg answers a re-INVITE or UPDATE answers that request 487 too."""

from __future__ import annotations

import pytest

from sessiond.core.types import Verdict

from .test_gateway_table import INBOUND, OUTBOUND, pair, sent, to_peer


def answers(decision: Verdict) -> list[tuple[int, str]]:
    return [
        (c.data["code"], c.data["txn"])
        for c in decision.commands
        if c.target == "edge" and c.name == "respond"
    ]


@pytest.mark.parametrize("state", ["Forwarding", "Alerting"])
def test_a_bye_on_the_early_dialog_gets_200_the_invite_487(state: str) -> None:
    legs = pair(state, "Early")
    a = legs[INBOUND]
    verdict = a.feed("Bye", txn="bye")
    assert answers(verdict) == [(200, "bye"), (487, "t")]
    assert a.state == "Terminated"
    assert [c.name for c in to_peer(verdict)] == ["PeerCancel"]
    assert legs[OUTBOUND].feed("PeerCancel").state == "Cancelling"


def test_their_bye_while_a_leg_answers_their_offer_answers_both() -> None:
    a = pair("Reanswering", "Established")[INBOUND]
    verdict = a.feed("Bye", txn="bye")
    assert answers(verdict) == [(200, "bye"), (487, "t")]
    assert a.state == "Terminated"


@pytest.mark.parametrize("event", ["PeerHangup", "Hangup"])
def test_a_hangup_while_a_leg_answers_their_offer_answers_it_first(event: str) -> None:
    a = pair("Reanswering", "Established")[INBOUND]
    verdict = a.feed(event)
    assert answers(verdict) == [(487, "t")]
    assert ("edge", "bye") in sent(verdict)
    assert a.state == "Terminating"
