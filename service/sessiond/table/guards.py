"""Guards: named, pure predicates over (session, event) that a table's alternatives test.

Each guard declares how its arguments are checked at load time, so a table with
``code: abc`` fails ``sessiond table check`` instead of failing a live call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sessiond.sip import session_timer as st
from sessiond.table.model import GuardFn

if TYPE_CHECKING:
    from sessiond.core.types import Event

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


def _hold_changes(session: Mapping[str, str], event: Event, args: Any) -> bool:
    """The event's SDP (an offer) puts us on hold, or off it, compared with now."""
    held_now = session.get("hold", "") in ("remote", "both")
    return bool(event.data.get("sdp")) and bool(event.data.get("held")) != held_now


def _answers_reinvite(session: Mapping[str, str], event: Event, args: Any) -> bool:
    """A response to our latest re-INVITE (not a late retransmission for an earlier one)."""
    return str(event.data.get("cseq", "")) == session.get("reinvite_cseq", "-")


def _interval_too_small(session: Mapping[str, str], event: Event, args: Any) -> bool:
    """RFC 4028: the request's Session-Expires is below our minimum (default 90 s)."""
    return st.too_small(str(event.data.get("session_expires", "")), args or st.MIN_SE)


def _min_se_args(args: Any) -> str | None:
    if args is None or (isinstance(args, int) and not isinstance(args, bool) and args >= 1):
        return None
    return "expects no argument or a minimum interval in seconds"


def _data_is(session: Mapping[str, str], event: Event, args: Any) -> bool:
    return all(str(event.data.get(k, "")) == str(v) for k, v in args.items())


def _reliable(session: Mapping[str, str], event: Event, args: Any) -> bool:
    """A reliable provisional response (RFC 3262): Require: 100rel and an RSeq."""
    require = str(event.data.get("require", "")).lower()
    return "100rel" in require and bool(str(event.data.get("rseq", "")).strip())


def _new_sdp(session: Mapping[str, str], event: Event, args: Any) -> bool:
    """The event carries an SDP that differs from the one we have from the far end."""
    sdp = event.data.get("sdp")
    return bool(sdp) and sdp != session.get("remote_sdp", "")


def _media_node_lost(session: Mapping[str, str], event: Event, args: Any) -> bool:
    """The lost media node (the event's) is the one this session's leg is on now."""
    node = session.get("media_node", "")
    return bool(node) and str(event.data.get("media_node", "")) == node


def _field_is(session: Mapping[str, str], event: Event, args: Any) -> bool:
    return all(session.get(k, "") == str(v) for k, v in args.items())


def _field_args(args: Any) -> str | None:
    if isinstance(args, dict) and args and all(isinstance(k, str) for k in args):
        return None
    return "expects {session_field: value, ...}"


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
    "hold_changes": GuardSpec(_hold_changes, _no_args, "the offer puts us on or off hold"),
    "answers_reinvite": GuardSpec(
        _answers_reinvite, _no_args, "the response is for our latest re-INVITE"
    ),
    "interval_too_small": GuardSpec(
        _interval_too_small, _min_se_args, "Session-Expires below our minimum (RFC 4028)"
    ),
    "field": GuardSpec(_field_is, _field_args, "session fields have the given values"),
    "data": GuardSpec(_data_is, _field_args, "event data fields have the given values"),
    "reliable": GuardSpec(_reliable, _no_args, "a reliable provisional response (100rel)"),
    "new_sdp": GuardSpec(_new_sdp, _no_args, "an SDP different from the far end's last"),
    "media_node_lost": GuardSpec(
        _media_node_lost, _no_args, "the lost media node is the one this session uses"
    ),
}
