"""Argument schemas of actions and guards (table/argspec.py): what a table may write, and the
message a wrong argument gets when the table loads (the loader adds file, line and name)."""

from __future__ import annotations

from typing import Any

import pytest

from sessiond.table.actions import ACTIONS
from sessiond.table.argspec import Registry, merge
from sessiond.table.guards import GUARDS

RESPOND_USAGE = (
    "expects {code: N|from_event, reason: text?, sdp: bool?, contacts: from_event|[URI]?}"
)
TIMER_USAGE = "expects {event: Name, seconds: N} or {event: Name, field: F, scale: x?, margin: s?}"


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("sip.respond", {"code": 200, "sdp": True}, None),
        ("sip.respond", {"code": "from_event", "contacts": "from_event"}, None),
        ("sip.respond", {"code": 1000}, "code must be 101-699 or 'from_event'"),
        (
            "sip.respond",
            {"code": 180, "contacts": "x"},
            "contacts must be 'from_event' or a list of URIs",
        ),
        ("sip.respond", {"code": 200, "sdp": "yes"}, "sdp must be true or false"),
        ("sip.respond", {"code": 200, "bogus": 1}, RESPOND_USAGE),
        ("sip.respond", None, RESPOND_USAGE),
        ("sip.reply", {"code": 180}, "code must be a final status 200-699"),
        ("sip.invite", None, None),
        ("sip.invite", {"auth": True}, None),
        ("sip.invite", {"auth": False}, "auth must be true"),
        ("sip.bye", {"x": 1}, "takes no arguments"),
        ("sip.refer", "x", "takes no arguments (the target comes from the event's 'target')"),
        ("sip.notify", {"code": 99}, "code must be 100-699 or 'from_event'"),
        ("media.create", {"mode": "both"}, "mode must be one of offer|answer"),
        ("media.play", None, None),
        ("media.play", {"tone": 440, "seconds": 2}, None),
        (
            "media.play",
            {"tone": 440, "file": "a.wav"},
            "needs exactly one of tone (Hz) or file (a WAV path)",
        ),
        (
            "media.record",
            {"direction": "in"},
            "expects no arguments or {path: path, direction: in|out|both?}",
        ),
        ("media.bridge", {"with": ["peer"]}, "with: unknown session field ['peer']"),
        (
            "session.send",
            {"event": "Hello", "values": {"n": True}},
            "values must map field names to strings or numbers",
        ),
        (
            "session.call",
            {"save_as": "peer", "target": "t", "target_field": "peer"},
            "target (an event field) and target_field (a session field) exclude each other",
        ),
        ("session.call", {"save_as": "nosuch"}, "save_as: unknown session field 'nosuch'"),
        ("timer.start", {"event": "T", "seconds": 5}, None),
        ("timer.start", {"event": "T", "field": "session_expires", "scale": 0.5}, None),
        ("timer.start", {"event": "T"}, TIMER_USAGE),
        ("timer.stop", {"event": 5}, "event must be a name"),
        ("session_timer.offer", {"seconds": 30}, "seconds must be 90 or more"),
        ("save", {"nosuch": "x", "other": "y"}, "unknown session field(s) nosuch, other"),
        ("save", {"peer": 1}, "event field names must be strings"),
        ("save", {}, "expects {session_field: event_field, ...}"),
    ],
)
def test_action_arguments(name: str, args: Any, message: str | None) -> None:
    assert ACTIONS[name].check(args) == message


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("code", 404, None),
        ("code", [400, 499], None),
        ("code", [499, 400], "expects a SIP status code (100-699) or a range [low, high]"),
        ("cond", "", "expects a condition name"),
        ("interval_too_small", None, None),
        ("interval_too_small", 0, "expects no argument or a minimum interval in seconds"),
        ("field", {"hold": "local"}, None),
        ("data", {1: "x"}, "1 must be a name"),
        ("data", [], "expects {session_field: value, ...}"),
        ("success", 1, "takes no arguments"),
    ],
)
def test_guard_arguments(name: str, args: Any, message: str | None) -> None:
    assert GUARDS[name].check(args) == message


def test_a_name_is_defined_once() -> None:
    first, second = Registry[object](), Registry[object]()
    first.add("x", object())
    with pytest.raises(ValueError, match="x is defined twice"):
        first.add("x", object())
    second.add("x", object())
    with pytest.raises(ValueError, match="x is defined twice"):
        merge(first, second)
