"""The shared types of sessiond's decision path, below the engine and every process.

An :class:`Event` happens to a session (from the edge, a media node, an application, a timer
or the table itself); the engine's :class:`Verdict` on it holds the field updates, the
:class:`Command` effects and the :class:`Step` entries of the history. Actions see a
:class:`Context`. Nothing here imports the engine, the table model or Redis code, so any
module can use these types without pulling in the decision engine.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sessiond.core.messages import Message
from sessiond.core.redact import redact_keys


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened to a session: from the edge, media, app, a timer or a trigger."""

    id: str
    type: str
    data: Mapping[str, Any] = field(default_factory=dict)
    sid: str = ""


@dataclass(frozen=True, slots=True)
class Command:
    """An effect to emit after the transition is stored. ``id`` is deterministic."""

    id: str
    target: str  # "edge" | "media" | "media-pool" | "app" | "timer"
    name: str
    data: Mapping[str, Any]


# Fields of an event worth keeping in its history entry (the rest is in the session or
# internal), and the longest value kept there (longer ones are cut with a visible marker).
HISTORY_EVENT_FIELDS = ("code", "reason", "digit", "digits", "target")
HISTORY_VALUE_MAX = 200


@dataclass(frozen=True, slots=True)
class Step:
    from_state: str
    event: str
    to_state: str
    actions: tuple[str, ...]
    data: tuple[tuple[str, str], ...] = ()  # the event's meaningful fields, for the history


def history_data(event: Event) -> tuple[tuple[str, str], ...]:
    """The DTMF digit, the SIP code and reason, the transfer target... of ``event``: the
    fields of :data:`HISTORY_EVENT_FIELDS` it carries, as text, each at most
    :data:`HISTORY_VALUE_MAX` characters (a longer one ends with ``...(+N)``), SRTP keys
    (``inline:...``) hidden: the history never holds one."""
    data = event.data
    if not data:
        return ()
    found = []
    for key in HISTORY_EVENT_FIELDS:
        value = data.get(key)
        if value is None or value == "":
            continue
        text = redact_keys(value if isinstance(value, str) else str(value))
        if len(text) > HISTORY_VALUE_MAX:
            text = f"{text[:HISTORY_VALUE_MAX]}...(+{len(text) - HISTORY_VALUE_MAX})"
        found.append((key, text))
    return tuple(found)


class Outcome(StrEnum):
    TRANSITION = "transition"
    IGNORED = "ignored"
    NO_TRANSITION = "no_transition"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The engine's answer to one event: a transition, the event ignored (stale, or no
    entry for it), or no alternative whose guards hold."""

    outcome: Outcome
    reason: str
    state: str
    fields: Mapping[str, str] = field(default_factory=dict)
    commands: tuple[Command, ...] = ()
    steps: tuple[Step, ...] = ()
    terminal: bool = False


class Context:
    """What an action sees: the working session, the event, and where to put effects."""

    __slots__ = ("_view", "event", "now", "_commands", "_touched")

    def __init__(
        self,
        view: dict[str, str],
        event: Event,
        now: float,
        commands: list[Command],
        touched: set[str],
    ):
        self._view = view
        self.event = event
        self.now = now
        self._commands = commands
        self._touched = touched

    def get(self, name: str) -> str:
        return self._view.get(name, "")

    def fields(self, names: Iterable[str]) -> dict[str, str]:
        """``{name: self.get(name)}`` for each of ``names``."""
        view = self._view
        return {name: view.get(name, "") for name in names}

    def set(self, name: str, value: str) -> None:
        self._view[name] = value
        self._touched.add(name)

    def command(self, target: str, name: str, data: Mapping[str, Any] | Message) -> None:
        """Add command ``name``. Edge and media commands come as their typed record
        (:mod:`sessiond.core.messages`), kept as its wire map; timer, app and session
        commands are plain maps (the store reads timers' fields; the others carry event
        data along as it came)."""
        if isinstance(data, Message):
            if name not in data.TYPES:
                raise ValueError(f"{type(data).__name__} is no {name!r} command")
            data = data.data()
        cid = f"{self._view.get('_event_id', '')}/{len(self._commands)}"
        self._commands.append(Command(cid, target, name, data))
