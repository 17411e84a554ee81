"""Load a state table from YAML into the compiled model, collecting every problem.

Each problem is reported as ``file:line: message``; loading never stops at the first one, so
one ``sessiond table check`` run shows everything wrong with a table. Structure is checked
here; whole-table properties (reachability, exits, unhandled events) in ``validate``; a
table's ``include:`` files are merged first (``include``), each line keeping its file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from sessiond.core.errors import TableError
from sessiond.core.vocabulary import PUBLISHABLE
from sessiond.table.actions import ACTIONS
from sessiond.table.guards import GUARDS
from sessiond.table.include import TOP_KEYS, expand, listed
from sessiond.table.model import (
    ANY,
    ROLES,
    ActionCall,
    Alternative,
    Entry,
    GuardCall,
    Role,
    StateDef,
    Table,
    Timeout,
    Trigger,
)
from sessiond.table.validate import validate
from sessiond.table.yamlsrc import LineDict, LineList, YamlSourceError, load_yaml

_ENTRY_KEYS = {"role", "state", "event", "ignore", "alternatives", "description"}
_ALT_KEYS = {"when", "actions", "next", "set", "publish", "raise", "description"}
_STATE_KEYS = {"terminal", "timeout", "description"}


class _Problems:
    """Problems as (file, line, message): a line read from an included file names it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.items: list[tuple[str, int, str]] = []

    def add(self, line: int, message: str) -> None:
        self.items.append((getattr(line, "file", "") or self.path, int(line), message))

    def formatted(self) -> list[str]:
        ordered = sorted(self.items, key=lambda p: (p[0] != self.path, *p))
        return [f"{file}:{line}: {msg}" for file, line, msg in ordered]


