"""Guards: named, pure predicates over (session, event) that a table's alternatives test.

Each guard declares how its arguments are checked at load time, so a table with
``code: abc`` fails ``sessiond table check`` instead of failing a live call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sessiond.table.model import GuardFn

if TYPE_CHECKING:
    from sessiond.engine import Event

ArgCheck = Callable[[Any], str | None]


@dataclass(frozen=True, slots=True)
class GuardSpec:
    fn: GuardFn
    check: ArgCheck
    doc: str


def _no_args(args: Any) -> str | None:
    return None if args is None else "takes no arguments"


def _code_args(args: Any) -> str | None:
    if _is_code(args):
        return None
    if isinstance(args, list) and len(args) == 2 and all(_is_code(a) for a in args):
        return None if args[0] <= args[1] else "range must be [low, high]"
    return "expects a SIP status code (100-699) or a range [low, high]"


def _is_code(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 699


def _code(event: Event) -> int:
    value = event.data.get("code", 0)
    return value if isinstance(value, int) else 0


def _provisional(session: Mapping[str, str], event: Event, args: Any) -> bool:
    return 100 <= _code(event) <= 199


def _success(session: Mapping[str, str], event: Event, args: Any) -> bool:
    return 200 <= _code(event) <= 299


def _failure(session: Mapping[str, str], event: Event, args: Any) -> bool:
    return _code(event) >= 300


def _code_match(session: Mapping[str, str], event: Event, args: Any) -> bool:
    code = _code(event)
    if isinstance(args, list):
        return bool(args[0] <= code <= args[1])
    return bool(code == args)


def _has_sdp(session: Mapping[str, str], event: Event, args: Any) -> bool:
    return bool(event.data.get("sdp"))


def _can_authenticate(session: Mapping[str, str], event: Event, args: Any) -> bool:
    return _code(event) in (401, 407) and bool(event.data.get("auth_user"))


def _cond(session: Mapping[str, str], event: Event, args: Any) -> bool:
    return session.get(f"cond.{args}") == "1"


def _cond_args(args: Any) -> str | None:
    # The loader also checks that the condition is declared in the table.
    return None if isinstance(args, str) and args else "expects a condition name"


GUARDS: dict[str, GuardSpec] = {
    "provisional": GuardSpec(_provisional, _no_args, "event code is 1xx"),
    "success": GuardSpec(_success, _no_args, "event code is 2xx"),
    "failure": GuardSpec(_failure, _no_args, "event code is 3xx-6xx"),
    "code": GuardSpec(_code_match, _code_args, "event code equals N or lies in [low, high]"),
    "has_sdp": GuardSpec(_has_sdp, _no_args, "event carries an SDP body"),
    "can_authenticate": GuardSpec(
        _can_authenticate,
        _no_args,
        "a 401/407 with a Digest challenge the edge holds credentials for",
    ),
    "cond": GuardSpec(_cond, _cond_args, "the named condition is set"),
}
