"""The pure engine. Every transition of the default table is exercised, generated from the
table itself: for each (role, state, event) entry and each alternative, a session and an
event that satisfy exactly that alternative's guards."""

from __future__ import annotations

from typing import Any

import pytest

from sessiond.core.errors import EngineError
from sessiond.core.resources import default_table_path
from sessiond.core.types import Event, Outcome
from sessiond.table import Alternative, Entry, Table, load_table, load_table_text
from sessiond.table.engine import MAX_STEPS, decide
from sessiond.table.model import ANY, GuardCall

TABLE = load_table(default_table_path())


def _satisfy(guard: GuardCall, data: dict[str, Any], session: dict[str, str]) -> None:
    want = not guard.negate
    if guard.name == "provisional":
        data["code"] = 180 if want else 200
    elif guard.name == "success":
        data["code"] = 200 if want else 486
    elif guard.name == "failure":
        data["code"] = 486 if want else 200
    elif guard.name == "code":
        low = guard.args[0] if isinstance(guard.args, list) else guard.args
        data["code"] = low if want else (low + 1 if low < 699 else 100)
    elif guard.name == "has_sdp":
        data.pop("sdp", None)
        if want:
            data["sdp"] = "v=0\r\n"
    elif guard.name == "cond":
        session[f"cond.{guard.args}"] = "1" if want else "0"
    elif guard.name == "can_authenticate":
        data["code"] = 407
        data["auth_user"] = "alice" if want else ""
    elif guard.name == "media_node_lost":
        session["media_node"], data["media_node"] = "m1", "m1" if want else "m2"
    elif guard.name == "in_conference":
        session["conference"] = "standup" if want else ""
    else:
        _satisfy_dialog(guard, want, data, session)


def _satisfy_dialog(
    guard: GuardCall, want: bool, data: dict[str, Any], session: dict[str, str]
) -> None:
    if guard.name == "hold_changes":
        data["sdp"], data["held"] = "v=0\r\n", want
    elif guard.name == "answers_reinvite":
        data["cseq"] = 5
        session["reinvite_cseq"] = "5" if want else "4"
    elif guard.name == "interval_too_small":
        data["session_expires"] = "30" if want else "1800"
    elif guard.name == "field":
        for key, value in guard.args.items():
            session[key] = str(value) if want else f"{value}x"
    elif guard.name == "reliable":
        if want:
            data["require"], data["rseq"] = "100rel", "1"
    elif guard.name == "new_sdp":
        if want:
            data["sdp"] = "v=0\r\no=new\r\n"
    elif guard.name == "data":
        for key, value in guard.args.items():
            data[key] = str(value) if want else f"{value}x"
    else:  # a guard added to the registry must be taught here
        raise AssertionError(f"no generator for guard {guard.name}")


def _cases() -> list[tuple[str, str, Entry, int]]:
    cases = []
    for (role, state, event), entry in TABLE.entries.items():
        roles = ["UAC", "UAS"] if role == "Both" else [role]
        states = [s for s, d in TABLE.states.items() if not d.terminal] if state == ANY else [state]
        for r in roles:
            for s in states:
                if TABLE.lookup(r, s, event) is not entry:
                    continue  # shadowed by a more specific entry, which has its own case
                for i in range(max(1, len(entry.alternatives))):
                    cases.append((r, s, entry, i))
    return cases


CASES = _cases()


def _session(role: str, state: str) -> dict[str, str]:
    return {
        "sid": "0123456789-abcdef",
        "role": role,
        "state": state,
        "version": "7",
        "epoch": "7",
        "call_id": "c@h",
        "local_tag": "l",
        "remote_tag": "r",
        "media_id": "0123456789-abcdef.m",
        "txn": "z9hG4bK.1",
    }


def _event_for(alt: Alternative, session: dict[str, str], name: str) -> Event:
    data: dict[str, Any] = {}
    for guard in alt.guards:
        _satisfy(guard, data, session)
    if name in TABLE.timeout_events:
        data["epoch"] = session["epoch"]
    return Event("ev-1", name, data)


