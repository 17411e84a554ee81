"""The gateway (B2BUA) table, pure: the two legs driven through the engine with the events
they send each other delivered by hand, so the crossing cases (an answer crossing a CANCEL,
BYEs from both sides at once) and the failure mapping are checked in any order wanted.
The same flows over real sockets are in tests/e2e/test_gateway.py."""

from __future__ import annotations

from typing import Any

import pytest

from sessiond.core.resources import gateway_table_path
from sessiond.core.types import Command, Event, Outcome, Verdict
from sessiond.table import load_table
from sessiond.table.engine import decide

TABLE = load_table(gateway_table_path())
INBOUND, OUTBOUND = "aaaaaaaaaa-000000000001", "bbbbbbbbbb-000000000002"


class Leg:
    """One session of the pair: a working copy of its hash, and what it emitted."""

    def __init__(self, sid: str, role: str, state: str, peer: str) -> None:
        self.session = {
            "sid": sid,
            "role": role,
            "state": state,
            "version": "3",
            "epoch": "3",
            "peer": peer,
            "media_id": f"{sid}.m",
            "call_id": f"{sid}@test",
            "local_tag": "l",
            "remote_tag": "r",
            "txn": "t",
            "local_sdp": "v=0 ours",
        }
        self.count = 0

    @property
    def state(self) -> str:
        return self.session["state"]

    def feed(self, kind: str, **data: Any) -> Verdict:
        self.count += 1
        event = Event(f"{self.session['sid']}:{self.count}", kind, data, self.session["sid"])
        decision = decide(TABLE, self.session, event, 1000.0)
        if decision.outcome is Outcome.TRANSITION:
            self.session.update(decision.fields)
            self.session["version"] = str(int(self.session["version"]) + 1)
        return decision


def sent(decision: Verdict) -> list[tuple[str, str]]:
    """(target, name) of the commands, without timers and app events."""
    return [(c.target, c.name) for c in decision.commands if c.target not in ("timer", "app")]


def to_peer(decision: Verdict) -> list[Command]:
    return [c for c in decision.commands if c.target == "session"]


def deliver(command: Command, legs: dict[str, Leg]) -> Verdict:
    leg = legs[command.data["sid"]]
    return leg.feed(command.name, **command.data["data"])


def pair(inbound: str, outbound: str) -> dict[str, Leg]:
    return {
        INBOUND: Leg(INBOUND, "UAS", inbound, OUTBOUND),
        OUTBOUND: Leg(OUTBOUND, "UAC", outbound, INBOUND),
    }


def test_answer_crossing_the_callers_cancel_ends_the_outbound_leg_with_bye() -> None:
    legs = pair("Alerting", "Early")
    a, b = legs[INBOUND], legs[OUTBOUND]
    cancelled = a.feed("Cancel")
    assert a.state == "Terminated"
    assert ("edge", "respond") in sent(cancelled)
    assert cancelled.commands[0].data["code"] == 487
    answered = b.feed("Answered", code=200, to_tag="x", sdp="v=0 theirs", contact="sip:b@h")
    assert b.state == "Established"
    # the inbound leg has ended: the outbound's news is ignored there ...
    (news,) = to_peer(answered)
    assert deliver(news, legs).outcome is Outcome.IGNORED
    # ... and the CANCEL's message, arriving after the 200, hangs the outbound leg up
    (cancel,) = to_peer(cancelled)
    assert cancel.name == "PeerCancel"
    hangup = deliver(cancel, legs)
    assert sent(hangup) == [("edge", "bye")]
    assert b.state == "Terminating"


def test_a_200_crossing_our_cancel_is_acked_then_byed() -> None:
    legs = pair("Terminated", "Early")
    b = legs[OUTBOUND]
    assert sent(b.feed("PeerCancel")) == [("edge", "cancel")]
    assert b.state == "Cancelling"
    crossed = b.feed("Answered", code=200, to_tag="x", contact="sip:b@h")
    assert sent(crossed) == [("edge", "ack"), ("edge", "bye")]
    assert b.state == "Terminating"


