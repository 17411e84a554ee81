"""Driving one session of the default table through the pure engine, as a worker would: each
transition's fields go into the session and its version goes up by one (the store's script
does that on every write), so a test reads as the call flow it checks. No Redis, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sessiond.core.resources import default_table_path
from sessiond.core.types import Command, Event, Outcome, Verdict
from sessiond.table import load_table
from sessiond.table.engine import decide

TABLE = load_table(default_table_path())
SID = "0123456789-abcdef"
THEIR_SDP = "v=0\r\no=alice 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\n"
OUR_SDP = "v=0\r\no=sessiond 7 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
NEW_SDP = "v=0\r\no=sessiond 7 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
DIALOG = {
    "sid": SID,
    "call_id": "c@h",
    "local_tag": "l",
    "local_uri": "sip:us@127.0.0.1",
    "remote_uri": "sip:them@192.0.2.1",
    "remote_target": "sip:them@192.0.2.1:5060",
    "media_id": f"{SID}.m",
}


class Call:
    """A session and the verdict of the last event it took."""

    def __init__(self, role: str, state: str = "Idle", **fields: str) -> None:
        version = "0" if state == "Idle" else "7"
        self.session: dict[str, str] = {
            **DIALOG,
            "role": role,
            "state": state,
            "version": version,
            "epoch": version,
            **fields,
        }
        self.now = 1000.0  # the clock: one second further after each event
        self.at = 0.0  # when the last event was decided

    @classmethod
    def established(cls, role: str = "UAS", state: str = "Established", **fields: str) -> Call:
        """A confirmed dialog with media on node m1 and a few requests behind it (or, with
        ``state``, the same dialog in another of its states)."""
        base = {
            "remote_tag": "r",
            "local_cseq": "3",
            "invite_cseq": "1",
            "txn": "z9hG4bK.invite",
            "local_sdp": OUR_SDP,
            "remote_sdp": THEIR_SDP,
            "media_node": "m1",
        }
        return cls(role, state, **{**base, **fields})

    @property
    def state(self) -> str:
        return self.session["state"]

    def __getitem__(self, name: str) -> str:
        return self.session.get(name, "")

    def on(self, kind: str, **data: Any) -> Verdict:
        """Decide event ``kind`` (with ``data``) and, if it made a transition, store it."""
        event = Event(f"ev{self.session['version']}", kind, data, SID)
        self.at = self.now
        verdict = decide(TABLE, self.session, event, self.now)
        if verdict.outcome is Outcome.TRANSITION:
            self.session.update(verdict.fields)
            self.session["version"] = str(int(self.session["version"]) + 1)
        self.now += 1.0
        return verdict

    def timeout(self, epoch: str = "") -> Verdict:
        """The current state's timeout fires (armed at ``epoch``; default: the current one)."""
        timeout = TABLE.states[self.state].timeout
        assert timeout is not None, f"{self.state} has no timeout"
        return self.on(timeout.event, epoch=epoch or self.session["epoch"])

    def timer(self, name: str, epoch: str = "") -> Verdict:
        """The named timer ``name`` (timer.start) fires (default: the one running now)."""
        return self.on(name, epoch=epoch or self.session[f"timer.{name}"])


def sent(verdict: Verdict, target: str, name: str = "") -> list[Command]:
    return [c for c in verdict.commands if c.target == target and name in ("", c.name)]


def one(verdict: Verdict, target: str, name: str) -> Mapping[str, Any]:
    """The data of the only ``target`` command ``name`` of ``verdict``."""
    found = sent(verdict, target, name)
    assert len(found) == 1, f"{len(found)} {target} {name} commands in {verdict.commands}"
    return found[0].data


def sip(verdict: Verdict) -> list[str]:
    """The edge commands, readable: "respond 180", "request INVITE", "bye", "ack"..."""
    out = []
    for c in sent(verdict, "edge"):
        if c.name == "respond":
            out.append(f"respond {c.data['code']}")
        elif c.name == "request":
            out.append(f"request {c.data['method']}")
        else:
            out.append(c.name)
    return out


def media(verdict: Verdict) -> list[str]:
    """The media commands (to the session's node or to the pool), in order."""
    return [c.name for c in verdict.commands if c.target in ("media", "media-pool")]


def published(verdict: Verdict) -> list[str]:
    return [c.name for c in sent(verdict, "app")]


def app_event(verdict: Verdict, name: str) -> Mapping[str, Any]:
    return one(verdict, "app", name)


def timers(verdict: Verdict) -> list[tuple[str, str]]:
    """("arm" | "cancel", timer event) of each timer command, in order."""
    return [(c.name, str(c.data["event"])) for c in sent(verdict, "timer")]


def path(verdict: Verdict) -> list[tuple[str, str, str]]:
    """The history steps as (from state, event, to state)."""
    return [(s.from_state, s.event, s.to_state) for s in verdict.steps]


def headers(data: Mapping[str, Any]) -> dict[str, str]:
    return {name: value for name, value in data.get("headers", [])}
