"""Parallel forking in the gateway table, pure: the inbound leg of a call to a registered
user whose contacts ring in groups (equal q together), driven through the engine with the
branches' Peer* events delivered by hand in the orders wanted. Over real sockets with sipp
phones: tests/e2e/test_parallel_fork.py."""

from __future__ import annotations

import json
from typing import Any

from tests.table.test_gateway_table import Leg, sent, to_peer

from sessiond.core.types import Command, Verdict

INBOUND = "aaaaaaaaaa-000000000001"


def targets(*groups: list[str]) -> tuple[str, str]:
    """ForwardCall's target and next (JSON) for these groups of target URIs."""
    flat = [(t, i > 0) for group in groups for i, t in enumerate(group)]
    entries: list[dict[str, Any]] = []
    for target, together in flat[1:]:
        entry: dict[str, Any] = {"target": target, "edge": "e1", "destination": "UDP h:1"}
        if together:
            entry["parallel"] = True
        entries.append(entry)
    return flat[0][0], json.dumps(entries)


def forked(*groups: list[str], ring: float | None = None) -> tuple[Leg, list[str]]:
    """An inbound leg that placed its first group: (the leg, the branches' sids)."""
    leg = Leg(INBOUND, "UAS", "Routing", "")
    first, rest = targets(*groups)
    data: dict[str, Any] = {"target": first, "next": rest}
    if ring is not None:
        data["ring"] = ring
    leg.feed("ForwardCall", **data)
    placed = leg.feed("MediaReady", sdp="v=0 ours", media_node="m7")
    makes = [c for c in to_peer(placed) if c.name == "MakeCall"]
    assert [m.data["data"]["target"] for m in makes] == groups[0]
    assert leg.state == "Forwarding"
    return leg, [m.data["sid"] for m in makes]


def cancels(decision: Verdict) -> list[str]:
    return sorted(c.data["sid"] for c in to_peer(decision) if c.name == "PeerCancel")


def responses(decision: Verdict) -> list[int]:
    return [c.data["code"] for c in decision.commands if c.target == "edge" and c.name == "respond"]


def makes(decision: Verdict) -> list[Command]:
    return [c for c in to_peer(decision) if c.name == "MakeCall"]


def test_equal_q_contacts_ring_at_once_each_its_own_leg() -> None:
    leg, sids = forked(["sip:a@1", "sip:a@2", "sip:a@3"])
    assert len(set(sids)) == 3  # three calls, three Call-IDs, from one event
    assert json.loads(leg.session["branches"]) == sids
    assert leg.session["cond.more_targets"] == ""


def test_the_first_2xx_wins_the_others_are_cancelled_a_later_2xx_is_ignored() -> None:
    leg, (one, two, three) = forked(["sip:a@1", "sip:a@2", "sip:a@3"])
    assert responses(leg.feed("PeerRinging", code=180, from_sid=one)) == [180]
    assert leg.feed("PeerRinging", code=180, from_sid=two).fields.get("state") is None
    won = leg.feed("PeerAnswered", from_sid=two)
    assert responses(won) == [200]
    assert cancels(won) == sorted([one, three])
    assert leg.session["peer"] == two
    assert leg.state == "Answering"
    bridge = [c for c in won.commands if c.name == "bridge"]
    assert bridge[0].data["other"] == f"{two}.m"
    late = leg.feed("PeerAnswered", from_sid=three)  # its 200 crossed our PeerCancel
    assert sent(late) == []
    assert leg.session["peer"] == two


def test_a_6xx_stops_the_search_and_cancels_the_rest() -> None:
    leg, (one, two, three) = forked(["sip:a@1", "sip:a@2", "sip:a@3"], ["sip:vm@9"])
    assert responses(leg.feed("PeerFailed", code=486, from_sid=one)) == []
    declined = leg.feed("PeerFailed", code=603, from_sid=two)
    assert responses(declined) == [603]
    assert cancels(declined) == [three]
    assert makes(declined) == []
    assert leg.state == "Terminated"


