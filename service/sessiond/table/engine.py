"""The decision engine: a pure function of (table, session snapshot, event, now).

Theory of operation
-------------------
A session is a flat ``str -> str`` mapping (the Redis hash). ``decide`` looks up the entry
for (role, state, event) in the table, picks the first alternative whose guards hold, runs
its actions against a working copy of the session, applies condition updates, and moves to
the next state. Actions never do I/O: they append :class:`Command` objects and set fields.

Follow-up events (a trigger whose conditions all became true, or an alternative's
``raise:``) go on a FIFO queue and are processed in order after the current step, against the
updated working copy, never by recursion. The result is one :class:`Verdict`: the field
updates, the commands (including timer arm/cancel and application events), and the steps for
the history stream. The store applies it atomically; nothing here touches Redis.

Timers: entering a state with a ``timeout`` arms a timer tagged with the session's new
``epoch`` (the version the transition produces); leaving it cancels that timer. A timeout
event whose epoch is not the session's current epoch is stale and ignored, so a timer that
escaped cancellation can never fire into a later state.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

from sessiond.core.errors import EngineError
from sessiond.core.types import Command, Context, Event, Outcome, Step, Verdict, history_data
from sessiond.table.model import Alternative, Table

MAX_STEPS = 32
# Fields of the triggering event an application event carries along (the rest stay internal:
# txn, sdp...).
APP_EVENT_FIELDS = (
    "code",
    "reason",
    "digit",
    "path",
    "seconds",
    "error",
    "media_id",
    "method",
    "refer_to",
    "room",
    "members",
    "talking",
    "level",
)
# Session fields an application event carries when set.
APP_SESSION_FIELDS = (
    "end_code",
    "end_reason",
    "hold",
    "transfer_sid",
    "transfer_target",
    "peer",
    "conference",
)


def decide(table: Table, session: Mapping[str, str], event: Event, now: float) -> Verdict:
    """Decide what ``event`` does to ``session``. Pure: no I/O, no clock, no randomness."""
    state = session["state"]
    role = session["role"]
    epoch = str(event.data.get("epoch", ""))
    if epoch.startswith("t"):  # a named timer (timer.start): the session keeps its epoch
        if epoch != session.get(f"timer.{event.type}", ""):
            return Verdict(Outcome.IGNORED, "stale timer (restarted or stopped since)", state)
    elif event.type in table.timeout_events and "epoch" in event.data:
        if epoch != session.get("epoch", ""):
            return Verdict(Outcome.IGNORED, "stale timer (state changed since it was armed)", state)
    entry = table.lookup(role, state, event.type)
    if entry is None:
        return Verdict(
            Outcome.NO_TRANSITION, f"no entry for ({role}, {state}, {event.type})", state
        )
    if entry.ignore is not None:
        return Verdict(Outcome.IGNORED, entry.ignore, state)
    alt = _choose(entry.alternatives, session, event)
    if alt is None:
        return Verdict(Outcome.NO_TRANSITION, f"no guard matched at line {entry.line}", state)
    return _run(table, session, event, alt, now)


def _choose(
    alternatives: tuple[Alternative, ...], session: Mapping[str, str], event: Event
) -> Alternative | None:
    for alt in alternatives:
        for g in alt.guards:
            if g.fn(session, event, g.args) == g.negate:
                break
        else:
            return alt
    return None


def _run(
    table: Table, session: Mapping[str, str], first: Event, alt: Alternative, now: float
) -> Verdict:
    view = dict(session)
    view["_event_id"] = first.id
    commands: list[Command] = []
    steps: list[Step] = []
    touched: set[str] = {"state", "updated_at"}
    queue: deque[tuple[Event, Alternative | None]] = deque([(first, alt)])
    role = session["role"]
    while queue:
        if len(steps) >= MAX_STEPS:
            raise EngineError(f"more than {MAX_STEPS} follow-up steps for event {first.type}")
        event, chosen = queue.popleft()
        state = view["state"]
        if chosen is None:
            entry = table.lookup(role, state, event.type)
            if entry is None or entry.ignore is not None:
                steps.append(
                    Step(state, event.type, state, ("(not handled here)",), history_data(event))
                )
                continue
            chosen = _choose(entry.alternatives, view, event)
            if chosen is None:
                steps.append(
                    Step(state, event.type, state, ("(no guard matched)",), history_data(event))
                )
                continue
        _apply(table, view, event, chosen, now, commands, steps, queue, touched)
    return _finish(table, session, view, first, now, commands, steps, touched)


def _apply(
    table: Table,
    view: dict[str, str],
    event: Event,
    alt: Alternative,
    now: float,
    commands: list[Command],
    steps: list[Step],
    queue: deque[tuple[Event, Alternative | None]],
    touched: set[str],
) -> None:
    state = view["state"]
    ctx = Context(view, event, now, commands, touched)
    for action in alt.actions:
        action.fn(ctx, action.args)
    raised_conds: set[str] = set()  # conditions this step made true (were not before)
    if alt.conditions:
        before = {name: view.get(f"cond.{name}") for name, _ in alt.conditions}
        for name, value in alt.conditions:
            key = f"cond.{name}"
            view[key] = "1" if value else "0"
            touched.add(key)
        raised_conds = {n for n, was in before.items() if was != "1" and view[f"cond.{n}"] == "1"}
    nxt = alt.next or state
    view["state"] = nxt
    for published in alt.publish:
        ctx.command("app", published, _app_data(view, event))
    steps.append(Step(state, event.type, nxt, alt.action_text, history_data(event)))
    n = len(steps)
    for raised in alt.raises:
        queue.append((Event(f"{event.id}#{n}{raised}", raised, {}, view.get("sid", "")), None))
    if raised_conds:  # a trigger fires when this step made its last condition true
        for trig in table.triggers:
            if not raised_conds.isdisjoint(trig.conditions) and _met(trig.conditions, view):
                queue.append((Event(f"{event.id}#{n}{trig.event}", trig.event, {}, ""), None))


def _met(conditions: tuple[str, ...], view: Mapping[str, str]) -> bool:
    for c in conditions:
        if view.get(f"cond.{c}") != "1":
            return False
    return True


def _app_data(view: Mapping[str, str], event: Event) -> dict[str, Any]:
    data: dict[str, Any] = {
        "sid": view.get("sid", ""),
        "state": view["state"],
        "call_id": view.get("call_id", ""),
        "local_uri": view.get("local_uri", ""),
        "remote_uri": view.get("remote_uri", ""),
    }
    for key in APP_EVENT_FIELDS:
        if key in event.data:
            data[key] = event.data[key]
    for key in APP_SESSION_FIELDS:
        if view.get(key):
            data[key] = view[key]
    return data


def _finish(
    table: Table,
    session: Mapping[str, str],
    view: dict[str, str],
    first: Event,
    now: float,
    commands: list[Command],
    steps: list[Step],
    touched: set[str],
) -> Verdict:
    view.pop("_event_id", None)
    old_state, new_state = session["state"], view["state"]
    # A new session (version 0) enters its first state even if its first step is a self-loop.
    version = session.get("version", "0")
    stamp = f"{now:.3f}"
    path = [steps[0].from_state]
    changed = version == "0"
    for step in steps:
        path.append(step.to_state)
        changed = changed or step.from_state != step.to_state
    if changed:
        epoch = str(int(version) + 1)
        _timer_commands(table, session, old_state, new_state, epoch, now, first.id, commands)
        view["epoch"] = epoch
        view["entered_state_at"] = stamp
        touched.update(("epoch", "entered_state_at"))
    view["updated_at"] = stamp
    get = session.get
    fields = {k: view[k] for k in touched if get(k) != view[k]}
    terminal = table.states[new_state].terminal
    reason = " -> ".join(path)
    return Verdict(
        Outcome.TRANSITION, reason, new_state, fields, tuple(commands), tuple(steps), terminal
    )


def _timer_commands(
    table: Table,
    session: Mapping[str, str],
    old_state: str,
    new_state: str,
    epoch: str,
    now: float,
    event_id: str,
    commands: list[Command],
) -> None:
    sid = session.get("sid", "")
    old = table.states[old_state].timeout
    if old is not None and session.get("version", "0") != "0":
        data = {"sid": sid, "event": old.event, "epoch": session.get("epoch", "")}
        commands.append(Command(f"{event_id}/{len(commands)}", "timer", "cancel", data))
    new = table.states[new_state].timeout
    if new is not None:
        data2: dict[str, Any] = {
            "sid": sid,
            "event": new.event,
            "epoch": epoch,
            "due": now + new.seconds,
        }
        commands.append(Command(f"{event_id}/{len(commands)}", "timer", "arm", data2))
