"""The routing file: a signaling handler for the common cases, written in YAML.

.. code-block:: yaml

    rules:                                  # first match wins
      - match: {to: "sip:busy@*"}           # glob (fnmatch, case-insensitive) ...
        do: {reject: 486}
      - match: {from: "re:^sip:vip-", headers: {contact: "*10.0.0.*"}}   # ... or re:REGEX
        do: accept
      - match: {to: "sip:old@*"}
        do: {redirect: ["sip:new@example.com", "sip:backup@example.com"]}
      - match: {to: "sip:closed@*"}
        do: {play: {file: closed.wav}}      # play-and-hang-up; or {tone: 440, seconds: 2}
      - match: {to: "sip:desk@*"}
        do: {defer: 20}                     # must equal the table's Deferred timeout
      - match: {to: "sip:sales@*"}
        do: {forward: "sip:sales@10.0.0.7:5060"}   # B2BUA (the gateway table)
      - match: {to: "sip:secure@*"}
        do: {forward: {to: "sip:desk@10.0.0.8", srtp: off}}   # the outbound leg's SRTP
        srtp: require                       # this call's leg (default: the media's --srtp)
      - match: {to: "sip:trunk@*"}
        do: {forward: {to: "sip:pbx@10.0.0.9", media: bypass}}   # SDP end to end, no media node
      - match: {to: "sip:standup@*"}
        do: {conference: standup}           # answer into conference room "standup"
      - match: {to: "sip:reception@*"}
        do: {user: alice}                   # ring alice's registered phones (480: none)
      - match: {to: "sip:support@*"}
        do: {user: {name: bob, no_answer: 15, then: "sip:voicemail@10.0.0.9"}}
      - match: {to: "sip:sales@*"}
        do: {hunt: [alice, bob, "sip:desk@10.0.0.7"]}   # each in turn (a sequential hunt)
      - match: {to: "sip:team@*"}
        do: {hunt: {members: [alice, bob], ring: all}}  # every phone of both at once
      - match: {to: "sip:*@example.com"}
        do: registered                      # ring the registered user the call is to
    default: ring                           # optional; without it the --answer mode decides
    latch_private: false                    # optional; true: see below
    media: anchor                           # optional; bypass: forwards pass SDP end to end

``latch_private: true`` (at the top: every call; in a rule: the calls it matches) is for
phones behind NAT: the call's media leg does not send to a private (RFC 1918 / ULA) address
its SDP names, and sends to where the phone's RTP comes from once it arrives (and keeps
sending there when a re-INVITE names the private address again).

``to`` and ``from`` match the URI inside the header (``sip:user@host``, no display name or
tag); ``headers`` match the raw values the edge publishes (``from``, ``to``, ``contact``,
``source``). All conditions of a rule must hold. Actions: ``accept``, ``ring`` (the app
answers; the Ringing timeout applies), ``defer`` or ``{defer: SECONDS}``, ``{reject: CODE}``,
``{redirect: URI | [URI...]}``, ``{play: {tone: HZ, seconds: S} | {file: PATH, seconds?}}``,
``{forward: URI}`` or ``{forward: {to: URI, srtp: POLICY}}``, ``{conference: ROOM}``,
``{user: USER | USER@DOMAIN | {name, fork, no_answer, then}}``, ``{hunt: [MEMBER...] |
{members, ring, no_answer, then}}``, ``registered``.

``{user: alice}`` rings alice's registered phones forked by q (RFC 3261 16.6): those of
equal q at once, groups of lower q after them (through the edge that took each REGISTER;
the next group when all of one failed 3xx-5xx or rang ``no_answer`` s; the first 2xx wins
and the others get CANCEL; a 6xx stops; 480 when she has none); without ``@DOMAIN`` the
domain is the one the call is to. ``fork: parallel`` rings all her phones at once,
``fork: sequential`` one at a time in q order (``fork: q`` is the default).
``{user: {name: alice, no_answer: 20, then: "sip:vm@10.0.0.9"}}``: each contact rings at
most 20 s before the next is tried (CANCEL to it), and ``then`` is tried last (busy, no
answer, or not registered: a voicemail IVR, a cell phone through a gateway...).
``{hunt: [alice, bob, "sip:desk@10.0.0.7"]}`` (or ``{hunt: {members: [...], ring:
sequential, no_answer: S, then: URI}}``) is a sequential hunt group: each member in turn (a
user's contacts forked by q, a URI as it is), the first member a user; users without
``@DOMAIN`` are of the call's domain. ``ring: all`` rings every member's contacts at once.
``registered`` rings the user the call is to, when the edge is the
registrar of its domain (``--registrar``); for another domain it is the ``--answer`` mode.
Without a routes file, and when no rule matches and there is no ``default``, a call to a
user of a ``--registrar`` domain rings that user.

``media: bypass`` (a forward's ``{forward: {to: URI, media: bypass}}``, a rule's ``media:``,
or the file's top-level ``media:``, in that order; ``anchor`` is the default) makes a
forwarded call (``forward``, ``user``, ``hunt``, ``registered``) a signaling-only B2BUA: the
caller's SDP offer goes to the callee unchanged and the callee's answer (183 or 200) back
unchanged, re-INVITE and UPDATE offers and their answers are relayed between the legs, and
no media node is asked for anything (RTP flows between the phones). A=crypto passes as it
is, so ``srtp:`` on a bypassed rule or forward is an error. On other decisions ``media:`` has
no effect. A bypassed call needs an offer in the INVITE (a late-offer INVITE gets 488).

A rule's ``srtp:`` (``off``, ``offer``, ``require``) is the SRTP policy of the call's leg
(for a decision that answers with media: not reject or redirect); a forward's ``srtp:`` is
the outbound leg's. Without them, the media node's ``--srtp`` applies.

A defer's time is a state timeout, fixed per table: ``{defer: N}`` is checked against the
table's ``Deferred`` state when the worker starts (:meth:`Routes.check_table`).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sessiond.core.errors import SessiondError
from sessiond.core.vocabulary import MEDIA_MODES, SRTP_POLICIES
from sessiond.table.actions import uri_of
from sessiond.table.model import Table
from sessiond.table.yamlsrc import LineDict, LineList, YamlSourceError, load_yaml
from sessiond.worker.handlers import (
    FORK_MODES,
    Accept,
    CallHandler,
    CallUser,
    Conference,
    Decision,
    Defer,
    Forward,
    IncomingCallInfo,
    PlayAndHangup,
    Redirect,
    Reject,
    Ring,
    bypass_srtp_conflict,
)

HEADER_NAMES = frozenset({"from", "to", "contact", "source"})
_MATCH_KEYS = frozenset({"to", "from", "headers"})


class RoutesError(SessiondError):
    """A routing file is invalid. ``problems`` holds one ``file:line: message`` each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


