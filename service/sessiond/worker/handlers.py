"""Signaling handlers: the decision taken on every new incoming call.

When a worker creates the session for an initial INVITE it asks its handler what to do with
the call and publishes the answer as one event for the new session (deterministic id
``<invite id>:answer``: a redelivered INVITE publishes the same id, which the session refuses
as a duplicate). The state table does the SIP work; the handler only decides.

A handler is any object with ``decide(call: IncomingCallInfo) -> Decision``. It runs inside
the worker's batch, so it must be fast and must not block (no I/O): to ask something slow,
return :class:`Defer` and let the application answer through the Client.

Decisions and the events they become:

=====================  ===================  ====================================================
decision               event                what the default table does
=====================  ===================  ====================================================
``Accept()``           ``AcceptCall``       answers 200 once the media is ready
``Reject(code)``       ``RejectCall``       answers ``code`` (400-699)
``Defer()``            ``DeferCall``        rings in ``Deferred``; 480 after its table timeout
``Redirect(contacts)`` ``RedirectCall``     answers 302 with the contacts
``PlayAndHangup(...)`` ``PlayAndHangup``    answers, plays, sends BYE on PlayFinished
``Forward(target)``    ``ForwardCall``      B2BUA: the session runs the ``gateway`` table, which
                                            calls ``target`` and relays ringing, early media,
                                            answer, failures, CANCEL and BYE between the legs
``Conference(room)``   ``ConferenceCall``   answers, then mixes the call into conference ``room``
``Ring()``             (none)               rings until the app answers (``RingTimeout``)
``CallUser(aor)``      ``ForwardCall``      a registered user: Forward to its contacts (forked:
                       or ``RejectCall``    equal q at once), or 480 when it has none (looked
                                            up by the intake)
=====================  ===================  ====================================================

A handler with a ``session_fields(call)`` method (:class:`SessionOptions`) also sets
per-call options in the new session: ``latch_private`` (a phone behind NAT).

Forward is the one decision that picks the table: the worker asks the handler before it
creates the session, and a Forward session runs ``Forward.table`` (``gateway`` unless given).

A handler with a ``session_fields(call)`` method (:class:`SessionOptions`) also sets
per-call options in the new session: ``srtp`` (the SRTP policy of the call's leg: ``off``,
``offer``, ``require``; without it the media node's ``--srtp``). Forward's ``target_srtp``
is the outbound leg's.
"""

from __future__ import annotations

import dataclasses
import importlib
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from sessiond.core.types import Event
from sessiond.core.vocabulary import MEDIA_MODES, SRTP_POLICIES
from sessiond.store.location import Binding
from sessiond.store.rooms import valid_room


@dataclass(frozen=True, slots=True)
class IncomingCallInfo:
    """What a handler knows about a new incoming call (from the INVITE's edge event)."""

    sid: str  #: the new session id
    call_id: str
    from_uri: str  #: the From header without its tag (name-addr as received)
    to_uri: str  #: the To header without its tag
    headers: Mapping[str, str] = field(default_factory=dict)
    """Header values the edge publishes, lower-case names: ``from``, ``to``, ``contact``,
    ``source`` (``ip:port``). Other headers are not carried by the edge event."""
    aor: str = ""
    """``user@domain`` when the Request-URI is a user of a domain the edge is the registrar
    of (``--registrar``); else empty."""

    @classmethod
    def from_invite(cls, invite: Event, sid: str) -> IncomingCallInfo:
        """Build it from the ``Invite`` edge event."""
        data = invite.data
        headers = {k: str(data.get(k, "")) for k in ("from", "to", "contact", "source")}
        return cls(
            sid,
            str(data.get("call_id", "")),
            headers["from"],
            headers["to"],
            headers,
            str(data.get("aor") or ""),
        )


@dataclass(frozen=True, slots=True)
class Accept:
    """Answer the call (200 OK with our SDP)."""


