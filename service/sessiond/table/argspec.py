"""Argument schemas for the actions and guards a table names.

Each action or guard is declared once, with the shape of its arguments next to its code;
the loader runs the one checker below on every use, so ``code: abc`` fails
``sessiond table check`` with its file and line instead of failing a live call.
Usage texts ("expects {code: N, sdp: bool?}") are built from the same declaration.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from sessiond.core.vocabulary import SESSION_FIELDS

Fn = TypeVar("Fn")
Rule = tuple[Callable[[Mapping[str, Any]], bool], str]  # must hold, else the message


class Schema(Protocol):
    def check(self, args: Any) -> str | None:
        """What is wrong with ``args`` (None: they are fine)."""
        ...


@dataclass(frozen=True, slots=True)
class Value:
    """One argument: ``test`` accepts it, ``hint`` shows it in a usage text, ``error`` says
    why it failed (``{key}``: the argument's name, ``{value}``: what the table gave)."""

    test: Callable[[Any], bool]
    hint: str
    error: str = "{key}: {value!r} is not {hint}"

    def fault(self, key: str, value: Any) -> str | None:
        return None if self.test(value) else self.error.format(key=key, value=value, hint=self.hint)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def integer(lo: int, hi: int | None = None, *, from_event: bool = False, what: str = "") -> Value:
    """A whole number in [lo, hi] (no upper bound if ``hi`` is None); ``from_event``
    also accepts the word "from_event" (take it from the event at run time)."""
    bounds = f"{lo}-{hi}" if hi is not None else f"{lo} or more"
    return Value(
        lambda v: (
            (from_event and v == "from_event")
            or (_is_int(v) and lo <= v and (hi is None or v <= hi))
        ),
        "N|from_event" if from_event else "N",
        f"{{key}} must be {what}{bounds}" + (" or 'from_event'" if from_event else ""),
    )


def flag() -> Value:
    return Value(lambda v: isinstance(v, bool), "bool", "{key} must be true or false")


def name(hint: str = "Name") -> Value:
    return Value(lambda v: isinstance(v, str), hint, "{key} must be a name")


def choice(*options: str) -> Value:
    return Value(lambda v: v in options, "|".join(options), "{key} must be one of {hint}")


def true() -> Value:
    # ``in`` compares with ==, so 1 passes as it always has (a flag the action tests for truth)
    return Value(lambda v: v in (True,), "true", "{key} must be true")


def anything(hint: str) -> Value:
    """Not checked at load: the action copies it as it is."""
    return Value(lambda v: True, hint)


def session_field() -> Value:
    return Value(
        lambda v: isinstance(v, str) and v in SESSION_FIELDS,
        "session_field",
        "{key}: unknown session field {value!r}",
    )


@dataclass(frozen=True, slots=True)
class NoArgs:
    why: str = ""  # where the data comes from instead

    def check(self, args: Any) -> str | None:
        if args is None:
            return None
        return "takes no arguments" + (f" ({self.why})" if self.why else "")


NO_ARGS = NoArgs()


@dataclass(frozen=True, slots=True)
class Scalar:
    """The whole argument is one value (a guard's ``code: 404``)."""

    test: Callable[[Any], bool]
    hint: str
    none_ok: bool = False

    def check(self, args: Any) -> str | None:
        if (args is None and self.none_ok) or (args is not None and self.test(args)):
            return None
        return "expects " + ("no argument or " if self.none_ok else "") + self.hint


@dataclass(frozen=True, slots=True)
class Fields:
    """A mapping of named arguments, ``required`` and ``optional``, each checked by its
    Value, then the cross-argument ``rules``; ``none_ok``: the action also runs with no
    arguments (it takes them from the event)."""

    required: Mapping[str, Value] = field(default_factory=dict)
    optional: Mapping[str, Value] = field(default_factory=dict)
    none_ok: bool = False
    rules: tuple[Rule, ...] = ()

    @property
    def keys(self) -> tuple[str, ...]:
        return (*self.required, *self.optional)

    @property
    def usage(self) -> str:
        parts = [f"{k}: {v.hint}" for k, v in self.required.items()]
        parts += [f"{k}: {v.hint}?" for k, v in self.optional.items()]
        return "{" + ", ".join(parts) + "}"

    def check(self, args: Any) -> str | None:
        if args is None and self.none_ok:
            return None
        if (
            not isinstance(args, dict)
            or set(args) - set(self.keys)
            or set(self.required) - set(args)
        ):
            return "expects " + ("no arguments or " if self.none_ok else "") + self.usage
        values = {**self.required, **self.optional}
        for key, value in args.items():
            error = values[key].fault(key, value)
            if error:
                return error
        return next((message for holds, message in self.rules if not holds(args)), None)


@dataclass(frozen=True, slots=True)
class Either:
    """One of several shapes (``{event, seconds}`` or ``{event, field, scale?}``)."""

    shapes: tuple[Fields, ...]

    def check(self, args: Any) -> str | None:
        if any(shape.check(args) is None for shape in self.shapes):
            return None
        return "expects " + " or ".join(shape.usage for shape in self.shapes)


@dataclass(frozen=True, slots=True)
class MapOf:
    """A non-empty mapping whose keys and values are each checked (``save``'s
    ``{session_field: event_field}``); ``keys.error`` gets the bad keys, comma-separated."""

    keys: Value
    values: Value

    def check(self, args: Any) -> str | None:
        if not isinstance(args, dict) or not args:
            return f"expects {{{self.keys.hint}: {self.values.hint}, ...}}"
        bad = sorted(str(k) for k in args if not self.keys.test(k))
        if bad:
            return self.keys.error.format(key=", ".join(bad), hint=self.keys.hint)
        faults = (self.values.fault(str(k), v) for k, v in args.items())
        return next((error for error in faults if error), None)


@dataclass(frozen=True, slots=True)
class Spec(Generic[Fn]):
    fn: Fn
    schema: Schema

    def check(self, args: Any) -> str | None:
        return self.schema.check(args)


class Registry(Generic[Fn]):
    """The actions (or guards) of one module: ``@registry("name", schema)`` on each."""

    def __init__(self) -> None:
        self.specs: dict[str, Spec[Fn]] = {}

    def __call__(self, name: str, schema: Schema = NO_ARGS) -> Callable[[Fn], Fn]:
        def define(fn: Fn) -> Fn:
            self.add(name, fn, schema)
            return fn

        return define

    def add(self, name: str, fn: Fn, schema: Schema = NO_ARGS) -> None:
        if name in self.specs:
            raise ValueError(f"{name} is defined twice")
        self.specs[name] = Spec(fn, schema)


def merge(*registries: Registry[Fn]) -> dict[str, Spec[Fn]]:
    """One table of names from several modules' registries; a name defined twice is a bug."""
    out: dict[str, Spec[Fn]] = {}
    for registry in registries:
        for name, spec in registry.specs.items():
            if name in out:
                raise ValueError(f"{name} is defined twice")
            out[name] = spec
    return out