def load_table(path: str | Path) -> Table:
    """Load and validate the table at ``path``; raise :class:`TableError` listing all problems."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise TableError([f"{p}:0: cannot read: {exc.strerror}"]) from exc
    return load_table_text(text, str(p))


def load_table_text(text: str, path: str = "<table>") -> Table:
    """Compile ``text`` (read from ``path``: includes are relative to it).

    The table's ``source`` is ``text``, or for a table with includes the expanded text (no
    includes left); its revision is that source's hash, so it changes with any included file.
    """
    problems = _Problems(path)
    try:
        doc = load_yaml(text, path)
    except YamlSourceError as exc:
        raise TableError([f"{path}:{exc.line}: {exc.message}"]) from exc
    if not isinstance(doc, LineDict):
        raise TableError([f"{path}:1: a state table is a YAML mapping"])
    if "include" in doc:
        doc, text = expand(doc, path, problems.add)
        if problems.items:  # a missing or broken include: what follows would be noise
            raise TableError(problems.formatted())
    else:
        _check_top_keys(doc, problems)
    table = _build(doc, problems, path, hashlib.sha256(text.encode()).hexdigest()[:12], text)
    if table is not None:
        validate(table, problems.add)
    if problems.items:
        raise TableError(problems.formatted())
    assert table is not None
    return table


def _check_top_keys(doc: LineDict, problems: _Problems) -> None:
    for key in doc:
        if key not in TOP_KEYS:
            problems.add(doc.line_of(key), f"unknown top-level key {key!r}")


def _build(doc: LineDict, problems: _Problems, path: str, rev: str, text: str) -> Table | None:
    name = doc.get("table")
    if not isinstance(name, str) or not name:
        problems.add(
            doc.line_of("table"),
            "'table' must name the table (a file without one can only be included)",
        )
    version = doc.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool):
        problems.add(doc.line_of("version"), "'version' must be an integer")
        version = 0
    conditions = _conditions(doc, problems)
    states = _states(doc, problems)
    initial = doc.get("initial")
    if not isinstance(initial, str) or initial not in states:
        problems.add(doc.line_of("initial"), f"initial state {initial!r} is not a declared state")
    triggers = _triggers(doc, problems, conditions)
    ctx = _EntryContext(problems, states, conditions)
    entries = ctx.entries(doc.get("transitions"), doc.line_of("transitions"))
    if not isinstance(name, str) or not isinstance(initial, str) or initial not in states:
        return None
    timeout_events = frozenset(s.timeout.event for s in states.values() if s.timeout)
    return Table(
        name,
        version,
        rev,
        path,
        initial,
        states,
        frozenset(conditions),
        triggers,
        entries,
        timeout_events,
        text,
    )


def _conditions(doc: LineDict, problems: _Problems) -> set[str]:
    raw = doc.get("conditions", LineList())
    if not isinstance(raw, list) or not all(isinstance(c, str) for c in raw):
        problems.add(doc.line_of("conditions"), "'conditions' must be a list of names")
        return set()
    return set(raw)


def _states(doc: LineDict, problems: _Problems) -> dict[str, StateDef]:
    raw = doc.get("states")
    if not isinstance(raw, LineDict) or not raw:
        problems.add(doc.line_of("states"), "'states' must map each state name to its options")
        return {}
    out: dict[str, StateDef] = {}
    for name, opts in raw.items():
        line = raw.line_of(name)
        if not isinstance(name, str) or name == ANY:
            problems.add(line, f"invalid state name {name!r}")
            continue
        opts = opts if opts is not None else LineDict()
        if not isinstance(opts, LineDict):
            problems.add(line, f"state {name}: options must be a mapping")
            continue
        for key in opts:
            if key not in _STATE_KEYS:
                problems.add(opts.line_of(key), f"state {name}: unknown option {key!r}")
        terminal = opts.get("terminal", False)
        if not isinstance(terminal, bool):
            problems.add(opts.line_of("terminal"), f"state {name}: terminal must be true/false")
            terminal = False
        timeout = _timeout(opts, name, problems)
        out[name] = StateDef(name, terminal, timeout, line)
    return out


def _timeout(opts: LineDict, state: str, problems: _Problems) -> Timeout | None:
    raw = opts.get("timeout")
    if raw is None:
        return None
    line = opts.line_of("timeout")
    if not isinstance(raw, LineDict) or set(raw) != {"after", "event"}:
        problems.add(line, f"state {state}: timeout must be {{after: seconds, event: Name}}")
        return None
    after, event = raw["after"], raw["event"]
    if isinstance(after, bool) or not isinstance(after, int | float) or after <= 0:
        problems.add(raw.line_of("after"), f"state {state}: timeout 'after' must be > 0 seconds")
        return None
    if not isinstance(event, str) or not event:
        problems.add(raw.line_of("event"), f"state {state}: timeout 'event' must be a name")
        return None
    return Timeout(float(after), event)


def _triggers(doc: LineDict, problems: _Problems, conditions: set[str]) -> tuple[Trigger, ...]:
    raw = doc.get("triggers", LineList())
    if not isinstance(raw, LineList):
        problems.add(doc.line_of("triggers"), "'triggers' must be a list")
        return ()
    out = []
    for i, item in enumerate(raw):
        line = raw.line_of(i)
        if not isinstance(item, LineDict) or set(item) != {"when_all", "raise"}:
            problems.add(line, "a trigger is {when_all: [conditions], raise: Event}")
            continue
        conds, event = item["when_all"], item["raise"]
        if not isinstance(conds, list) or not conds or not all(isinstance(c, str) for c in conds):
            problems.add(item.line_of("when_all"), "when_all must list condition names")
            continue
        for c in conds:
            if c not in conditions:
                problems.add(item.line_of("when_all"), f"unknown condition {c!r}")
        if not isinstance(event, str) or not event:
            problems.add(item.line_of("raise"), "raise must name an event")
            continue
        out.append(Trigger(tuple(conds), event, line))
    return tuple(out)


class _EntryContext:
    def __init__(self, problems: _Problems, states: dict[str, StateDef], conds: set[str]):
        self.problems = problems
        self.states = states
        self.conditions = conds

    def entries(self, raw: Any, line: int) -> dict[tuple[Role, str, str], Entry]:
        out: dict[tuple[Role, str, str], Entry] = {}
        if not isinstance(raw, LineList):
            self.problems.add(line, "'transitions' must be a list of entries")
            return out
        for i, item in enumerate(raw):
            for entry in self.entry(item, raw.line_of(i)):
                self.put(out, entry)
        return out

    def put(self, out: dict[tuple[Role, str, str], Entry], entry: Entry) -> None:
        key = (entry.role, entry.state, entry.event)
        if key in out:
            self.problems.add(
                entry.line,
                f"duplicate entry ({entry.role}, {entry.state}, {entry.event}); first at "
                f"line {out[key].line}: put the alternatives in one entry, told apart by 'when'",
            )
            return
        out[key] = entry

    def entry(self, item: Any, line: int) -> list[Entry]:
        """One entry per (state, event) when ``state`` or ``event`` lists several."""
        add = self.problems.add
        if not isinstance(item, LineDict):
            add(line, "a transition entry must be a mapping")
            return []
        for key in item:
            if key not in _ENTRY_KEYS | _ALT_KEYS:
                add(item.line_of(key), f"unknown key {key!r} in transition entry")
        role = item.get("role")
        states, events = listed(item.get("state")), listed(item.get("event"))
        ok = True
        if role not in ROLES:
            add(item.line_of("role"), f"role must be one of {', '.join(ROLES)}, not {role!r}")
            ok = False
        for state in states:
            if not isinstance(state, str) or (state != ANY and state not in self.states):
                add(item.line_of("state"), f"unknown state {state!r}")
                ok = False
        if not all(isinstance(event, str) and event for event in events):
            add(item.line_of("event"), "'event' must name an event (or list several)")
            ok = False
        alts = self.alternatives(item)
        ignore = item.get("ignore")
        if ignore is not None and not isinstance(ignore, str):
            add(item.line_of("ignore"), "'ignore' takes the reason as text")
        if not ok:
            return []
        reason = ignore if isinstance(ignore, str) else None
        r: Role = role  # type: ignore[assignment]  # checked against ROLES above
        return [Entry(r, s, e, alts, reason, line) for s in states for e in events]

    def alternatives(self, item: LineDict) -> tuple[Alternative, ...]:
        add = self.problems.add
        inline = _ALT_KEYS & set(item)
        if "ignore" in item:
            if inline or "alternatives" in item:
                add(item.line, "an 'ignore' entry has no actions, next state or alternatives")
            return ()
        if "alternatives" in item:
            if inline:
                add(item.line, "use either 'alternatives' or inline when/actions/next, not both")
            raw = item["alternatives"]
            if not isinstance(raw, LineList) or not raw:
                add(item.line_of("alternatives"), "'alternatives' must be a non-empty list")
                return ()
            alts = [self.alternative(a, raw.line_of(i), True) for i, a in enumerate(raw)]
        else:
            alts = [self.alternative(item, item.line, False)]
        good = tuple(a for a in alts if a is not None)
        self.check_order(good)
        return good

    def check_order(self, alts: tuple[Alternative, ...]) -> None:
        seen: dict[frozenset[str], int] = {}
        for i, alt in enumerate(alts):
            key = frozenset(str(g) for g in alt.guards)
            if key in seen:
                self.problems.add(
                    alt.line,
                    f"alternative has the same guards as the one at line {seen[key]}: "
                    "it can never be chosen",
                )
            seen.setdefault(key, alt.line)
            if not alt.guards and i < len(alts) - 1:
                self.problems.add(
                    alts[i + 1].line,
                    f"unreachable alternative: the one at line {alt.line} has no 'when' and "
                    "always matches",
                )

    def alternative(self, raw: Any, line: int, check_keys: bool) -> Alternative | None:
        add = self.problems.add
        if not isinstance(raw, LineDict):
            add(line, "an alternative must be a mapping")
            return None
        if check_keys:
            for key in raw:
                if key not in _ALT_KEYS:
                    add(raw.line_of(key), f"unknown key {key!r} in alternative")
        nxt = raw.get("next")
        if nxt is not None and (not isinstance(nxt, str) or nxt not in self.states):
            add(raw.line_of("next"), f"unknown state {nxt!r}")
            nxt = None
        guards = self.guards(raw)
        actions = self.actions(raw)
        conds = self.condition_updates(raw)
        publish = self.names(raw, "publish")
        for name in publish:
            if name not in PUBLISHABLE:
                add(
                    raw.line_of("publish"),
                    f"unknown application event {name!r}; known: " + ", ".join(sorted(PUBLISHABLE)),
                )
        raises = self.names(raw, "raise")
        text = tuple(str(a) for a in actions)
        return Alternative(guards, actions, nxt, conds, publish, raises, line, text)

    def names(self, raw: LineDict, key: str) -> tuple[str, ...]:
        value = raw.get(key, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.problems.add(raw.line_of(key), f"'{key}' must be a name or a list of names")
            return ()
        return tuple(value)

    def guards(self, raw: LineDict) -> tuple[GuardCall, ...]:
        value = raw.get("when", [])
        if not isinstance(value, list):
            value = [value]
        out = []
        for i, item in enumerate(value):
            line = value.line_of(i) if isinstance(value, LineList) else raw.line_of("when")
            guard = self.guard(item, line)
            if guard is not None:
                out.append(guard)
        return tuple(out)

    def guard(self, item: Any, line: int) -> GuardCall | None:
        negate = False
        if isinstance(item, LineDict) and set(item) == {"not"}:
            negate, item = True, item["not"]
        elif isinstance(item, str) and item.startswith("not "):
            negate, item = True, item[4:].strip()
        name, args = _call(item)
        if name is None:
            self.problems.add(line, "a guard is a name, 'not name', or {name: args}")
            return None
        spec = GUARDS.get(name)
        if spec is None:
            self.problems.add(line, f"unknown guard {name!r}; known: {', '.join(sorted(GUARDS))}")
            return None
        error = spec.check(_plain(args))
        if error:
            self.problems.add(line, f"guard {name}: {error}")
            return None
        if name == "cond" and args not in self.conditions:
            self.problems.add(line, f"unknown condition {args!r}")
            return None
        return GuardCall(name, _plain(args), negate, spec.fn)

    def actions(self, raw: LineDict) -> tuple[ActionCall, ...]:
        value = raw.get("actions", LineList())
        if not isinstance(value, LineList):
            self.problems.add(raw.line_of("actions"), "'actions' must be a list")
            return ()
        out = []
        for i, item in enumerate(value):
            name, args = _call(item)
            line = value.line_of(i)
            if name is None:
                self.problems.add(line, "an action is a name or {name: args}")
                continue
            spec = ACTIONS.get(name)
            if spec is None:
                known = ", ".join(sorted(ACTIONS))
                self.problems.add(line, f"unknown action {name!r}; known: {known}")
                continue
            error = spec.check(_plain(args))
            if error:
                self.problems.add(line, f"action {name}: {error}")
                continue
            out.append(ActionCall(name, _plain(args), spec.fn))
        return tuple(out)

    def condition_updates(self, raw: LineDict) -> tuple[tuple[str, bool], ...]:
        value = raw.get("set", {})
        if not isinstance(value, dict):
            self.problems.add(raw.line_of("set"), "'set' maps condition names to true/false")
            return ()
        out = []
        for name, flag in value.items():
            line = value.line_of(name) if isinstance(value, LineDict) else raw.line_of("set")
            if name not in self.conditions:
                self.problems.add(line, f"unknown condition {name!r}")
            elif not isinstance(flag, bool):
                self.problems.add(line, f"condition {name} must be set to true or false")
            else:
                out.append((name, flag))
        return tuple(out)


def _call(item: Any) -> tuple[str | None, Any]:
    """``name`` -> (name, None); ``{name: args}`` -> (name, args)."""
    if isinstance(item, str) and item:
        return item, None
    if isinstance(item, dict) and len(item) == 1:
        ((name, args),) = item.items()
        if isinstance(name, str):
            return name, args
    return None, None


def _plain(value: Any) -> Any:
    """Strip the line-tracking containers so actions see ordinary dicts and lists."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