@dataclass(frozen=True, slots=True)
class Reject:
    """Refuse the call with a SIP final response ``code`` (400-699)."""

    code: int = 486

    def __post_init__(self) -> None:
        if isinstance(self.code, bool) or not isinstance(self.code, int):
            raise TypeError("Reject code must be an int")
        if not 400 <= self.code <= 699:
            raise ValueError(f"a rejection code is 400-699, not {self.code}")


@dataclass(frozen=True, slots=True)
class Defer:
    """Ask the application (IncomingCall event); 480 if it does not answer in time. The time
    is the ``Deferred`` state's timeout in the state table (fixed per table)."""


@dataclass(frozen=True, slots=True)
class Redirect:
    """Answer 302 Moved Temporarily with these contacts (SIP URIs)."""

    contacts: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.contacts or not all(isinstance(c, str) and c for c in self.contacts):
            raise ValueError("Redirect needs at least one contact URI")


@dataclass(frozen=True, slots=True)
class PlayAndHangup:
    """Answer, play a tone (Hz, for ``seconds``) or a WAV file, then hang up."""

    tone: float | None = None
    file: str | None = None
    seconds: float | None = None

    def __post_init__(self) -> None:
        if (self.tone is None) == (self.file is None):
            raise ValueError("PlayAndHangup needs exactly one of tone and file")
        if self.tone is not None and not self.seconds:
            raise ValueError("a tone needs seconds (it would never end)")


@dataclass(frozen=True, slots=True)
class Forward:
    """Forward the call to ``target`` (a SIP URI) as a back-to-back user agent: the incoming
    leg runs ``table`` (default ``gateway``), which places the outgoing leg. ``target_srtp``
    is the SRTP policy of the outgoing leg (``off``, ``offer``, ``require``; None: the media
    node's ``--srtp``); the caller's leg has its own (:class:`SessionOptions`, field
    ``srtp``), and the media node bridges decrypted audio between them. ``media="bypass"``
    passes the SDP end to end instead: no media node, no SRTP policy (a=crypto goes through
    as it is), so ``target_srtp`` must be None."""

    target: str
    table: str = "gateway"
    target_srtp: str | None = None
    to: str | None = None  #: the outbound To URI (a registered user's AOR), else ``target``
    edge: str | None = None  #: the edge that sends the outbound leg's requests (its binding's)
    destination: str | None = None  #: ``TRANSPORT host:port`` they go to, whatever the URI
    #: targets tried in order when this one fails with 3xx-5xx (forking a registered
    #: user's contacts): (target, edge, destination) each, or (target, edge, destination,
    #: to) for one whose To is not ``to`` (a hunt group's other members)
    next: tuple[tuple[str, ...], ...] = ()
    ring: float | None = None  #: with ``next``: seconds a target rings before the next one
    #: forking: the sizes of the groups of targets that ring at once, in order, over
    #: (``target``, *``next``) (RFC 3261 16.6: a user's contacts of equal q ring in
    #: parallel); empty: one target at a time
    groups: tuple[int, ...] = ()
    media: str | None = None  #: ``bypass``: no media node; None or ``anchor``: anchored

    def __post_init__(self) -> None:
        if self.media is not None and self.media not in MEDIA_MODES:
            raise ValueError(f"media is one of {', '.join(MEDIA_MODES)}, not {self.media!r}")
        if self.media == "bypass" and self.target_srtp is not None:
            raise ValueError(bypass_srtp_conflict())
        if self.target_srtp is not None and self.target_srtp not in SRTP_POLICIES:
            raise ValueError(f"srtp is one of {', '.join(SRTP_POLICIES)}, not {self.target_srtp!r}")
        if not isinstance(self.target, str) or not self.target.startswith(("sip:", "sips:")):
            raise ValueError(f"Forward needs a sip: or sips: URI, not {self.target!r}")
        if any(c.isspace() or c in "<>" for c in self.target) or len(self.target) > 256:
            raise ValueError(f"Forward target {self.target!r} is not a plain SIP URI")
        if any(len(entry) not in (3, 4) for entry in self.next):
            raise ValueError("Forward next holds (target, edge, destination[, to]) each")
        if self.groups and (min(self.groups) < 1 or sum(self.groups) != 1 + len(self.next)):
            raise ValueError("Forward groups must split the targets (target and next)")