def test_all_failed_the_best_class_reaches_the_caller() -> None:
    """486 then 480 then 503: the last is a 5xx, a 4xx came before - the caller gets the
    first 4xx (RFC 3261 16.7), through a PeerFailed the session sends itself."""
    leg, (one, two, three) = forked(["sip:a@1", "sip:a@2", "sip:a@3"])
    leg.feed("PeerFailed", code=486, from_sid=one)
    leg.feed("PeerFailed", code=480, from_sid=two)
    last = leg.feed("PeerFailed", code=503, from_sid=three)
    assert responses(last) == []
    assert leg.state == "Forwarding"
    (verdict,) = [c for c in to_peer(last) if c.name == "PeerFailed"]
    assert verdict.data["sid"] == INBOUND
    final = leg.feed("PeerFailed", **verdict.data["data"])
    assert responses(final) == [486]
    assert leg.state == "Terminated"


def test_all_failed_with_no_better_one_the_last_code_is_mapped() -> None:
    leg, (one, two) = forked(["sip:a@1", "sip:a@2"])
    leg.feed("PeerFailed", code=503, from_sid=one)
    assert responses(leg.feed("PeerFailed", code=500, from_sid=two)) == [502]


def test_groups_ring_one_after_the_other() -> None:
    """q=1.0 x2, then q=0.5 x1: the second group is called once both of the first failed."""
    leg, (one, two) = forked(["sip:a@1", "sip:a@2"], ["sip:a@3"])
    assert leg.session["cond.more_targets"] == "1"
    assert responses(leg.feed("PeerRinging", code=180, from_sid=one)) == [180]
    assert makes(leg.feed("PeerFailed", code=486, from_sid=one)) == []
    nxt = leg.feed("PeerFailed", code=480, from_sid=two)
    (make,) = makes(nxt)
    assert make.data["data"]["target"] == "sip:a@3"
    assert json.loads(leg.session["branches"]) == [make.data["sid"]]
    assert leg.session["cond.more_targets"] == ""
    # the caller has its 180: the second group's ringing sends none
    assert responses(leg.feed("PeerRinging", code=180, from_sid=make.data["sid"])) == []
    assert leg.state == "Alerting"


def test_the_callers_cancel_cancels_every_branch() -> None:
    leg, sids = forked(["sip:a@1", "sip:a@2", "sip:a@3"])
    leg.feed("PeerRinging", code=180, from_sid=sids[0])
    gone = leg.feed("Cancel")
    assert responses(gone) == [487]
    assert cancels(gone) == sorted(sids)


def test_no_answer_cancels_the_group_then_calls_then_and_ignores_the_old_branches() -> None:
    leg, sids = forked(["sip:a@1", "sip:a@2"], ["sip:vm@9"], ring=5)
    leg.feed("PeerRinging", code=180, from_sid=sids[0])
    timeout = leg.feed("TargetTimeout")
    assert cancels(timeout) == sorted(sids)
    (make,) = makes(timeout)
    assert make.data["data"]["target"] == "sip:vm@9"
    # a cancelled branch's failure or answer crossing the CANCEL changes nothing
    for kind, code in (("PeerFailed", 486), ("PeerAnswered", 200), ("PeerRinging", 180)):
        verdict = leg.feed(kind, code=code, from_sid=sids[1])
        assert sent(verdict) == []
        assert leg.state == "Forwarding"


def test_one_early_media_source_at_most() -> None:
    leg, (one, two) = forked(["sip:a@1", "sip:a@2"])
    first = leg.feed("PeerEarlyMedia", code=183, from_sid=one)
    assert responses(first) == [183]
    assert [c.data["other"] for c in first.commands if c.name == "bridge"] == [f"{one}.m"]
    assert sent(leg.feed("PeerEarlyMedia", code=183, from_sid=two)) == []
    # the other branch answers: it is bridged instead, the early one cancelled
    won = leg.feed("PeerAnswered", from_sid=two)
    assert [c.data["other"] for c in won.commands if c.name == "bridge"] == [f"{two}.m"]
    assert cancels(won) == [one]


def test_a_session_from_before_branches_counts_its_peer_as_the_one_branch() -> None:
    leg = Leg(INBOUND, "UAS", "Alerting", "bbbbbbbbbb-000000000002")
    won = leg.feed("PeerAnswered", from_sid="bbbbbbbbbb-000000000002")
    assert responses(won) == [200]
    assert cancels(won) == []