Matcher = Callable[[str], bool]


@dataclass(frozen=True, slots=True)
class RingUser:
    """``{user: ...}`` (``user`` set: that user, of ``domain`` or the call's) or
    ``registered`` (``user`` empty: the user the call is to), made a
    :class:`~sessiond.worker.handlers.CallUser` for each call."""

    user: str = ""
    domain: str = ""
    no_answer: float | None = None
    then: str | None = None
    members: tuple[str, ...] = ()  # a hunt group's members after ``user``: users or URIs
    fork: str = "q"  # CallUser.fork: q, parallel (ring-all) or sequential

    def for_call(self, call: IncomingCallInfo, fallback: CallHandler | None) -> Decision:
        if not self.user:
            if call.aor:
                return CallUser(call.aor)
            return fallback.decide(call) if fallback is not None else Ring()
        here = call.aor.rpartition("@")[2] or _host_of(call.to_uri)
        domain = self.domain or here
        if not domain or (not here and any("@" not in m for m in self.members)):
            return Reject(404)
        members = tuple(
            m if m.startswith(("sip:", "sips:")) or "@" in m else f"{m}@{here}"
            for m in self.members
        )
        return CallUser(f"{self.user}@{domain}", self.no_answer, self.then, members, self.fork)


def _host_of(uri: str) -> str:
    text = uri_of(uri)
    host = text.partition("@")[2] if "@" in text else text.partition(":")[2]
    return host.split(";")[0].split(":")[0].lower()


