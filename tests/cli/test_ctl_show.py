"""``sessiond ctl show`` prints whole values (wrapped, never cut) and readable times."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import pytest

from sessiond.cli.main import main
from sessiond.cli.readable import history_line, iso_time, value_rows
from sessiond.core.types import Event
from sessiond.store import Keys, Store, new_sid
from sessiond.store.client import connect
from sessiond.store.store import delete_namespace
from sessiond.store.tableset import TableSet
from sessiond.table import Table
from sessiond.worker.applier import Applier

pytestmark = pytest.mark.redis

ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
SDP = "".join(
    ["v=0\r\n", "o=- 1 1 IN IP4 127.0.0.1\r\n", "s=-\r\n", "c=IN IP4 127.0.0.1\r\n"]
    + [f"a=rtpmap:{96 + n} codec{n}/8000\r\n" for n in range(20)]
    + ["a=fmtp:96 " + ";".join(f"p{n}=1" for n in range(60)) + "\r\n", "a=sendrecv\r\n"]
)
TXN = (
    "udp 127.0.0.1 5070\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-" + "b" * 150 + "\r\n"
    "From: <sip:alice@127.0.0.1>;tag=r\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: show@h\r\n"
    "CSeq: 1 INVITE"
)


def shown_value(out: str, name: str) -> str:
    """The value of field ``name`` as printed (its rows joined, the escapes undone)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(f"{name}  "))
    column = lines[start].index(f"{name}  ") + len(name) + 2
    rows = [lines[start][column:]]
    for line in lines[start + 1 :]:
        if not line.startswith(" " * column) or not line[column:].strip():
            break
        rows.append(line[column:])
    return "".join(rows).replace("\\r\\n", "\r\n").replace("\\n", "\n")


def test_value_rows_keep_everything() -> None:
    value = "a" * 250 + "\r\nb\x1bc\nd"
    rows = value_rows(value, width=100)
    assert rows == ["a" * 100, "a" * 100, "a" * 50 + "\\r\\n", "b\\x1bc\\n", "d"]
    assert value_rows("") == [""]
    assert value_rows("x\r\n") == ["x\\r\\n"]
    assert iso_time(0.0) == "1970-01-01T00:00:00.000Z"
    assert iso_time(1764900452.1239) == "2025-12-05T02:07:32.123Z"
    entry = {"at": "1.5", "version": "3", "from": "A", "event": "E", "to": "B", "actions": "x"}
    line = history_line({**entry, "code": "486", "reason": "Busy Here", "digit": "\x1b"})
    assert line == (
        "  1970-01-01T00:00:01.500Z  v  3  A --E--> B code=486 reason='Busy Here' "
        "digit='\\x1b'  [x]  ()"
    )


def test_show_prints_whole_values_readable_times_and_history_payloads(
    redis_url: str, default_table: Table, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = Keys(f"ts{uuid.uuid4().hex[:8]}")
    sid = new_sid("show@h")

    async def setup() -> None:
        redis = connect(redis_url)
        applier = Applier(Store(redis, keys), TableSet([default_table], redis, keys))
        fields = {
            "sid": sid,
            "role": "UAS",
            "call_id": "show@h",
            "local_tag": "l",
            "remote_tag": "r",
            "remote_uri": "sip:alice@127.0.0.1",
            "media_id": f"{sid}.m",
        }
        invite = Event("i", "Invite", {"sdp": SDP, "txn": TXN})
        await applier.create(fields, keys.registry_keys(fields), invite)
        await apply(applier, 0, [("MediaReady", ready), ("AcceptCall", {})])
        await redis.aclose()

    async def finish() -> None:  # the INVITE's txn is forgotten at the ACK: shown before it
        redis = connect(redis_url)
        applier = Applier(Store(redis, keys), TableSet([default_table], redis, keys))
        await apply(
            applier,
            2,
            [
                ("Ack", {}),
                ("DtmfReceived", {"digit": "7", "media_id": f"{sid}.m"}),
                ("Hangup", {"by": "ctl"}),
                ("ByeDone", {"kind": "response", "code": 200, "reason": "OK"}),
            ],
        )
        await redis.aclose()

    async def apply(applier: Applier, first: int, events: list[tuple[str, dict[str, Any]]]) -> None:
        for n, (name, data) in enumerate(events, first):
            assert (await applier.handle(sid, Event(f"e{n}", name, data))).status == "applied"

    ready = {"sdp": "v=0\r\n", "media_node": "m1", "media_id": f"{sid}.m"}

    asyncio.run(setup())
    try:
        assert main(["ctl", "--redis", redis_url, "--namespace", keys.ns, "show", sid]) == 0
        out = capsys.readouterr().out
        asyncio.run(finish())
        assert main(["ctl", "--redis", redis_url, "--namespace", keys.ns, "show", sid]) == 0
        end = capsys.readouterr().out
    finally:

        async def cleanup() -> None:
            redis = connect(redis_url)
            await delete_namespace(redis, keys.ns)
            await redis.aclose()

        asyncio.run(cleanup())
    assert shown_value(out, "remote_sdp") == SDP  # nothing cut: the SDP's tail is there
    assert shown_value(out, "txn") == TXN  # nor the CSeq line
    assert "CSeq: 1 INVITE" in out
    fields = out.split("\ntime in state:", 1)[0].splitlines()
    assert max(len(line) for line in fields) <= 120  # long values wrapped
    for name in ("created_at", "entered_state_at", "updated_at"):
        assert re.fullmatch(ISO, shown_value(out, name)), name
    assert "CSeq: 1 INVITE" not in end.split("\nhistory:\n", 1)[0]  # txn forgotten at the ACK
    history = end.split("\nhistory:\n", 1)[1].splitlines()
    assert len(history) == 8
    assert all(re.match(rf"  {ISO}  v", line) for line in history), history
    assert any("--DtmfReceived--> Established digit=7" in line for line in history), history
    assert any("--ByeDone--> Terminated code=200 reason=OK" in line for line in history), history