@dataclass(frozen=True, slots=True)
class CallUser:
    """Ring the registered phone of ``aor`` (``user@domain`` of a ``--registrar`` domain).
    The worker looks the AOR's bindings up (one round trip per batch) and makes it a
    :class:`Forward` to the live contacts, forked by ``fork`` (by default those of the
    highest q at once), each through the edge that took its REGISTER, to the address the
    REGISTER came from (:func:`ring_registered`); 480 when the AOR has no live binding."""

    aor: str
    no_answer: float | None = None  #: seconds a contact rings before the next is tried
    then: str | None = None  #: a URI tried when every contact failed or none is registered
    #: a sequential hunt group: members tried after ``aor``'s contacts, in order (each a
    #: registered user ``user@domain``, whose contacts go by q, or a ``sip:`` URI)
    members: tuple[str, ...] = ()
    #: how the targets fork (:data:`FORK_MODES`): ``q`` - a user's contacts of equal q ring
    #: at once, groups of lower q after them, members in turn (RFC 3261 16.6); ``parallel``
    #: - every contact of every member at once (ring-all); ``sequential`` - one at a time
    fork: str = "q"

    def __post_init__(self) -> None:
        if self.fork not in FORK_MODES:
            raise ValueError(f"fork is one of {', '.join(FORK_MODES)}, not {self.fork!r}")
        for aor in (self.aor, *(m for m in self.members if not _is_uri(m))):
            user, at, domain = aor.rpartition("@")
            if not at or not user or not domain or any(c.isspace() or c in "<>" for c in aor):
                raise ValueError(f"a registered user is user@domain, not {aor!r}")

    @property
    def aors(self) -> tuple[str, ...]:
        """The AORs whose bindings are looked up."""
        return (self.aor, *(m for m in self.members if not _is_uri(m)))


#: :attr:`CallUser.fork` values
FORK_MODES = ("q", "parallel", "sequential")


def _is_uri(member: str) -> bool:
    return member.startswith(("sip:", "sips:"))


def ring_registered(
    call: CallUser,
    bindings: Sequence[Binding],
    members: Mapping[str, Sequence[Binding]] | None = None,
) -> Forward | Reject:
    """What :class:`CallUser` becomes once its live ``bindings`` (highest q first) are
    known: a forward to its contacts, forked by ``call.fork`` (by default those of equal q
    at once, then the next q: RFC 3261 16.6); the next group is called when the last of a
    group failed (3xx to 5xx) or rang ``no_answer`` s (a 6xx stops the search), and
    ``then`` last; or 480 Temporarily Unavailable when none is registered (the same for a
    user that does not exist: a caller cannot tell the two apart, so it cannot enumerate
    accounts)."""
    usable: list[Forward] = []
    keys: list[object] = []  # targets with equal keys in a row ring together
    found = members or {}
    for index, aor in enumerate((call.aor, *call.members)):
        if _is_uri(aor):
            usable.append(Forward(aor))
            keys.append((index, None))
            continue
        for binding in bindings if aor == call.aor else found.get(aor, ()):
            if binding.transport.upper() not in ("UDP", "TCP", "TLS"):
                continue  # a transport the edge cannot send on (WS...): passed over
            try:
                usable.append(
                    Forward(
                        binding.contact,
                        to=f"sip:{aor}",
                        edge=binding.edge,
                        destination=binding.destination,
                    )
                )
            except ValueError:  # a contact the forward cannot take (tel:, odd characters)
                continue
            keys.append((index, 1.0 if binding.q is None else binding.q))
    if call.fork == "parallel":
        keys = [0] * len(keys)
    elif call.fork == "sequential":
        keys = list(range(len(keys)))
    if call.then is not None:
        usable.append(Forward(call.then))
        keys.append("then")
    if not usable:
        return Reject(480)
    groups = [1]
    for before, key in zip(keys, keys[1:], strict=False):
        if key == before:
            groups[-1] += 1
        else:
            groups.append(1)
    rest = tuple(
        (f.target, f.edge or "", f.destination or "")
        + ((f.to,) if f.to and f.to != usable[0].to else ())
        for f in usable[1:]
    )
    return dataclasses.replace(
        usable[0],
        next=rest,
        ring=call.no_answer,
        groups=tuple(groups) if max(groups) > 1 else (),
    )


