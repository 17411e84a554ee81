"""Actions build edge and media commands as their typed records (sessiond.core.messages); a
record's field order is the order of its wire map, which must stay the one the plain dicts
had (the outbox and the stream entries are msgpack of it, byte for byte)."""

from __future__ import annotations

from typing import Any

import pytest

from sessiond.core.messages import EDGE, MEDIA, MediaLeg, read
from sessiond.core.types import Command, Context, Event
from sessiond.table.actions import ACTIONS

SESSION = {
    "sid": "s-1",
    "_event_id": "e1",
    "call_id": "c@h",
    "local_tag": "l",
    "remote_tag": "r",
    "local_uri": "sip:a@x",
    "remote_uri": "sip:b@y",
    "remote_target": "sip:b@1.2.3.4",
    "route_set": "",
    "txn": "z9.t",
    "local_sdp": "v=0\r\no=sessiond 7 1 IN IP4 127.0.0.1\r\n",
    "remote_sdp": "v=0\r\n",
    "media_id": "s-1.m",
    "media_node": "m1",
    "local_cseq": "4",
    "hold": "local",
    "remote_require": "100rel",
    "session_expires": "1800",
    "refresher": "uac",
    "replaces": "x;to-tag=1",
}
DIALOG = [
    *("call_id", "local_tag", "remote_tag", "local_uri", "remote_uri", "remote_target"),
    "route_set",
]
CHALLENGE = {"code": 407, "proxy_authenticate": ["Digest b"], "contacts": ["sip:c@z"]}


def run(action: str, args: Any, data: dict[str, Any] | None = None) -> list[Command]:
    commands: list[Command] = []
    ctx = Context(dict(SESSION), Event("e1", "X", data or {}), 1.0, commands, set())
    ACTIONS[action].fn(ctx, args)
    return commands


@pytest.mark.parametrize(
    ("action", "args", "keys"),
    [
        (
            "sip.respond",
            {"code": 183, "sdp": True, "reason": "Early", "contacts": "from_event"},
            ["code", "txn", *DIALOG, "reason", "sdp", "reliable", "headers", "contacts"],
        ),
        (
            "sip.invite",
            {"auth": True},
            ["cseq", "sdp", *DIALOG, "challenge_code", "challenges", "headers"],
        ),
        ("sip.reinvite", None, ["method", "cseq", *DIALOG, "sdp", "headers"]),
        (
            "sip.notify",
            {"code": 200},
            ["method", "cseq", *DIALOG, "headers", "body", "content_type"],
        ),
        ("sip.bye", None, ["cseq", *DIALOG]),
        ("media.create", {"mode": "answer"}, ["media_id", "mode", "remote_sdp", "quiet"]),
        ("media.relocate", None, ["media_id", "mode", "direction", "origin"]),
        ("media.update", {"answer": True}, ["media_id", "remote_sdp", "direction", "answer"]),
        (
            "media.play",
            {"tone": 440, "seconds": 2, "loop": True},
            ["media_id", "tone", "seconds", "loop"],
        ),
    ],
)
def test_a_command_keeps_the_field_order_of_its_wire_map(
    action: str, args: Any, keys: list[str]
) -> None:
    command = run(action, args, CHALLENGE)[0]
    assert list(command.data) == keys
    stream = EDGE if command.target == "edge" else MEDIA
    assert read(stream, command.name, command.data).data() == command.data


def test_a_route_s_latch_private_reaches_the_media_leg() -> None:
    """Session field ``latch_private`` (set by the call's route) is on the create command
    of its leg, and of the leg that replaces it on another node."""
    for action, args in (("media.create", {"mode": "answer"}), ("media.relocate", None)):
        assert "latch_private" not in run(action, args)[0].data
        commands: list[Command] = []
        session = {**SESSION, "latch_private": "true"}
        ctx = Context(session, Event("e1", "X", {}), 1.0, commands, set())
        ACTIONS[action].fn(ctx, args)
        assert commands[0].data["latch_private"] is True


def test_fields_left_out_stay_off_the_wire() -> None:
    """An app command's fields go as they came: a missing one is absent, not null."""
    (record,) = run("media.record", None, {"direction": "in"})
    assert record.data == {"media_id": "s-1.m", "direction": "in"}


def test_a_record_must_be_one_of_its_command_types() -> None:
    ctx = Context(dict(SESSION), Event("e1", "X"), 1.0, [], set())
    with pytest.raises(ValueError, match="MediaLeg is no 'play' command"):
        ctx.command("media", "play", MediaLeg(media_id="m"))