RuleDecision = Decision | RingUser


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule: every matcher must accept its field; then ``decision``."""

    line: int
    matchers: tuple[tuple[str, str, Matcher], ...]  # (field, pattern text, matcher)
    decision: RuleDecision
    defer_seconds: float | None = None
    latch_private: bool | None = None  # None: the file's top-level value
    srtp: str | None = None  # the SRTP policy of the call's leg (None: the media node's)
    media: str | None = None  # anchor or bypass (None: the file's top-level value)

    def matches(self, call: IncomingCallInfo) -> bool:
        """True when every condition of the rule holds for ``call``."""
        return all(fn(_field(call, name)) for name, _, fn in self.matchers)


def _field(call: IncomingCallInfo, name: str) -> str:
    if name == "to":
        return uri_of(call.to_uri)
    if name == "from":
        return uri_of(call.from_uri)
    return call.headers.get(name.removeprefix("header:"), "")


class Routes:
    """A :class:`~sessiond.worker.handlers.CallHandler` from a routing file: the first matching
    rule decides; else the file's ``default``; else ``fallback`` (the ``--answer`` mode)."""

    def __init__(
        self,
        rules: list[Rule],
        default: RuleDecision | None = None,
        fallback: CallHandler | None = None,
        *,
        path: str = "<routes>",
        default_defer: tuple[int, float] | None = None,
        latch_private: bool = False,
        media: str | None = None,
    ) -> None:
        self.latch_private = latch_private  # every call's, unless its rule says otherwise
        self.media = media  # every forward's, unless its rule or forward says otherwise
        self.rules = rules
        self.default = default
        self.fallback = fallback
        self.path = path
        self._default_defer = default_defer  # (line, seconds) of a `default: {defer: N}`

    def decide(self, call: IncomingCallInfo) -> Decision:
        """The decision of the first rule that matches ``call``."""
        for rule in self.rules:
            if rule.matches(call):
                return self._resolved(rule.decision, call)
        if self.default is not None:
            return self._resolved(self.default, call)
        return self.fallback.decide(call) if self.fallback is not None else Ring()

    def _resolved(self, decision: RuleDecision, call: IncomingCallInfo) -> Decision:
        if isinstance(decision, RingUser):
            return decision.for_call(call, self.fallback)
        return decision

    def session_fields(self, call: IncomingCallInfo) -> dict[str, str]:
        """Per-call options (:class:`~sessiond.worker.handlers.SessionOptions`): the first
        matching rule's ``latch_private``, else the file's, the rule's ``srtp``, and its
        ``media`` else the file's (kept by the worker only for a forward)."""
        latch = self.latch_private
        media = self.media
        fields: dict[str, str] = {}
        for rule in self.rules:
            if rule.matches(call):
                latch = latch if rule.latch_private is None else rule.latch_private
                media = media if rule.media is None else rule.media
                if rule.srtp is not None:
                    fields["srtp"] = rule.srtp
                break
        if latch:
            fields["latch_private"] = "true"
        if media == "bypass":
            fields["media"] = media
        return fields

    def check_table(self, table: Table) -> list[str]:
        """Problems (``file:line: message``) of ``{defer: N}`` against ``table``."""
        defers = [(r.line, r.defer_seconds) for r in self.rules if r.defer_seconds is not None]
        if self._default_defer is not None:
            defers.append(self._default_defer)
        uses_defer = any(isinstance(r.decision, Defer) for r in self.rules) or isinstance(
            self.default, Defer
        )
        state = table.states.get("Deferred")
        timeout = state.timeout if state is not None else None
        if timeout is None:
            if uses_defer:
                return [f"{self.path}:1: table {table.name} has no Deferred state with a timeout"]
            return []
        return [
            f"{self.path}:{line}: defer {seconds:g} s, but table {table.name} defers "
            f"{timeout.seconds:g} s (its Deferred state's timeout)"
            for line, seconds in defers
            if seconds != timeout.seconds
        ]


