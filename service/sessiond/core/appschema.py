"""The shape of every command an application (or a handler) may publish. Pure.

Application commands arrive on the event streams from outside the service's own processes,
so the worker checks each one before it can reach a state table: the type must be known and
its data must have the listed fields with the right types and ranges. Nothing is evaluated;
a command that does not fit is dropped, logged and counted, never applied.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from sessiond.core.vocabulary import MEDIA_MODES, SRTP_POLICIES


class Check:
    """A test of one field's value, with the words the schema page (docs/messages.md) shows."""

    __slots__ = ("test", "doc")

    def __init__(self, test: Callable[[Any], bool], doc: str) -> None:
        self.test = test
        self.doc = doc

    def __call__(self, value: Any) -> bool:
        return self.test(value)


_SIP_URI = re.compile(r"^<?sips?:[^\s<>\r\n]{1,256}>?$")
_TAG = re.compile(r"^[A-Za-z0-9.!%*_+`'~-]{1,64}$")
_DIGITS = re.compile(r"^[0-9*#A-Da-d]{1,32}$")
_CALL_ID = re.compile(r"^[\x21-\x7e]{1,256}$")


def _text(limit: int = 1024) -> Check:
    return Check(
        lambda v: isinstance(v, str) and 0 < len(v) <= limit and "\r" not in v and "\n" not in v,
        f"str, one line of 1-{limit} characters",
    )


def _body(limit: int) -> Check:
    return Check(lambda v: isinstance(v, str) and 0 < len(v) <= limit, f"str, 1-{limit} characters")


def _number(low: float, high: float, integer: bool = False) -> Check:
    def check(v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, int if integer else (int, float)):
            return False
        return bool(low <= v <= high)

    return Check(check, f"{'int' if integer else 'float'}, {low:g} to {high:g}")


def _matches(pattern: re.Pattern[str], doc: str) -> Check:
    return Check(lambda v: isinstance(v, str) and pattern.fullmatch(v) is not None, doc)


def _one_of(*values: Any) -> Check:
    return Check(lambda v: v in values, " or ".join(str(v) for v in values))


def _is_uris(v: Any) -> bool:
    items = [v] if isinstance(v, str) else v
    return (
        isinstance(items, list)
        and 0 < len(items) <= 8
        and all(isinstance(u, str) and _SIP_URI.fullmatch(u) for u in items)
    )


_URI = _matches(_SIP_URI, "str, a SIP URI")
_uris = Check(_is_uris, "a SIP URI or a list of 1-8")


_PLAY = {
    "tone": _number(1, 4000),
    "file": _text(),
    "seconds": _number(0.02, 3600),
    "loop": Check(lambda v: isinstance(v, bool), "bool"),
}

_BOOL = Check(lambda v: isinstance(v, bool), "bool")
_ROOM = _matches(re.compile(r"^[A-Za-z0-9._@+-]{1,64}$"), "str, a room name")
_GAIN = _number(-24, 12)
_WHISPER = Check(
    lambda v: isinstance(v, str) and len(v) <= 64 and "\r" not in v and "\n" not in v,
    "str, a member's session id, or empty",
)

# a registered phone's binding: where its requests go (the edge's --registrar)
_DESTINATION = _matches(
    re.compile(r"^(UDP|TCP|TLS) (\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$"),
    "str, TRANSPORT host:port",
)

# type -> (required fields, optional fields); every field maps to its check
SCHEMAS: dict[str, tuple[dict[str, Check], dict[str, Check]]] = {
    "MakeCall": (
        {
            "target": _URI,
            "call_id": _matches(_CALL_ID, "str, a Call-ID"),
            "local_tag": _matches(_TAG, "str, a SIP tag"),
        },
        {
            "to": _URI,
            "from": _URI,
            "edge": _text(128),
            "table": _text(64),
            "peer": _text(128),
            "replaces": _text(512),
            "media_node": _text(128),
            "latch_private": Check(lambda v: isinstance(v, bool), "bool"),
            "srtp": _one_of(*SRTP_POLICIES),
            "destination": _DESTINATION,
            "media": _one_of(*MEDIA_MODES),
            "sdp": _body(16384),
        },
    ),
    "AcceptCall": ({}, {}),
    "RejectCall": ({}, {"code": _number(300, 699, integer=True), "reason": _text(128)}),
    "Hangup": ({}, {"by": _text(64)}),
    "Play": ({}, _PLAY),
    "StopPlay": ({}, {}),
    "Record": ({"path": _text()}, {"direction": _one_of("in", "out", "both")}),
    "StopRecord": ({}, {}),
    "SendDtmf": (
        {"digits": _matches(_DIGITS, "str, 1-32 of 0-9 * # A-D")},
        {"duration_ms": _number(40, 5000, True), "method": _one_of("rfc4733", "info")},
    ),
    "Hold": ({}, {}),
    "Progress": ({}, {}),
    "Resume": ({}, {}),
    "Transfer": ({"target": _URI}, {"replaces": _text(512)}),
    "Bridge": ({"other": _text(128)}, {}),
    "Unbridge": ({}, {}),
    "DeferCall": ({}, {}),
    "RedirectCall": ({"contacts": _uris}, {}),
    "PlayAndHangup": ({}, _PLAY),
    "ForwardCall": (
        {"target": _URI},
        {
            "srtp": _one_of(*SRTP_POLICIES),
            "to": _URI,
            "edge": _text(128),
            "destination": _DESTINATION,
            "next": _text(8192),  # JSON: the targets to try after this one, in order
            "ring": _number(1, 3600),  # seconds each target rings before the next is tried
        },
    ),
    "ConferenceCall": ({"room": _ROOM}, {}),
    "JoinConference": ({"room": _ROOM}, {"muted": _BOOL, "deaf": _BOOL, "gain_db": _GAIN}),
    "LeaveConference": ({}, {}),
    "ConferenceMember": (
        {},
        {"muted": _BOOL, "deaf": _BOOL, "gain_db": _GAIN, "whisper_to": _WHISPER},
    ),
    "ConferencePlay": ({}, {**_PLAY, "member": _BOOL}),
    "ConferenceRecord": ({"path": _text()}, {}),
    "ConferenceStopRecord": ({}, {}),
}


def problem(event_type: str, data: Mapping[str, Any]) -> str | None:
    """Why an application command does not fit its schema, or None when it does. Types
    that are not application commands (SIP, media, timer events) are not checked here."""
    schema = SCHEMAS.get(event_type)
    if schema is None:
        return None
    required, optional = schema
    for name in required:
        if name not in data:
            return f"{event_type}: missing {name}"
    for name, value in data.items():
        check = required.get(name) or optional.get(name)
        if check is None:
            return f"{event_type}: unknown field {name!r}"
        if not check(value):
            return f"{event_type}: bad {name}"
    plays = ("Play", "PlayAndHangup", "ConferencePlay")
    if event_type in plays and ("tone" in data) == ("file" in data):
        return f"{event_type}: needs exactly one of tone or file"
    return None
