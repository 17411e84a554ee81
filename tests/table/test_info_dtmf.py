"""DTMF by SIP INFO is sent one digit at a time, in order, whatever the commands' timing:
the engine against the default table, no I/O."""

from __future__ import annotations

from typing import Any

from sessiond.core.resources import default_table_path
from sessiond.core.types import Event
from sessiond.table import load_table
from sessiond.table.engine import decide

TABLE = load_table(default_table_path())


def _step(session: dict[str, str], kind: str, data: dict[str, Any]) -> list[str]:
    """Apply one event; the digits of the INFO requests it sent."""
    decision = decide(TABLE, session, Event(f"e{session['version']}", kind, data), 1.0)
    session.update(decision.fields)
    session["version"] = str(int(session["version"]) + 1)
    return [
        str(c.data["body"]).split("\r\n")[0].removeprefix("Signal=")
        for c in decision.commands
        if c.target == "edge" and c.data.get("method") == "INFO"
    ]


def test_digits_queue_behind_the_unanswered_info() -> None:
    session = {"sid": "0123456789-abcdef", "role": "UAC", "state": "Established", "version": "3"}
    assert _step(session, "SendDtmf", {"digits": "12", "method": "info"}) == ["1"]
    assert _step(session, "SendDtmf", {"digits": "3", "method": "info"}) == []  # "1" is out
    assert _step(session, "InfoResponse", {"code": 200, "method": "INFO"}) == ["2"]
    assert _step(session, "InfoResponse", {"code": 200, "method": "INFO"}) == ["3"]
    assert _step(session, "InfoResponse", {"code": 200, "method": "INFO"}) == []
    assert session["info_pending"] == ""
    assert _step(session, "SendDtmf", {"digits": "4", "method": "info"}) == ["4"]  # idle: at once


def test_an_info_nobody_answers_ends_the_dialog() -> None:
    """RFC 3261 12.2.1.2: no response at all to a request in the dialog ends it, as a 408:
    the digits behind it are not sent, and a BYE goes out."""
    session = {"sid": "0123456789-abcdef", "role": "UAC", "state": "Established", "version": "3"}
    assert _step(session, "SendDtmf", {"digits": "12", "method": "info"}) == ["1"]
    decision = decide(TABLE, session, Event("t1", "TransactionTimeout", {"method": "INFO"}), 1.0)
    assert decision.state == "Terminating"
    assert [c.name for c in decision.commands if c.target == "edge"] == ["bye"]