@pytest.mark.parametrize("event", ["PeerCancel", "PeerHangup", "NoAnswer"])
def test_giving_up_before_any_1xx_cancels_only_after_one(event: str) -> None:
    """RFC 3261 9.1: no CANCEL before a provisional response; it waits in Withdrawing, and
    a final response that comes first ends the leg without one."""
    b = pair("Terminated", "Calling")[OUTBOUND]
    assert ("edge", "cancel") not in sent(b.feed(event))
    assert b.state == "Withdrawing"
    assert sent(b.feed("Provisional", code=180, to_tag="x")) == [("edge", "cancel")]
    assert b.state == "Cancelling"
    c = pair("Terminated", "Calling")[OUTBOUND]
    c.feed(event)
    assert sent(c.feed("Rejected", code=486)) == [("media", "destroy")]
    assert c.state == "Terminated"
    d = pair("Terminated", "Calling")[OUTBOUND]
    d.feed(event)
    assert sent(d.feed("Answered", code=200, to_tag="x", contact="sip:b@h")) == [
        ("edge", "ack"),
        ("edge", "bye"),
    ]
    assert d.state == "Terminating"


def test_byes_from_both_sides_at_once() -> None:
    legs = pair("Established", "Established")
    a, b = legs[INBOUND], legs[OUTBOUND]
    from_caller, from_callee = a.feed("Bye", txn="t1"), b.feed("Bye", txn="t2")
    assert a.state == b.state == "Terminated"
    for decision in (from_caller, from_callee):
        assert ("edge", "respond") in sent(decision)  # each BYE answered 200
        (news,) = to_peer(decision)
        assert news.name == "PeerHangup"
        assert deliver(news, legs).outcome is Outcome.IGNORED  # no BYE to an ended leg


def test_either_bye_ends_the_other_leg() -> None:
    legs = pair("Established", "Established")
    (news,) = to_peer(legs[OUTBOUND].feed("Bye", txn="t"))
    assert sent(deliver(news, legs)) == [("edge", "bye")]
    assert legs[INBOUND].state == "Terminating"


@pytest.mark.parametrize(
    ("code", "caller_gets"),
    [(486, 486), (404, 404), (408, 408), (302, 480), (401, 403), (407, 403)]
    + [(500, 502), (503, 502), (600, 600), (603, 603)],
)
def test_outbound_failures_map_to_the_callers_final_response(code: int, caller_gets: int) -> None:
    legs = pair("Alerting", "Early")
    (news,) = to_peer(legs[OUTBOUND].feed("Rejected", code=code, reason="x"))
    assert news.name == "PeerFailed"
    mapped = deliver(news, legs)
    respond = [c for c in mapped.commands if c.name == "respond"]
    assert [c.data["code"] for c in respond] == [caller_gets]
    assert legs[INBOUND].state == "Terminated"
    assert legs[INBOUND].session["end_code"] == str(caller_gets)


@pytest.mark.parametrize(("event", "caller_gets"), [("TransactionTimeout", 408), ("NoAnswer", 480)])
def test_no_response_and_no_answer(event: str, caller_gets: int) -> None:
    legs = pair("Forwarding", "Calling")
    (news,) = to_peer(legs[OUTBOUND].feed(event))
    respond = [c for c in deliver(news, legs).commands if c.name == "respond"]
    assert [c.data["code"] for c in respond] == [caller_gets]


def test_early_media_is_relayed_with_our_sdp_and_the_legs_bridged() -> None:
    legs = pair("Forwarding", "Calling")
    b = legs[OUTBOUND]
    (news,) = to_peer(b.feed("Provisional", code=183, to_tag="x", sdp="v=0 early"))
    assert news.name == "PeerEarlyMedia"
    relayed = deliver(news, legs)
    respond, bridge = relayed.commands[0], relayed.commands[1]
    assert (respond.data["code"], respond.data["sdp"]) == (183, "v=0 ours")
    assert (bridge.name, bridge.data["other"]) == ("bridge", f"{OUTBOUND}.m")
    # the 2xx repeats the early answer: no second media update
    assert ("media", "update") not in sent(b.feed("Answered", code=200, to_tag="x", sdp="v=0"))


def test_place_call_waits_for_both_the_decision_and_the_media() -> None:
    a = Leg(INBOUND, "UAS", "Routing", "")
    assert to_peer(a.feed("ForwardCall", target="sip:b@h")) == []
    placed = a.feed("MediaReady", sdp="v=0 ours", media_node="m7")
    (make,) = to_peer(placed)
    assert make.name == "MakeCall"
    assert (make.data["data"]["target"], make.data["data"]["media_node"]) == ("sip:b@h", "m7")
    assert a.state == "Forwarding"
    assert a.session["peer"] == make.data["sid"]


