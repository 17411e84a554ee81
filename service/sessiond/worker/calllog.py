"""One log line per call at its start, its answer and its end, from the worker that applied
the transition (logger ``sessiond.calls``, INFO).

    call start sid=S call_id=C sip:alice@h -> sip:bob@h (UAS)
    call answer sid=S call_id=C sip:alice@h -> sip:bob@h after 0.412s
    call end sid=S call_id=C sip:alice@h -> sip:bob@h code=200 (remote hangup) duration=3.021s

A call starts when its session is created, is answered when a transition publishes
``Answered`` to the application (we sent the 200, or received it), and ends when it reaches a
terminal state; ``code`` and ``reason`` are the session's ``end_code``/``end_reason`` and
``duration`` runs from the session's creation to that transition. Each line also carries
these as structured fields (``--log-format json``). Only transitions this worker stored are
logged: a duplicate (a redelivery of an event applied before) logs nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sessiond.core.types import Verdict
from sessiond.worker.applier import Handled

log = logging.getLogger("sessiond.calls")


def record(handled: Handled) -> None:
    """Log what ``handled`` (and its follow-up: a new call's decision) did to its call."""
    if not log.isEnabledFor(logging.INFO):
        return
    item: Handled | None = handled
    while item is not None:
        if item.status in ("created", "applied") and item.decision is not None:
            _lines(item, item.decision, item.session or {})
        item = item.followup


def _lines(handled: Handled, decision: Verdict, session: Mapping[str, str]) -> None:
    def get(name: str) -> str:
        return decision.fields.get(name) or session.get(name, "")

    answered = any(c.target == "app" and c.name == "Answered" for c in decision.commands)
    if handled.status != "created" and not answered and not decision.terminal:
        return
    role = get("role")
    local, remote = get("local_uri"), get("remote_uri")
    caller, callee = (local, remote) if role == "UAC" else (remote, local)
    fields: dict[str, Any] = {
        "call": "",
        "sid": handled.sid,
        "call_id": get("call_id"),
        "from": caller,
        "to": callee,
        "role": role,
    }
    head = f"sid={handled.sid} call_id={fields['call_id']} {caller} -> {callee}"
    elapsed = _elapsed(get("created_at"), get("updated_at"))
    if handled.status == "created":
        _emit("start", f"call start {head} ({role})", fields)
    if answered:
        _emit("answer", f"call answer {head} after {elapsed:.3f}s", {**fields, "after": elapsed})
    if decision.terminal:
        code, reason = get("end_code"), get("end_reason")
        end = {**fields, "code": int(code) if code.isdigit() else code, "reason": reason}
        end["duration"] = elapsed
        text = f"call end {head} code={code or '-'} ({reason or 'no reason'})"
        _emit("end", f"{text} duration={elapsed:.3f}s", end)


def _emit(what: str, message: str, fields: dict[str, Any]) -> None:
    log.info("%s", message, extra={"fields": {**fields, "call": what}})


def _elapsed(start: str, now: str) -> float:
    try:
        return round(max(0.0, float(now) - float(start)), 3)
    except ValueError:
        return 0.0
