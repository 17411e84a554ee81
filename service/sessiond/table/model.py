"""The compiled form of a state table: frozen data the engine reads, never edits."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from sessiond.core.types import Context, Event

Role = Literal["UAC", "UAS", "Both"]
ROLES: tuple[Role, ...] = ("UAC", "UAS", "Both")
ANY = "Any"

GuardFn = Callable[["Mapping[str, str]", "Event", Any], bool]
ActionFn = Callable[["Context", Any], None]


@dataclass(frozen=True, slots=True)
class GuardCall:
    name: str
    args: Any
    negate: bool
    fn: GuardFn

    def __str__(self) -> str:
        text = self.name if self.args is None else f"{self.name}({self.args})"
        return f"not {text}" if self.negate else text


@dataclass(frozen=True, slots=True)
class ActionCall:
    name: str
    args: Any
    fn: ActionFn

    def __str__(self) -> str:
        if self.args is None:
            return self.name
        if isinstance(self.args, dict):
            return f"{self.name}({', '.join(f'{k}={v}' for k, v in self.args.items())})"
        return f"{self.name}({self.args})"


@dataclass(frozen=True, slots=True)
class Alternative:
    guards: tuple[GuardCall, ...]
    actions: tuple[ActionCall, ...]
    next: str | None  # None: stay in the current state
    conditions: tuple[tuple[str, bool], ...]
    publish: tuple[str, ...]
    raises: tuple[str, ...]
    line: int
    action_text: tuple[str, ...] = ()  # how the history shows the actions (built at load)


@dataclass(frozen=True, slots=True)
class Entry:
    role: Role
    state: str  # a state name or ANY
    event: str
    alternatives: tuple[Alternative, ...]
    ignore: str | None  # the reason, for an explicit ignore entry
    line: int


@dataclass(frozen=True, slots=True)
class Timeout:
    seconds: float
    event: str


@dataclass(frozen=True, slots=True)
class StateDef:
    name: str
    terminal: bool
    timeout: Timeout | None
    line: int


@dataclass(frozen=True, slots=True)
class Trigger:
    """When every condition in ``conditions`` becomes true, raise ``event``."""

    conditions: tuple[str, ...]
    event: str
    line: int


@dataclass(frozen=True)
class Table:
    name: str
    version: int
    rev: str  # content hash: sessions record it so a table change is detectable
    path: str
    initial: str
    states: Mapping[str, StateDef]
    conditions: frozenset[str]
    triggers: tuple[Trigger, ...]
    entries: Mapping[tuple[Role, str, str], Entry]
    timeout_events: frozenset[str] = field(default_factory=frozenset)
    source: str = field(default="", repr=False)  # the YAML text, kept for old-revision lookup

    def lookup(self, role: str, state: str, event: str) -> Entry | None:
        """Find the entry for (role, state, event). Specific state beats ``Any``; a specific
        role beats ``Both``; ``Any`` never applies to a terminal state."""
        entries = self.entries
        for key in ((role, state), ("Both", state)):
            entry = entries.get((key[0], key[1], event))  # type: ignore[arg-type]
            if entry is not None:
                return entry
        if self.states[state].terminal:
            return None
        for r in (role, "Both"):
            entry = entries.get((r, ANY, event))  # type: ignore[arg-type]
            if entry is not None:
                return entry
        return None

    def events_from(self, role: str, state: str) -> list[str]:
        """Events that have an entry in this state for this role (for ``ctl show``)."""
        names = {e for (r, s, e) in self.entries if r in (role, "Both") and s == state}
        if not self.states[state].terminal:
            names |= {e for (r, s, e) in self.entries if r in (role, "Both") and s == ANY}
        return sorted(names)
