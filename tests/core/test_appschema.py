"""Application commands are checked before they reach a table; bad ones are refused."""

from __future__ import annotations

from typing import Any

import pytest

from sessiond.core.appschema import SCHEMAS, problem
from sessiond.core.vocabulary import PRODUCED


def test_every_application_command_has_a_schema() -> None:
    from_apps = {k for k, v in PRODUCED.items() if v.startswith(("app:", "handler:"))}
    assert from_apps == set(SCHEMAS)


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        ("AcceptCall", {}),
        ("RejectCall", {"code": 486}),
        ("Play", {"tone": 440, "seconds": 2.5}),
        ("Play", {"file": "/srv/prompts/hello.wav", "loop": True}),
        ("Record", {"path": "/tmp/x.wav", "direction": "in"}),
        ("SendDtmf", {"digits": "12#*A"}),
        ("RedirectCall", {"contacts": ["sip:alice@192.0.2.1", "<sip:bob@example.com>"]}),
        (
            "MakeCall",
            {
                "target": "sip:bob@127.0.0.1:5062",
                "call_id": "abc@h",
                "local_tag": "t1",
                "to": "sip:bob@127.0.0.1",
                "edge": "e1",
                "srtp": "require",
            },
        ),
        ("Invite", {"anything": object()}),  # not an application command: not checked here
    ],
)
def test_well_formed(kind: str, data: dict[str, Any]) -> None:
    assert problem(kind, data) is None


@pytest.mark.parametrize(
    ("kind", "data", "why"),
    [
        ("RejectCall", {"code": 200}, "bad code"),
        ("RejectCall", {"code": "486"}, "bad code"),
        ("RejectCall", {"code": True}, "bad code"),
        ("Play", {"tone": 440, "file": "x.wav"}, "exactly one"),
        ("Play", {"tone": 1e9}, "bad tone"),
        ("Record", {}, "missing path"),
        ("Record", {"path": "x\r\nVia: evil"}, "bad path"),
        ("SendDtmf", {"digits": "1; rm -rf /"}, "bad digits"),
        ("RedirectCall", {"contacts": ["sip:a@b\r\nX: injected"]}, "bad contacts"),
        ("RedirectCall", {"contacts": ["http://example.com"]}, "bad contacts"),
        ("MakeCall", {"target": "sip:bob@h", "call_id": "c"}, "missing local_tag"),
        (
            "MakeCall",
            {"target": "sip:bob@h", "call_id": "c", "local_tag": "t", "srtp": "on"},
            "srtp",
        ),
        ("AcceptCall", {"__class__": "x"}, "unknown field"),
    ],
)
def test_malformed_refused(kind: str, data: dict[str, Any], why: str) -> None:
    found = problem(kind, data)
    assert found is not None
    assert why in found