@dataclass(frozen=True, slots=True)
class Conference:
    """Answer the call into conference room ``room`` (made on its first member's media node;
    a call whose leg is on another node is moved there by re-INVITE)."""

    room: str

    def __post_init__(self) -> None:
        if not isinstance(self.room, str) or not valid_room(self.room):
            raise ValueError(f"a room name is 1-64 of A-Z a-z 0-9 ._@+-, not {self.room!r}")


@dataclass(frozen=True, slots=True)
class Ring:
    """Publish nothing: the call rings until the application answers it (or RingTimeout)."""


Decision = (
    Accept | Reject | Defer | Redirect | PlayAndHangup | Forward | Conference | Ring | CallUser
)


@runtime_checkable
class CallHandler(Protocol):
    """Decides what happens to each new incoming call. Must not block."""

    def decide(self, call: IncomingCallInfo) -> Decision:
        """The decision for ``call``."""
        ...


@runtime_checkable
class SessionOptions(Protocol):
    """A handler may also set fields of the new session (read by the table's actions), by
    having this method; ``--routes`` does, for ``latch_private`` and ``srtp``. Must not block."""

    def session_fields(self, call: IncomingCallInfo) -> Mapping[str, str]:
        """Fields to write into the new session of ``call`` (only :data:`OPTION_FIELDS`)."""
        ...


#: session fields a handler may set: ``latch_private: "true"`` makes the call's media leg
#: ignore a private (RFC 1918 / ULA) SDP address and send where the caller's RTP comes from;
#: ``srtp`` (off, offer, require) is the SRTP policy of the call's media leg (media.create);
#: ``media: bypass`` makes a forwarded call pass its SDP end to end (no media node; kept
#: only when the decision is a forward: :func:`media_option`)
OPTION_FIELDS = frozenset({"latch_private", "srtp", "media"})


def bypass_srtp_conflict() -> str:
    """The one-line error for an SRTP policy on a bypassed call."""
    return (
        "srtp does not apply to media: bypass (the SDP, a=crypto included, passes end to "
        "end untouched)"
    )


def media_option(decision: Decision, fields: Mapping[str, str]) -> dict[str, str]:
    """The new session's option ``fields`` for ``decision``: a :class:`Forward`'s own
    ``media`` wins; ``media`` stays only on a forward (Forward or CallUser), and a bypassed
    call has no ``srtp`` or ``latch_private`` (no media leg to apply them to)."""
    out = dict(fields)
    if isinstance(decision, Forward) and decision.media is not None:
        out["media"] = decision.media
    if not isinstance(decision, Forward | CallUser) or out.get("media") != "bypass":
        out.pop("media", None)
        return out
    out.pop("srtp", None)
    out.pop("latch_private", None)
    return out


class RegisteredUsers:
    """Calls to a user of a ``--registrar`` domain ring that user's registered phone
    (:class:`CallUser`); every other call is ``fallback``'s (the ``--answer`` mode)."""

    def __init__(self, fallback: CallHandler) -> None:
        self.fallback = fallback

    def decide(self, call: IncomingCallInfo) -> Decision:
        """CallUser for a served AOR, else the fallback's decision."""
        return CallUser(call.aor) if call.aor else self.fallback.decide(call)


class AutoAnswer:
    """``--answer auto``: accept every call."""

    def decide(self, call: IncomingCallInfo) -> Decision:
        """Accept."""
        return Accept()


