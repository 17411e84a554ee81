"""The default table's answer to a lost media node, decided by the pure engine: the call is
moved (a new leg from the pool continuing our SDP origin, then a re-INVITE), a stale report is
harmless, a loss during an exchange waits for it to end, and the documented one-line policy
change (hang up instead) gives a valid table that hangs up."""

from __future__ import annotations

from sessiond.core.resources import default_table_path
from sessiond.core.types import Event, Outcome
from sessiond.table import Table, load_table, load_table_text
from sessiond.table.engine import decide

TABLE = load_table(default_table_path())
LOCAL_SDP = "v=0\r\no=sessiond 77 3 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
MOVE = "      - {description: move the call, actions: [media.relocate], next: Reoffering}\n"
HANG_UP = "      # - {description: hang up, actions: [sip.bye, {end: {code: 503, reason: media node lost}}], next: Terminating}\n"  # noqa: E501


def established(**fields: str) -> dict[str, str]:
    session = {
        "sid": "0123456789-abcdef",
        "role": "UAS",
        "state": "Established",
        "version": "9",
        "epoch": "9",
        "call_id": "c@h",
        "local_tag": "l",
        "remote_tag": "r",
        "media_id": "0123456789-abcdef.m",
        "media_node": "m1",
        "local_sdp": LOCAL_SDP,
    }
    return {**session, **fields}


def lost(node: str = "m1") -> Event:
    data = {"media_node": node, "media_id": "0123456789-abcdef.m", "reason": "media node lost"}
    return Event(f"medialost:{node}:x", "MediaLost", data)


def test_a_lost_node_moves_the_call_through_a_new_offer() -> None:
    decision = decide(TABLE, established(hold="local"), lost(), 100.0)
    assert decision.outcome is Outcome.TRANSITION
    assert [(s.from_state, s.event, s.to_state) for s in decision.steps] == [
        ("Established", "MediaLost", "Established"),
        ("Established", "MediaGone", "Reoffering"),
    ]
    (create,) = [c for c in decision.commands if c.name == "create"]
    assert create.target == "media-pool"
    assert create.data == {
        "media_id": "0123456789-abcdef.m",
        "mode": "offer",
        "direction": "sendonly",  # we hold the far end: the moved media holds it too
        "origin": "sessiond 77 3 IN IP4 127.0.0.1",
    }
    assert decision.fields["media_node"] == ""
    assert decision.fields["reoffer"] == "relocate"
    ready = Event("r1", "MediaReady", {"sdp": "v=0\r\n", "media_node": "m2"})
    after = decide(TABLE, {**established(), **decision.fields, "state": "Reoffering"}, ready, 101)
    assert after.state == "Reinviting"
    assert after.fields["media_node"] == "m2"
    assert [c.name for c in after.commands if c.target == "edge"] == ["request"]


def test_a_report_about_another_node_changes_nothing() -> None:
    decision = decide(TABLE, established(media_node="m2"), lost("m1"), 100.0)
    assert decision.state == "Established"
    assert decision.commands == ()
    assert set(decision.fields) <= {"updated_at"}


def test_a_loss_during_our_reinvite_waits_for_its_answer() -> None:
    session = established(state="Reinviting", reinvite_cseq="4", reoffer="hold")
    decision = decide(TABLE, session, lost(), 100.0)
    assert decision.state == "Reinviting"
    assert decision.commands == ()
    session = {**session, **decision.fields}
    answered = Event("a1", "Answered", {"cseq": 4, "method": "INVITE", "sdp": "v=0\r\n"})
    after = decide(TABLE, session, answered, 101.0)
    assert [s.event for s in after.steps] == ["Answered", "MediaGone"]
    assert after.state == "Reoffering"
    assert [c.name for c in after.commands if c.target != "timer"] == ["ack", "create"]
    assert after.fields["hold"] == "local"  # the hold took effect, and the move keeps it


def test_the_hang_up_policy_is_one_line_and_valid() -> None:
    source = default_table_path().read_text()
    assert MOVE in source
    assert HANG_UP in source
    variant = source.replace(MOVE, "      # " + MOVE.lstrip()).replace(
        HANG_UP, HANG_UP.replace("# ", "", 1)
    )
    table: Table = load_table_text(variant, str(default_table_path()))  # its include: is beside it
    decision = decide(table, established(), lost(), 100.0)
    assert decision.state == "Terminating"
    assert [c.name for c in decision.commands if c.target == "edge"] == ["bye"]
    assert decision.fields["end_code"] == "503"


def test_a_moved_leg_keeps_its_srtp_policy_and_gets_new_keys_on_its_new_node() -> None:
    """Only the policy is in the session: the new node makes new keys, which the re-INVITE
    offers (the old ones died with the old node)."""
    decision = decide(TABLE, established(srtp="require"), lost(), 100.0)
    (create,) = [c for c in decision.commands if c.name == "create"]
    assert create.data["srtp"] == "require"
    assert create.data["mode"] == "offer"