@pytest.mark.parametrize(
    ("role", "state", "entry", "index"),
    CASES,
    ids=[f"{r}-{s}-{e.event}-{i}" for r, s, e, i in CASES],
)
def test_every_transition_of_the_default_table(
    role: str, state: str, entry: Entry, index: int
) -> None:
    session = _session(role, state)
    if entry.ignore is not None:
        decision = decide(TABLE, session, Event("ev-1", entry.event, {}), 100.0)
        assert decision.outcome is Outcome.IGNORED
        assert decision.reason == entry.ignore
        assert decision.fields == {}
        assert decision.commands == ()
        return
    alt = entry.alternatives[index]
    event = _event_for(alt, session, entry.event)
    decision = decide(TABLE, session, event, 100.0)
    assert decision.outcome is Outcome.TRANSITION, decision.reason
    first = decision.steps[0]
    assert (first.from_state, first.event) == (state, entry.event)
    assert first.to_state == (alt.next or state)
    assert first.actions == tuple(str(a) for a in alt.actions)
    for name, value in alt.conditions:
        assert decision.fields.get(f"cond.{name}", session.get(f"cond.{name}")) == (
            "1" if value else "0"
        )
    published = [c.name for c in decision.commands if c.target == "app"]
    assert published[: len(alt.publish)] == list(alt.publish)
    assert decision.terminal == TABLE.states[decision.state].terminal
    if decision.state != state:
        assert decision.fields["epoch"] == "8"
        assert decision.fields["entered_state_at"] == "100.000"
        armed = [  # state timeouts (named timers carry their own "t" epochs)
            c
            for c in decision.commands
            if c.target == "timer" and c.name == "arm" and not c.data["epoch"].startswith("t")
        ]
        timeout = TABLE.states[decision.state].timeout
        assert [c.data["event"] for c in armed] == ([timeout.event] if timeout else [])
    # Deterministic: the same inputs give the same decision, command ids included.
    assert decide(TABLE, session, event, 100.0) == decision


def test_every_default_entry_is_covered() -> None:
    covered = {(e.role, e.state, e.event) for _, _, e, _ in CASES}
    assert covered == set(TABLE.entries)


def test_no_transition_names_the_reason() -> None:
    decision = decide(TABLE, _session("UAS", "Ringing"), Event("x", "Answered", {}), 1.0)
    assert decision.outcome is Outcome.NO_TRANSITION
    assert "(UAS, Ringing, Answered)" in decision.reason
    assert decision.fields == {}
    assert decision.commands == ()


def test_terminal_state_takes_no_event() -> None:
    decision = decide(TABLE, _session("UAS", "Terminated"), Event("x", "Bye", {}), 1.0)
    assert decision.outcome is Outcome.NO_TRANSITION


def test_stale_timer_is_ignored() -> None:
    session = _session("UAS", "Ringing")
    decision = decide(TABLE, session, Event("t", "RingTimeout", {"epoch": "3"}), 1.0)
    assert decision.outcome is Outcome.IGNORED
    assert "stale" in decision.reason
    fresh = decide(TABLE, session, Event("t", "RingTimeout", {"epoch": "7"}), 1.0)
    assert fresh.state == "Terminated"


@pytest.mark.parametrize("order", [("MediaReady", "AcceptCall"), ("AcceptCall", "MediaReady")])
def test_trigger_fires_when_the_last_condition_arrives(order: tuple[str, str]) -> None:
    session = _session("UAS", "Ringing")
    data = {"MediaReady": {"sdp": "v=0 ours", "media_node": "m1"}, "AcceptCall": {}}
    first = decide(TABLE, session, Event("1", order[0], data[order[0]]), 1.0)
    assert first.state == "Ringing"
    assert len(first.steps) == 1
    session = {**session, **first.fields, "version": "8"}
    second = decide(TABLE, session, Event("2", order[1], data[order[1]]), 2.0)
    assert [s.event for s in second.steps] == [order[1], "ReadyToAnswer"]
    assert second.state == "Answering"
    respond = [c for c in second.commands if c.target == "edge"]
    assert respond[0].data["code"] == 200
    assert respond[0].data["sdp"] == "v=0 ours"
    # the answer is out: the media node may send (the leg was created quiet)
    media = [(c.name, c.data) for c in second.commands if c.target == "media"]
    assert media == [("answered", {"media_id": session["media_id"]})]
    # the follow-up's commands carry ids derived from the event that caused them
    assert all(c.id.startswith("2/") for c in second.commands)