def load_routes(path: str | Path, fallback: CallHandler | None = None) -> Routes:
    """Load and validate a routing file; :class:`RoutesError` lists every problem."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RoutesError([f"{name}:1: cannot read: {exc.strerror}"]) from exc
    return parse_routes(text, name, fallback)


def parse_routes(text: str, name: str = "<routes>", fallback: CallHandler | None = None) -> Routes:
    """Parse routing-file text (see the module docstring)."""
    try:
        doc = load_yaml(text)
    except YamlSourceError as exc:
        raise RoutesError([f"{name}:{exc.line}: {exc.message}"]) from exc
    problems: list[str] = []

    def problem(line: int, message: str) -> None:
        problems.append(f"{name}:{line}: {message}")

    if not isinstance(doc, LineDict):
        raise RoutesError([f"{name}:1: expected a mapping with rules: and default:"])
    for key in sorted(set(doc) - {"rules", "default", "latch_private", "media"}, key=str):
        problem(doc.line_of(key), f"unknown key {key!r} (rules, default, latch_private, media)")
    latch_private = _flag(doc, "latch_private", problem)
    media = _media(doc, problem)
    rules: list[Rule] = []
    raw_rules = doc.get("rules", [])
    if not isinstance(raw_rules, LineList):
        problem(doc.line_of("rules"), "rules must be a list")
        raw_rules = LineList()
    for index, raw in enumerate(raw_rules):
        rule = _rule(raw, raw_rules.line_of(index), problem, media)
        if rule is not None:
            rules.append(rule)
    default, default_defer = _default(doc, media, problem)
    if problems:
        raise RoutesError(problems)
    return Routes(
        rules,
        default,
        fallback,
        path=name,
        default_defer=default_defer,
        latch_private=bool(latch_private),
        media=media,
    )


Problem = Callable[[int, str], None]


def _default(
    doc: LineDict, media: str | None, problem: Problem
) -> tuple[RuleDecision | None, tuple[int, float] | None]:
    """The file's ``default:`` decision and, for a defer, (line, seconds)."""
    if "default" not in doc:
        return None, None
    line = doc.line_of("default")
    parsed = _decision(doc["default"], line, problem)
    if parsed is None:
        return None, None
    default = parsed[0]
    if media == "bypass" and isinstance(default, Forward) and default.target_srtp:
        if default.media != "anchor":
            problem(line, bypass_srtp_conflict())
    return default, (line, parsed[1]) if parsed[1] is not None else None


def _flag(raw: LineDict, key: str, problem: Problem) -> bool | None:
    """``key: true|false`` of a mapping (None when absent or not a boolean: a problem)."""
    value = raw.get(key)
    if value is None or isinstance(value, bool):
        return value
    problem(raw.line_of(key), f"{key} is true or false")
    return None


def _media(raw: LineDict, problem: Problem) -> str | None:
    """``media: anchor|bypass`` of a mapping (None when absent or wrong: a problem)."""
    value = raw.get("media")
    if value is None or value in MEDIA_MODES:
        return value if isinstance(value, str) else None
    problem(raw.line_of("media"), f"media is one of {', '.join(MEDIA_MODES)}, not {value!r}")
    return None


def _rule(raw: Any, line: int, problem: Problem, file_media: str | None = None) -> Rule | None:
    if not isinstance(raw, LineDict):
        problem(line, "a rule is a mapping with match: and do:")
        return None
    keys = {"match", "do", "latch_private", "srtp", "media"}
    for key in sorted(set(raw) - keys, key=str):
        problem(
            raw.line_of(key), f"unknown rule key {key!r} (match, do, latch_private, srtp, media)"
        )
    latch = _flag(raw, "latch_private", problem)
    media = _media(raw, problem)
    if "do" not in raw:
        problem(line, "rule has no do:")
        return None
    matchers = _matchers(raw.get("match", LineDict()), raw.line_of("match"), problem)
    parsed = _decision(raw["do"], raw.line_of("do"), problem)
    if matchers is None or parsed is None:
        return None
    srtp = raw.get("srtp")
    if srtp is not None and srtp not in SRTP_POLICIES:
        problem(raw.line_of("srtp"), f"srtp is one of {', '.join(SRTP_POLICIES)}, not {srtp!r}")
        return None
    if srtp is not None and isinstance(parsed[0], Reject | Redirect):
        problem(raw.line_of("srtp"), "srtp: needs a decision that answers with media")
        return None
    decision = parsed[0]
    forward_media = decision.media if isinstance(decision, Forward) else None
    bypassed = (forward_media or media or file_media) == "bypass"
    if bypassed and isinstance(decision, Forward | RingUser):
        if srtp is not None or (isinstance(decision, Forward) and decision.target_srtp):
            problem(raw.line_of("srtp" if srtp is not None else "do"), bypass_srtp_conflict())
            return None
        if latch:
            problem(raw.line_of("latch_private"), "latch_private does not apply to media: bypass")
            return None
    return Rule(line, tuple(matchers), decision, parsed[1], latch, srtp, media)


