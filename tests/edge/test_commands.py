"""Edge command entries read into their typed records; what cannot be read is skipped."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from sessiond.core.messages import Respond, SendRequest
from sessiond.edge.commands import decode_command
from sessiond.store.entries import EntryError


def entry(kind: str, **data: Any) -> dict[bytes, bytes]:
    packed = msgpack.packb(data)
    return {b"id": b"c1", b"type": kind.encode(), b"sid": b"", b"data": packed}


def test_a_command_is_read_into_its_record() -> None:
    assert decode_command(entry("respond", code=180, txn="t", local_tag="b")) == (
        "c1",
        "respond",
        Respond(code=180, txn="t", local_tag="b"),
    )
    dialog: dict[str, Any] = dict(
        call_id="c",
        local_tag="l",
        remote_tag="r",
        local_uri="sip:a@h",
        remote_uri="sip:b@h",
        remote_target="sip:b@h",
        route_set="",
    )
    _, kind, record = decode_command(entry("bye", cseq=2, **dialog))
    assert (kind, record) == ("bye", SendRequest(cseq=2, **dialog))


def test_malformed_and_unknown_commands_are_skipped() -> None:
    assert decode_command(entry("respond", code=200))[2] is None  # no txn
    assert decode_command(entry("respond", code=200, txn=5))[2] is None
    assert decode_command(entry("frobnicate", code=200))[2] is None
    assert decode_command({b"junk": b"1"}) == ("", "", None)
    with pytest.raises(EntryError):  # not msgpack: the command loop counts it
        decode_command({b"id": b"c1", b"type": b"respond", b"data": b"\xc1\xc1"})