def test_an_answering_leg_is_created_quiet() -> None:
    """Its media waits for our answer to go out (RFC 3264 6); an offering leg need not."""
    invite = {"sdp": "v=0 theirs", "txn": "t"}
    decision = decide(TABLE, _session("UAS", "Idle"), Event("i", "Invite", invite), 1.0)
    create = next(c for c in decision.commands if c.name == "create")
    assert create.data["mode"] == "answer"
    assert create.data["quiet"] is True


def test_actions_build_self_contained_commands() -> None:
    session = {**_session("UAC", "Established"), "local_cseq": "1", "edge": "e1"}
    decision = decide(TABLE, session, Event("h", "Hangup", {}), 5.0)
    bye = next(c for c in decision.commands if c.name == "bye")
    assert bye.data["cseq"] == 2
    assert bye.data["call_id"] == "c@h"
    assert decision.fields["local_cseq"] == "2"
    assert decision.fields["end_reason"] == "local hangup"


LOOP = """\
table: loop
initial: A
states:
  A: {}
  B: {terminal: true}
transitions:
  - role: Both
    state: A
    event: Hangup
    raise: Again
  - role: Both
    state: A
    event: Again
    raise: Again
  - role: Both
    state: A
    event: Bye
    next: B
"""


def test_follow_up_loop_is_bounded() -> None:
    table: Table = load_table_text(LOOP)
    with pytest.raises(EngineError, match=str(MAX_STEPS)):
        decide(table, {"state": "A", "role": "UAS", "version": "1"}, Event("1", "Hangup"), 1.0)


ORDER = """\
table: order
initial: A
states:
  A: {}
  B: {}
  C: {}
  D: {terminal: true}
transitions:
  - role: Both
    state: A
    event: Hangup
    raise: [First, Second]
    next: B
  - role: Both
    state: B
    event: First
    raise: Third
    next: C
  - role: Both
    state: C
    event: Second
    next: C
  - role: Both
    state: C
    event: Third
    next: D
"""


def test_follow_ups_run_in_fifo_order_not_recursively() -> None:
    table = load_table_text(ORDER)
    decision = decide(table, {"state": "A", "role": "UAC", "version": "1"}, Event("1", "Hangup"), 1)
    assert [(s.event, s.to_state) for s in decision.steps] == [
        ("Hangup", "B"),
        ("First", "C"),
        ("Second", "C"),
        ("Third", "D"),
    ]
    assert decision.terminal


@pytest.mark.parametrize(
    ("code", "header"), [(401, "www_authenticate"), (407, "proxy_authenticate")]
)
def test_a_challenge_is_answered_once_then_fails_the_call(code: int, header: str) -> None:
    session = {**_session("UAC", "Early"), "local_cseq": "1", "invite_cseq": "1"}
    challenge = ['Digest realm="pbx", nonce="n1"']
    data = {"code": code, header: challenge, "auth_user": "alice", "to_tag": "t"}
    first = decide(TABLE, session, Event("ev-1", "Rejected", data), 0.0)
    assert first.state == "Calling"
    (invite,) = [c for c in first.commands if c.target == "edge"]
    assert invite.name == "invite"
    assert (invite.data["cseq"], invite.data["remote_tag"]) == (2, "")
    assert (invite.data["challenge_code"], invite.data["challenges"]) == (code, challenge)
    assert first.fields["cond.auth_tried"] == "1"
    assert first.fields["invite_cseq"] == "2"
    again = decide(TABLE, {**session, **first.fields}, Event("ev-2", "Rejected", data), 0.0)
    assert (again.state, again.fields["end_code"]) == ("Terminated", str(code))
    no_account = decide(TABLE, session, Event("ev-3", "Rejected", {**data, "auth_user": ""}), 0.0)
    assert (no_account.state, no_account.fields["end_code"]) == ("Terminated", str(code))