def test_each_leg_has_its_own_srtp_policy() -> None:
    """The route's policy for the outbound leg (ForwardCall's srtp) goes to the new call;
    without one the new call names none (the media node's --srtp applies)."""
    a = Leg(INBOUND, "UAS", "Routing", "")
    a.session["srtp"] = "require"  # the caller's leg (written by the worker at creation)
    a.feed("ForwardCall", target="sip:b@h", srtp="off")
    (make,) = to_peer(a.feed("MediaReady", sdp="v=0 ours", media_node="m7"))
    assert make.data["data"]["srtp"] == "off"
    plain = Leg(INBOUND, "UAS", "Routing", "")
    plain.feed("ForwardCall", target="sip:b@h")
    (make,) = to_peer(plain.feed("MediaReady", sdp="v=0 ours", media_node="m7"))
    assert "srtp" not in make.data["data"]


def bypassed(inbound: str = "Established", outbound: str = "Established") -> dict[str, Leg]:
    """A pair of legs of a call with ``media: bypass``."""
    legs = pair(inbound, outbound)
    for leg in legs.values():
        leg.session["media"] = "bypass"
    return legs


def answers(decision: Verdict) -> list[int]:
    return [c.data["code"] for c in decision.commands if c.name == "respond"]


def test_bypass_relays_an_offer_and_its_answer_without_any_media_command() -> None:
    legs = bypassed()
    a, b = legs[INBOUND], legs[OUTBOUND]
    offer = a.feed("ReInvite", sdp="v=0 alice hold", txn="t2")
    assert (a.state, sent(offer)) == ("Relaying", [("session", "PeerReoffer")])
    reinvite = deliver(to_peer(offer)[0], legs)
    assert b.state == "Reinviting"
    edge = [c for c in reinvite.commands if c.target == "edge"]
    assert [(c.name, c.data.get("method"), c.data.get("sdp")) for c in edge] == [
        ("request", "INVITE", "v=0 alice hold")
    ]
    answered = b.feed("Answered", sdp="v=0 bob held", cseq=int(b.session["reinvite_cseq"]))
    assert (b.state, sent(answered)) == (
        "Established",
        [("edge", "ack"), ("session", "PeerReanswered")],
    )
    reply = deliver(to_peer(answered)[0], legs)
    assert (a.state, answers(reply)) == ("Reconfirming", [200])
    assert reply.commands[0].data["sdp"] == "v=0 bob held"
    a.feed("Ack")
    bye = a.feed("Bye", txn="t3")
    assert a.state == "Terminated"
    assert all(c.target != "media" for c in bye.commands)  # media.destroy: nothing to free


def test_bypass_glare_both_legs_offer_at_once_and_both_get_491() -> None:
    legs = bypassed()
    a, b = legs[INBOUND], legs[OUTBOUND]
    from_a = to_peer(a.feed("ReInvite", sdp="v=0 a2", txn="ta"))[0]
    from_b = to_peer(b.feed("Update", sdp="v=0 b2", txn="tb"))[0]
    assert (a.state, b.state) == ("Relaying", "Relaying")
    refused_at_b = deliver(from_a, legs)  # b is mid-exchange: a's offer is refused
    refused_at_a = deliver(from_b, legs)
    assert answers(deliver(to_peer(refused_at_b)[0], legs)) == [491]
    assert answers(deliver(to_peer(refused_at_a)[0], legs)) == [491]
    assert (a.state, b.state) == ("Established", "Established")


def test_bypass_refuses_an_offer_crossing_its_own_reinvite_and_an_offerless_one() -> None:
    legs = bypassed()
    a, b = legs[INBOUND], legs[OUTBOUND]
    deliver(to_peer(a.feed("ReInvite", sdp="v=0 a2", txn="ta"))[0], legs)
    assert b.state == "Reinviting"
    assert answers(b.feed("ReInvite", sdp="v=0 b2", txn="tb")) == [491]
    refused = b.feed("Rejected", code=488, cseq=int(b.session["reinvite_cseq"]))
    assert answers(deliver(to_peer(refused)[0], legs)) == [488]
    assert (a.state, b.state) == ("Established", "Established")
    assert answers(a.feed("ReInvite", txn="t4")) == [488]  # no offer: not relayed
    assert a.state == "Established"


def test_bypass_bye_while_relaying_answers_the_pending_offer_and_ends_both() -> None:
    legs = bypassed()
    a, b = legs[INBOUND], legs[OUTBOUND]
    deliver(to_peer(a.feed("ReInvite", sdp="v=0 a2", txn="ta"))[0], legs)
    bye = a.feed("Bye", txn="tbye")
    assert (a.state, answers(bye)) == ("Terminated", [200, 487])
    ended = deliver(to_peer(bye)[0], legs)
    assert (b.state, sent(ended)) == ("Terminating", [("edge", "bye")])
