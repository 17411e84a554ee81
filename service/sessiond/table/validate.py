"""Whole-table checks on a compiled table: events, exits, reachability, terminal states.

Run after the loader has checked each entry on its own. Reports through ``add(line, msg)``.
"""

from __future__ import annotations

from collections.abc import Callable

from sessiond.core.vocabulary import PRODUCED
from sessiond.table.model import ANY, Table

Report = Callable[[int, str], None]


def validate(table: Table, add: Report) -> None:
    _check_events(table, add)
    _check_terminals(table, add)
    _check_exits(table, add)
    _check_reachable(table, add)
    _check_conditions(table, add)


def raised_events(table: Table) -> dict[str, int]:
    """Events the table raises itself (timeouts, triggers, ``raise:``), with a line each."""
    out: dict[str, int] = {}
    for state in table.states.values():
        if state.timeout is not None:
            out.setdefault(state.timeout.event, state.line)
    for trig in table.triggers:
        out.setdefault(trig.event, trig.line)
    for entry in table.entries.values():
        for alt in entry.alternatives:
            for name in alt.raises:
                out.setdefault(name, alt.line)
            for action in alt.actions:  # named timers
                if action.name == "timer.start":
                    out.setdefault(str(action.args["event"]), alt.line)
    return out


def _check_events(table: Table, add: Report) -> None:
    raised = raised_events(table)
    handled = {event for (_, _, event) in table.entries}
    for entry in table.entries.values():
        if entry.event not in PRODUCED and entry.event not in raised:
            add(
                entry.line,
                f"unknown event {entry.event!r}: no component produces it and the "
                "table never raises it",
            )
    for name, line in raised.items():
        if name in PRODUCED:
            add(line, f"event {name!r} is produced by a component; raise a name of your own")
        elif name not in handled:
            add(line, f"event {name!r} is raised but no transition handles it")


def _check_terminals(table: Table, add: Report) -> None:
    if not any(s.terminal for s in table.states.values()):
        add(1, "the table has no terminal state: sessions could never end")
    if table.states[table.initial].terminal:
        add(table.states[table.initial].line, f"initial state {table.initial} is terminal")
    for state in table.states.values():
        if not state.terminal:
            continue
        if state.timeout is not None:
            add(state.line, f"terminal state {state.name} has a timeout (an exit)")
        for entry in table.entries.values():
            if entry.state != state.name or entry.ignore is not None:
                continue
            for alt in entry.alternatives:
                if (
                    alt.actions
                    or alt.raises
                    or alt.conditions
                    or alt.next not in (None, state.name)
                ):
                    add(
                        alt.line,
                        f"terminal state {state.name} has a transition on "
                        f"{entry.event}: only 'publish' (a notification) is allowed there",
                    )


def _successors(table: Table, state: str) -> set[str]:
    out: set[str] = set()
    sdef = table.states[state]
    if sdef.terminal:
        return out
    if sdef.timeout is not None:
        out.add(state)  # the timeout event itself is handled by some entry below
    for entry in table.entries.values():
        if entry.state in (state, ANY):
            for alt in entry.alternatives:
                out.add(alt.next or state)
    return out


def _check_exits(table: Table, add: Report) -> None:
    for name, state in table.states.items():
        if state.terminal:
            continue
        if not (_successors(table, name) - {name}):
            add(state.line, f"non-terminal state {name} has no way out")


def _check_reachable(table: Table, add: Report) -> None:
    seen = {table.initial}
    todo = [table.initial]
    while todo:
        for nxt in _successors(table, todo.pop()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    for name, state in table.states.items():
        if name not in seen:
            add(state.line, f"state {name} is unreachable from {table.initial}")


def _check_conditions(table: Table, add: Report) -> None:
    set_somewhere = {
        name
        for entry in table.entries.values()
        for alt in entry.alternatives
        for name, value in alt.conditions
        if value
    }
    for trig in table.triggers:
        for cond in trig.conditions:
            if cond in table.conditions and cond not in set_somewhere:
                add(trig.line, f"condition {cond!r} is never set true: the trigger cannot fire")