def _matchers(raw: Any, line: int, problem: Problem) -> list[tuple[str, str, Matcher]] | None:
    if not isinstance(raw, LineDict) or not raw:
        problem(line, "match: is a mapping of to / from / headers to patterns")
        return None
    out: list[tuple[str, str, Matcher]] = []
    ok = True
    for key, value in raw.items():
        at = raw.line_of(key)
        if key not in _MATCH_KEYS:
            problem(at, f"cannot match on {key!r} (to, from, headers)")
            ok = False
        elif key == "headers":
            if not isinstance(value, LineDict) or not value:
                problem(at, "headers: is a mapping of header name to pattern")
                ok = False
                continue
            for header, pattern in value.items():
                hname = str(header).lower()
                if hname not in HEADER_NAMES:
                    problem(
                        value.line_of(header),
                        f"header {header!r} is not published by "
                        f"the edge (one of {', '.join(sorted(HEADER_NAMES))})",
                    )
                    ok = False
                    continue
                fn = _pattern(pattern, value.line_of(header), problem)
                ok = ok and fn is not None
                if fn is not None:
                    out.append((f"header:{hname}", str(pattern), fn))
        else:
            fn = _pattern(value, at, problem)
            ok = ok and fn is not None
            if fn is not None:
                out.append((str(key), str(value), fn))
    return out if ok else None


def _pattern(value: Any, line: int, problem: Problem) -> Matcher | None:
    if not isinstance(value, str) or not value:
        problem(line, "a pattern is a non-empty string (a glob, or re:REGEX)")
        return None
    if value.startswith("re:"):
        try:
            regex = re.compile(value[3:])
        except re.error as exc:
            problem(line, f"bad regular expression {value[3:]!r}: {exc}")
            return None
        return lambda text: regex.search(text) is not None
    glob = value.lower()
    return lambda text: fnmatch.fnmatchcase(text.lower(), glob)


def _decision(raw: Any, line: int, problem: Problem) -> tuple[RuleDecision, float | None] | None:
    """(decision, defer seconds if given) or None after reporting the problem."""
    simple: dict[str, RuleDecision] = {
        "accept": Accept(),
        "ring": Ring(),
        "defer": Defer(),
        "registered": RingUser(),
    }
    if isinstance(raw, str) and raw in simple:
        return simple[raw], None
    if not isinstance(raw, Mapping) or len(raw) != 1:
        problem(
            line,
            "do: is accept, ring, defer, registered, or one of {reject: CODE}, "
            "{defer: SECONDS}, {redirect: URIS}, {play: {...}}, {forward: URI}, "
            "{conference: ROOM}, {user: USER}, {hunt: [MEMBER...]}",
        )
        return None
    ((kind, arg),) = raw.items()
    builders: dict[str, Callable[[Any], tuple[RuleDecision, float | None]]] = {
        "reject": lambda a: (Reject(_int(a)), None),
        "defer": lambda a: (Defer(), _seconds(a)),
        "redirect": lambda a: (Redirect(_uris(a)), None),
        "play": lambda a: (_play(a), None),
        "forward": lambda a: (_forward(a), None),
        "conference": lambda a: (_conference(a), None),
        "user": lambda a: (_user(a), None),
        "hunt": lambda a: (_hunt(a), None),
    }
    build = builders.get(str(kind))
    if build is None:
        problem(
            line,
            f"unknown action {kind!r} "
            "(accept, ring, defer, registered, reject, redirect, play, forward, conference, "
            "user, hunt)",
        )
        return None
    try:
        return build(arg)
    except (TypeError, ValueError) as exc:
        problem(line, f"{kind}: {exc}")
        return None


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected a SIP code (400-699), not {value!r}")
    return value


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"expected a positive number of seconds, not {value!r}")
    return float(value)


