"""Tables that share: ``include:`` merges other table files into one document.

A table file names others by bundled name (``include: default``) or by a path ending in
``.yaml``/``.yml`` relative to the including file (``include: [parts/dialog.yaml]``). Each
file is merged once, its includes before itself, in the order listed:

* ``conditions`` are united and ``triggers`` appended;
* a state declared again replaces the included declaration, options and all;
* an entry for the same (role, state, event) replaces the included one; an included entry
  that lists several states or events is split so that only the replaced keys go;
* ``table`` and ``version`` are the including file's; ``initial`` too, else the last include's.

Two files that do not include one another may not define the same state or entry, and a
cycle of includes is an error at the ``include:`` line. Values keep their
:class:`~sessiond.table.yamlsrc.Line`, so every problem names the file it comes from. The
merged document is written out as YAML (the "expanded" text): a table's revision hashes it
and tableset publishes it, so a worker meeting an old revision needs none of the files.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sessiond.core.resources import tables_dir
from sessiond.table.yamlsrc import Line, LineDict, LineList, YamlSourceError, load_yaml

TOP_KEYS = frozenset(
    {
        "table",
        "version",
        "initial",
        "include",
        "conditions",
        "states",
        "triggers",
        "transitions",
        "description",
    }
)

Report = Callable[[int, str], None]
Key = tuple[str, str, str]  # (role, state, event)


def listed(value: Any) -> list[Any]:
    """``state``/``event`` take one name or a list of them."""
    return list(value) if isinstance(value, list) and value else [value]


@dataclass
class _Item:
    """One transition entry as written, with the keys it defines and those replaced since."""

    raw: Any  # a LineDict, unless malformed (then it has no keys, and the loader says why)
    line: int
    origin: Path
    keys: list[Key]
    gone: set[Key] = field(default_factory=set)

    def remaining(self) -> list[Any]:
        """The entry, split so that it defines only the keys nobody replaced."""
        if not self.gone:
            return [self.raw]
        by_state: dict[str, list[str]] = {}
        for _, state, event in self.keys:
            if (self.raw["role"], state, event) not in self.gone:
                by_state.setdefault(state, []).append(event)
        groups: dict[tuple[str, ...], list[str]] = {}
        for state, events in by_state.items():
            groups.setdefault(tuple(events), []).append(state)
        return [self._part(states, list(events)) for events, states in groups.items()]

    def _part(self, states: list[str], events: list[str]) -> LineDict:
        part = LineDict(self.raw)
        part.line, part.key_lines = self.raw.line, dict(self.raw.key_lines)
        part["state"] = _names(states, self.raw.line_of("state"))
        part["event"] = _names(events, self.raw.line_of("event"))
        return part


def _names(names: list[str], line: int) -> str | LineList:
    if len(names) == 1:
        return names[0]
    out = LineList(names)
    out.line, out.item_lines = line, [line] * len(names)
    return out


def _keys(raw: Any) -> list[Key]:
    """The (role, state, event) keys an entry defines; none if it is malformed (the loader
    reports it)."""
    if not isinstance(raw, LineDict) or not isinstance(raw.get("role"), str):
        return []
    states, events = listed(raw.get("state")), listed(raw.get("event"))
    if not all(isinstance(n, str) for n in states + events):
        return []
    return [(raw["role"], s, e) for s in states for e in events]


class _Merge:
    def __init__(self, add: Report) -> None:
        self.add = add
        self.below: dict[Path, set[Path]] = {}  # file -> the files it includes, transitively
        self.shown: dict[str, str] = {}  # Line.file -> its name in the expanded text
        self.conditions = LineList()
        self.conditions.item_lines = []
        self.states = LineDict()
        self.states.key_lines = {}
        self.state_origin: dict[str, Path] = {}
        self.triggers = LineList()
        self.triggers.item_lines = []
        self.items: list[_Item] = []
        self.owner: dict[Key, _Item] = {}
        self.initial: tuple[Any, int] | None = None

    def visit(self, doc: LineDict, path: Path, shown: str, chain: list[tuple[Path, str]]) -> None:
        """Merge ``doc`` (read from ``path``, ``shown`` in the expanded text) after the files
        it includes; ``chain`` is the files including it, for cycles."""
        me = path.resolve()
        chain = [*chain, (me, shown or path.name)]
        below: set[Path] = set()
        for spec, line in self.specs(doc):
            bundled = not spec.endswith((".yaml", ".yml"))
            target = tables_dir() / f"{spec}.yaml" if bundled else path.parent / spec
            real = target.resolve()
            paths = [p for p, _ in chain]
            if real in paths:
                cycle = [name for _, name in chain[paths.index(real) :]]
                self.add(line, f"include cycle: {' -> '.join([*cycle, cycle[0]])}")
                continue
            below.add(real)
            if real not in self.below:
                sub = self.read(target, spec, line)
                if sub is not None:
                    name = spec if bundled else posixpath.join(posixpath.dirname(shown), spec)
                    self.shown[str(target)] = posixpath.normpath(name)
                    self.visit(sub, target, self.shown[str(target)], chain)
            below |= self.below.get(real, set())
        self.below[me] = below
        self.take(doc, me, below)

    def specs(self, doc: LineDict) -> list[tuple[str, int]]:
        if "include" not in doc:
            return []
        raw = doc["include"]
        names = raw if isinstance(raw, list) else [raw]
        if not names or not all(isinstance(n, str) and n for n in names):
            self.add(doc.line_of("include"), "'include' names a table file or lists several")
            return []
        lines = [raw.line_of(i) for i in range(len(names))] if isinstance(raw, LineList) else []
        return [(n, lines[i] if lines else doc.line_of("include")) for i, n in enumerate(names)]

    def read(self, path: Path, spec: str, line: int) -> LineDict | None:
        try:
            doc = load_yaml(path.read_text(encoding="utf-8"), str(path))
        except OSError as exc:
            self.add(line, f"cannot read include {spec!r} ({path}): {exc.strerror}")
            return None
        except YamlSourceError as exc:
            self.add(Line.of(exc.line, str(path)), exc.message)
            return None
        if not isinstance(doc, LineDict):
            self.add(Line.of(1, str(path)), "a state table is a YAML mapping")
            return None
        return doc

    def take(self, doc: LineDict, me: Path, below: set[Path]) -> None:
        for key in doc:
            if key not in TOP_KEYS:
                self.add(doc.line_of(key), f"unknown top-level key {key!r}")
        if "initial" in doc:
            self.initial = (doc["initial"], doc.line_of("initial"))
        self.take_conditions(doc)
        self.take_states(doc, me, below)
        triggers = self.section(doc, "triggers", LineList, "'triggers' must be a list")
        for i, trigger in enumerate(triggers or ()):
            self.triggers.append(trigger)
            self.triggers.item_lines.append(triggers.line_of(i))
        self.take_entries(doc, me, below)

    def section(self, doc: LineDict, key: str, kind: type, message: str) -> Any:
        value = doc.get(key)
        if value is not None and not isinstance(value, kind):
            self.add(doc.line_of(key), message)
            return None
        return value

    def take_conditions(self, doc: LineDict) -> None:
        raw = self.section(doc, "conditions", LineList, "'conditions' must be a list of names")
        if raw is not None and not all(isinstance(c, str) for c in raw):
            self.add(doc.line_of("conditions"), "'conditions' must be a list of names")
            return
        for i, name in enumerate(raw or ()):
            if name not in self.conditions:
                self.conditions.append(name)
                self.conditions.item_lines.append(raw.line_of(i))

    def take_states(self, doc: LineDict, me: Path, below: set[Path]) -> None:
        message = "'states' must map each state name to its options"
        raw = self.section(doc, "states", LineDict, message)
        for name, opts in (raw or {}).items():
            line = raw.line_of(name)
            first = self.state_origin.get(name)
            if first is not None and first not in below:
                where = self.states.line_of(name)
                self.add(line, f"state {name} is also declared at {_at(where)}, {_unrelated}")
                continue
            self.states[name] = opts
            self.states.key_lines[name] = line
            self.state_origin[name] = me

    def take_entries(self, doc: LineDict, me: Path, below: set[Path]) -> None:
        message = "'transitions' must be a list of entries"
        raw = self.section(doc, "transitions", LineList, message)
        for i, entry in enumerate(raw or ()):
            item = _Item(entry, raw.line_of(i), me, _keys(entry))
            for key in item.keys:
                first = self.owner.get(key)
                if first is None or first.origin == me:
                    pass  # new, or a duplicate in one file (the loader names both lines)
                elif first.origin in below:
                    first.gone.add(key)
                else:
                    item.gone.add(key)
                    where = _at(first.line)
                    self.add(item.line, f"entry {key} is also at {where}, {_unrelated}")
                    continue
                self.owner[key] = item
            self.items.append(item)

    def document(self, root: LineDict) -> LineDict:
        out = LineDict()
        out.line, out.key_lines = root.line, {}
        for key in ("table", "version"):
            if key in root:
                out[key], out.key_lines[key] = root[key], root.line_of(key)
        if self.initial is not None:
            out["initial"], out.key_lines["initial"] = self.initial
        parts = [(part, item.line) for item in self.items for part in item.remaining()]
        transitions = LineList(part for part, _ in parts)
        transitions.line, transitions.item_lines = root.line, [line for _, line in parts]
        sections = [
            ("conditions", self.conditions),
            ("states", self.states),
            ("triggers", self.triggers),
            ("transitions", transitions),
        ]
        for key, value in sections:
            out[key], out.key_lines[key] = value, root.line_of(key)
        return out


_unrelated = "a file this one does not include: define it once, or include one from the other"


def _at(line: int) -> str:
    return f"{getattr(line, 'file', '')}:{line}"


def expand(doc: LineDict, path: str, add: Report) -> tuple[LineDict, str]:
    """The document ``doc`` (read from ``path``) with its includes merged in, and that
    document as self-contained YAML text."""
    merge = _Merge(add)
    merge.shown[path] = Path(path).name
    merge.visit(doc, Path(path), "", [])
    merged = merge.document(doc)
    return merged, _text(merged, merge.shown)


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


class _Block(dict[Any, Any]):
    """A mapping written in block style (a section, an entry); others as PyYAML sees fit."""


class _Flow(dict[Any, Any]):
    """A mapping written on one line (a state's options)."""


def _styled(flow: bool) -> Callable[[_Dumper, dict[Any, Any]], yaml.Node]:
    def represent(dumper: _Dumper, data: dict[Any, Any]) -> yaml.Node:
        node = dumper.represent_dict(data)
        node.flow_style = flow
        return node

    return represent


_Dumper.add_representer(LineDict, yaml.SafeDumper.represent_dict)
_Dumper.add_representer(LineList, yaml.SafeDumper.represent_list)
_Dumper.add_representer(_Block, _styled(False))
_Dumper.add_representer(_Flow, _styled(True))


def _yaml(value: Any, indent: str = "") -> str:
    text = yaml.dump(value, Dumper=_Dumper, sort_keys=False, default_flow_style=None, width=96)
    return "\n".join(indent + line for line in text.rstrip("\n").split("\n"))


def _text(doc: LineDict, shown: dict[str, str]) -> str:
    """YAML for the merged document, each state and entry marked with the file and line it
    was written at."""

    def origin(line: int) -> str:
        return f"# {shown.get(getattr(line, 'file', ''), '?')}:{line}"

    root = shown[getattr(doc.line, "file", "")]
    includes = ", ".join(sorted(set(shown.values()) - {root}))
    out = [
        f"# {root} with {includes} merged in: the source table {doc.get('table')}'s revision",
        "# hashes and workers load. Generated: edit those files, not this text.",
        _yaml(_Block({k: doc[k] for k in ("table", "version", "initial") if k in doc})),
        _yaml(_Block(conditions=doc["conditions"])),
        _yaml(_Block(triggers=[_Block(t) if isinstance(t, dict) else t for t in doc["triggers"]])),
        "states:",
    ]
    states = doc["states"]
    for name, opts in states.items():
        value = _Flow(opts) if isinstance(opts, dict) else opts
        out.append(f"{_yaml(_Block({name: value}), '  ')}  {origin(states.line_of(name))}")
    out.append("transitions:")
    for i, entry in enumerate(doc["transitions"]):
        value = _Block(entry) if isinstance(entry, dict) else entry
        out += ["", f"  {origin(doc['transitions'].line_of(i))}", _yaml([value], "  ")]
    return "\n".join(out) + "\n"