class RejectAll:
    """``--answer reject``: refuse every call with 603 Decline."""

    def decide(self, call: IncomingCallInfo) -> Decision:
        """Reject with 603."""
        return Reject(603)


class AskApp:
    """``--answer app``: let every call ring until the application answers it."""

    def decide(self, call: IncomingCallInfo) -> Decision:
        """Ring."""
        return Ring()


BUILTIN: dict[str, type[CallHandler]] = {"auto": AutoAnswer, "reject": RejectAll, "app": AskApp}


def builtin(mode: str) -> CallHandler:
    """The built-in handler for ``--answer auto|reject|app``."""
    try:
        return BUILTIN[mode]()
    except KeyError:
        raise ValueError(f"no built-in handler {mode!r} (auto, reject, app)") from None


def load_handler(spec: str) -> CallHandler:
    """Instantiate ``package.module:ClassName`` (no arguments). ValueError if the path does
    not name a class whose instances have ``decide``."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"a handler is given as package.module:ClassName, not {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import {module_name!r}: {exc}") from exc
    cls = getattr(module, attr, None)
    if not isinstance(cls, type):
        raise ValueError(f"{module_name} has no class {attr!r}")
    handler = cls()
    if not isinstance(handler, CallHandler):
        raise ValueError(f"{spec} has no decide(call) method")
    return handler


def _forward_data(forward: Forward) -> dict[str, Any]:
    data: dict[str, Any] = {"target": forward.target}
    if forward.target_srtp is not None:
        data["srtp"] = forward.target_srtp
    for name in ("to", "edge", "destination"):
        if getattr(forward, name):
            data[name] = getattr(forward, name)
    if forward.ring is not None and forward.next:
        data["ring"] = forward.ring
    if forward.next:
        starts = set(itertools.accumulate(forward.groups or (1,) * (1 + len(forward.next))))
        entries: list[dict[str, Any]] = []
        for index, (target, edge, destination, *to) in enumerate(forward.next, 1):
            entry: dict[str, Any] = {"target": target, "edge": edge, "destination": destination}
            if to and to[0]:  # not the first target's To (another member's AOR)
                entry["to"] = to[0]
            if index not in starts:  # rings together with the target before it
                entry["parallel"] = True
            entries.append(entry)
        data["next"] = json.dumps(entries, separators=(",", ":"))
    return data


def decision_event(decision: Decision, invite: Event, sid: str) -> Event | None:
    """The event that carries ``decision`` to the new session (None for :class:`Ring`)."""
    eid = f"{invite.id}:answer"
    data: dict[str, Any]
    match decision:
        case Accept():
            return Event(eid, "AcceptCall", {}, sid)
        case Reject(code=code):
            return Event(eid, "RejectCall", {"code": code}, sid)
        case Defer():
            return Event(eid, "DeferCall", {}, sid)
        case Redirect(contacts=contacts):
            return Event(eid, "RedirectCall", {"contacts": list(contacts)}, sid)
        case PlayAndHangup(tone=tone, file=file, seconds=seconds):
            data = {"tone": tone} if tone is not None else {"file": file}
            if seconds is not None:
                data["seconds"] = seconds
            return Event(eid, "PlayAndHangup", data, sid)
        case Forward():
            return Event(eid, "ForwardCall", _forward_data(decision), sid)
        case Conference(room=room):
            return Event(eid, "ConferenceCall", {"room": room}, sid)
        case Ring():
            return None
        case CallUser():  # resolved by the worker's intake before it becomes an event
            raise TypeError("CallUser is resolved by a location lookup first")
    raise TypeError(f"not a decision: {decision!r}")


def decide_event(handler: CallHandler, invite: Event, sid: str) -> Event | None:
    """Ask ``handler`` about the call that ``invite`` starts; the decision as an event."""
    decision = handler.decide(IncomingCallInfo.from_invite(invite, sid))
    return decision_event(decision, invite, sid)