def _uris(value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(
        isinstance(u, str) and u.startswith(("sip:", "sips:", "tel:")) for u in items
    ):
        raise ValueError("expected a SIP URI or a list of them (sip:, sips:, tel:)")
    return tuple(items)


def _forward(value: Any) -> Forward:
    if isinstance(value, Mapping):
        if set(value) - {"to", "srtp", "media"} or not isinstance(value.get("to"), str):
            raise ValueError(
                "expected a SIP URI, or {to: URI, srtp: off|offer|require, media: anchor|bypass}"
            )
        srtp = value.get("srtp")
        if srtp is not None and srtp not in SRTP_POLICIES:
            raise ValueError(f"srtp is one of {', '.join(SRTP_POLICIES)}, not {srtp!r}")
        media = value.get("media")
        if media is not None and media not in MEDIA_MODES:
            raise ValueError(f"media is one of {', '.join(MEDIA_MODES)}, not {media!r}")
        return Forward(value["to"], target_srtp=srtp, media=media)
    if not isinstance(value, str):
        raise ValueError("expected one SIP URI (sip: or sips:)")
    return Forward(value)


_USER = re.compile(r"^[A-Za-z0-9._~!$&'*+=,;?/%-]{1,64}(@[A-Za-z0-9.-]{1,253})?$")


_HUNT_RING = {"all": "parallel", "sequential": "q"}


def _hunt(value: Any) -> RingUser:
    options: Mapping[str, Any] = {}
    fork = "q"
    if isinstance(value, Mapping):
        if set(value) - {"members", "no_answer", "then", "ring"} or "members" not in value:
            raise ValueError(
                "expected [MEMBER...] or {members: [...], ring: all|sequential, no_answer: S, "
                "then: URI}"
            )
        ring = value.get("ring", "sequential")
        if ring not in _HUNT_RING:
            raise ValueError(f"ring is all or sequential, not {ring!r}")
        fork = _HUNT_RING[ring]
        options = {k: v for k, v in value.items() if k not in ("members", "ring")}
        value = value["members"]
    if not isinstance(value, list) or not value or not all(isinstance(m, str) for m in value):
        raise ValueError("expected a list of users (alice, bob@example.com) and SIP URIs")
    for member in value:
        if member.startswith(("sip:", "sips:")):
            Forward(member)  # ValueError when it is not a plain SIP URI
        elif not _USER.fullmatch(member):
            raise ValueError(f"a member is a user name, user@domain or a SIP URI, not {member!r}")
    if value[0].startswith(("sip:", "sips:")):
        raise ValueError("the first member is a user (alice or alice@example.com)")
    first = _user({"name": value[0], **options})
    return dataclasses.replace(first, members=tuple(value[1:]), fork=fork)


def _user(value: Any) -> RingUser:
    no_answer: float | None = None
    then: str | None = None
    fork = "q"
    if isinstance(value, Mapping):
        if set(value) - {"name", "no_answer", "then", "fork"} or "name" not in value:
            raise ValueError(
                "expected USER or {name: USER, fork: parallel|sequential|q, no_answer: SECONDS, "
                "then: URI}"
            )
        fork = value.get("fork", "q")
        if fork not in FORK_MODES:
            raise ValueError(f"fork is one of {', '.join(FORK_MODES)}, not {fork!r}")
        if value.get("no_answer") is not None:
            no_answer = _seconds(value["no_answer"])
        if value.get("then") is not None:
            then = Forward(value["then"]).target if isinstance(value["then"], str) else ""
            if not then:
                raise ValueError("then: expected one SIP URI (sip: or sips:)")
        value = value["name"]
    if not isinstance(value, str) or not _USER.fullmatch(value):
        raise ValueError(f"expected a user name (alice) or user@domain, not {value!r}")
    user, _, domain = value.partition("@")
    return RingUser(user, domain.lower(), no_answer, then, fork=fork)


def _conference(value: Any) -> Conference:
    if not isinstance(value, str):
        raise ValueError("expected a room name (1-64 of A-Z a-z 0-9 ._@+-)")
    return Conference(value)


def _play(value: Any) -> PlayAndHangup:
    if not isinstance(value, Mapping) or set(value) - {"tone", "file", "seconds"}:
        raise ValueError("expected {tone: HZ, seconds: S} or {file: PATH, seconds: S?}")
    tone, file, seconds = value.get("tone"), value.get("file"), value.get("seconds")
    if tone is not None and (isinstance(tone, bool) or not isinstance(tone, int | float)):
        raise ValueError("tone is a frequency in Hz")
    if file is not None and not isinstance(file, str):
        raise ValueError("file is a WAV path")
    return PlayAndHangup(
        tone=float(tone) if tone is not None else None,
        file=str(Path(file).resolve()) if file is not None else None,
        seconds=_seconds(seconds) if seconds is not None else None,
    )
