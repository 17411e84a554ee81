"""Guards: named, pure predicates over (session, event) that a table's alternatives test.

Each guard declares the shape of its arguments next to its code (see argspec), so a
table with ``code: abc`` fails ``sessiond table check`` instead of failing a live call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sessiond.sip import session_timer as st
from sessiond.table.actions import fork
from sessiond.table.argspec import MapOf, Registry, Scalar, Spec, anything, name
from sessiond.table.model import GuardFn

if TYPE_CHECKING:
    from sessiond.core.types import Event

guard = Registry[GuardFn]()


def _is_code(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 699


def _is_code_or_range(args: Any) -> bool:
    if isinstance(args, list):
        return len(args) == 2 and all(_is_code(a) for a in args) and args[0] <= args[1]
    return _is_code(args)


def _code(event: Event) -> int:
    value = event.data.get("code", 0)
    return value if isinstance(value, int) else 0


@guard("provisional")
def _provisional(session: Mapping[str, str], event: Event, args: Any) -> bool:
    return 100 <= _code(event) <= 199


@guard("success")
def _success(session: Mapping[str, str], event: Event, args: Any) -> bool:
    return 200 <= _code(event) <= 299


@guard("failure")
def _failure(session: Mapping[str, str], event: Event, args: Any) -> bool:
    return _code(event) >= 300


@guard("code", Scalar(_is_code_or_range, "a SIP status code (100-699) or a range [low, high]"))
def _code_match(session: Mapping[str, str], event: Event, args: Any) -> bool:
    code = _code(event)
    if isinstance(args, list):
        return bool(args[0] <= code <= args[1])
    return bool(code == args)


@guard("has_sdp")
def _has_sdp(session: Mapping[str, str], event: Event, args: Any) -> bool:
    return bool(event.data.get("sdp"))


@guard("can_authenticate")
def _can_authenticate(session: Mapping[str, str], event: Event, args: Any) -> bool:
    return _code(event) in (401, 407) and bool(event.data.get("auth_user"))


# The loader also checks that the condition is declared in the table.
@guard("cond", Scalar(lambda a: isinstance(a, str) and a != "", "a condition name"))
def _cond(session: Mapping[str, str], event: Event, args: Any) -> bool:
    return session.get(f"cond.{args}") == "1"


@guard("hold_changes")
def _hold_changes(session: Mapping[str, str], event: Event, args: Any) -> bool:
    """The event's SDP (an offer) puts us on hold, or off it, compared with now."""
    held_now = session.get("hold", "") in ("remote", "both")
    return bool(event.data.get("sdp")) and bool(event.data.get("held")) != held_now


@guard("answers_reinvite")
def _answers_reinvite(session: Mapping[str, str], event: Event, args: Any) -> bool:
    """A response to our latest re-INVITE (not a late retransmission for an earlier one)."""
    return str(event.data.get("cseq", "")) == session.get("reinvite_cseq", "-")


def _min_se(args: Any) -> bool:
    return isinstance(args, int) and not isinstance(args, bool) and args >= 1


@guard("interval_too_small", Scalar(_min_se, "a minimum interval in seconds", none_ok=True))
def _interval_too_small(session: Mapping[str, str], event: Event, args: Any) -> bool:
    """RFC 4028: the request's Session-Expires is below our minimum (default 90 s)."""
    return st.too_small(str(event.data.get("session_expires", "")), args or st.MIN_SE)


_BRANCH = ("stale", "others", "outdone")


@guard("branch", Scalar(lambda a: a in _BRANCH, "one of " + ", ".join(_BRANCH)))
def _branch(session: Mapping[str, str], event: Event, args: Any) -> bool:
    """Where the event's sender (``from_sid``) stands in a fork (:mod:`.actions.fork`):
    ``stale`` - not one of its live branches (cancelled, or of a group given up on);
    ``others`` - a live branch, and others still ring; ``outdone`` - a live branch whose
    failure an earlier branch's beats (RFC 3261 16.7). A session's own verdict (from
    itself) is none of these."""
    sender = str(event.data.get("from_sid", ""))
    if sender and sender == session.get("sid"):
        return False
    live = fork.live_branches(session)
    if args == "stale":
        return sender not in live
    if args == "others":
        return sender in live and len(live) > 1
    return sender in live and fork.outdone(session, _code(event))


_FIELDS = MapOf(name("session_field"), anything("value"))


@guard("data", _FIELDS)
def _data_is(session: Mapping[str, str], event: Event, args: Any) -> bool:
    return all(str(event.data.get(k, "")) == str(v) for k, v in args.items())


@guard("reliable")
def _reliable(session: Mapping[str, str], event: Event, args: Any) -> bool:
    """A reliable provisional response (RFC 3262): Require: 100rel and an RSeq."""
    require = str(event.data.get("require", "")).lower()
    return "100rel" in require and bool(str(event.data.get("rseq", "")).strip())


@guard("new_sdp")
def _new_sdp(session: Mapping[str, str], event: Event, args: Any) -> bool:
    """The event carries an SDP that differs from the one we have from the far end."""
    sdp = event.data.get("sdp")
    return bool(sdp) and sdp != session.get("remote_sdp", "")


@guard("media_node_lost")
def _media_node_lost(session: Mapping[str, str], event: Event, args: Any) -> bool:
    """The lost media node (the event's) is the one this session's leg is on now."""
    node = session.get("media_node", "")
    return bool(node) and str(event.data.get("media_node", "")) == node


@guard("in_conference")
def _in_conference(session: Mapping[str, str], event: Event, args: Any) -> bool:
    """The call is (to be) in a conference room: field ``conference`` names one."""
    return bool(session.get("conference", ""))


@guard("field", _FIELDS)
def _field_is(session: Mapping[str, str], event: Event, args: Any) -> bool:
    return all(session.get(k, "") == str(v) for k, v in args.items())


GUARDS: dict[str, Spec[GuardFn]] = guard.specs
