"""Turn a batch of stream entries into the applier's work: find each event's session (its
``sid``, or a registry entry), or make a new one for an initial INVITE or a MakeCall; a new
incoming call gets the call handler's decision, applied right after the session's creation.

Registry entries never change while they exist, so the mappings found are cached; a new
call needs no lookup first (the creation is create-if-absent on the registry, and if the
call has a session already, the event goes to it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sessiond.core import appschema, metrics
from sessiond.core.types import Event
from sessiond.store.keys import Keys
from sessiond.store.location import Binding, Edges, fail_over, judge_edges, lookup_routes
from sessiond.store.queries import get_many
from sessiond.store.tableset import TableSet
from sessiond.worker.applier import Work
from sessiond.worker.handlers import (
    OPTION_FIELDS,
    CallHandler,
    CallUser,
    Decision,
    Forward,
    IncomingCallInfo,
    Reject,
    decision_event,
    media_option,
    ring_registered,
)
from sessiond.worker.router import new_uac, new_uas, registry_key, replaced_dialog

log = logging.getLogger("sessiond.worker")
ROUTE_CACHE = 50_000  # registry entries remembered


@dataclass(frozen=True, slots=True)
class Entry:
    partition: int
    entry_id: bytes
    event: Event | None  # None: an entry we could not decode (acked and counted)
    redelivered: bool


class Intake:
    def __init__(
        self,
        redis: Any,
        keys: Keys,
        handler: CallHandler,
        tables: TableSet,
        steady: Callable[[], bool] = lambda: True,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.handler = handler
        self.tables = tables
        #: whether edges' heartbeats can be judged now (steady contact with the store)
        self.steady = steady
        #: the edges judged with the next lookup: those listed at the last one, and those
        #: that hold its bindings (a stopped edge is no longer listed)
        self._edges: frozenset[str] = frozenset()
        self._routes: dict[str, str] = {}  # registry key -> sid (immutable while it exists)
        self._users: dict[str, CallUser] = {}  # this batch's calls to registered users, by sid

    async def route(self, entries: Sequence[Entry]) -> tuple[list[Work], list[Event]]:
        """The work of ``entries`` (in order), and the events that found no session."""
        work: list[Work | None] = []
        lookups: list[tuple[int, str]] = []  # (work index, registry key)
        for entry in entries:
            event = entry.event
            if event is None or _refused(event):
                work.append(None)
                continue
            key = "" if event.sid else registry_key(self.keys, event)
            work.append(self._work(event, key, entry.redelivered))
            if work[-1] is None:
                lookups.append((len(work) - 1, key))
        orphans: list[Event] = []
        owners = await get_many(self.redis, [key for _, key in lookups])
        for (i, key), owner in zip(lookups, owners, strict=True):
            event = entries[i].event
            assert event is not None
            if owner is None:
                orphans.append(event)
            else:
                sid = self.remember(key, _text(owner))
                work[i] = Work(sid, event, None, entries[i].redelivered)
        found = await self._find_replaced([w for w in work if w is not None])
        return await self._ring_registered([self._redecided(w) for w in found]), orphans

    async def _ring_registered(self, work: list[Work]) -> list[Work]:
        """New calls the handler sent to a registered user (:class:`CallUser`): their AORs'
        bindings, looked up in one round trip, make each a forward or a 480."""
        pending = [(i, self._users.pop(w.sid)) for i, w in enumerate(work) if w.sid in self._users]
        self._users.clear()
        if not pending:
            return work
        # a failed lookup fails the batch, which is delivered again (as for get_many)
        aors = sorted({aor for _, call in pending for aor in call.aors})
        now = time.time()
        lookups, edges = await lookup_routes(self.redis, self.keys, aors, now, sorted(self._edges))
        seen = {b.edge for found in lookups for b in found}
        if self.steady():
            if not seen <= edges.judged:  # an edge new to us (or our first lookup): judge all
                edges = await judge_edges(self.redis, self.keys, sorted(edges.listed | seen), now)
            lookups = [self._fail_over(aor, b, edges) for aor, b in zip(aors, lookups, strict=True)]
        self._edges = edges.listed | (edges.judged & seen)
        found = dict(zip(aors, lookups, strict=True))
        for i, call in pending:
            item = work[i]
            decision: Decision = ring_registered(call, found[call.aor], found)
            if isinstance(decision, Forward) and decision.table not in self.tables.names():
                log.error("forward of %s needs table %r, not loaded: 500", item.sid, decision.table)
                decision = Reject(500)
            new = item.new
            if new is not None and isinstance(decision, Forward):
                new = replace(new, table=decision.table)
            elif new is not None and "media" in new.fields:  # a 480: the default table's
                new = replace(new, fields={k: v for k, v in new.fields.items() if k != "media"})
            then = decision_event(decision, item.event, item.sid)
            work[i] = replace(item, new=new, then=then)
        return work

    @staticmethod
    def _fail_over(aor: str, bindings: list[Binding], edges: Edges) -> list[Binding]:
        """``aor``'s bindings through live edges (:func:`fail_over`), logged and counted."""
        done = fail_over(bindings, edges)
        for binding, edge in done.moved:
            log.warning(
                "binding %s of %s: edge %s is silent, calling it through %s (UDP to %s)",
                binding.contact,
                aor,
                binding.edge,
                edge,
                binding.source,
            )
            metrics.LOCATION_FAILOVER.labels("moved").inc()
        for binding in done.skipped:
            log.warning(
                "binding %s of %s: edge %s is silent and held its %s connection: passed over",
                binding.contact,
                aor,
                binding.edge,
                binding.transport,
            )
            metrics.LOCATION_FAILOVER.labels("skipped").inc()
        return done.bindings

    def remember(self, key: str, sid: str) -> str:
        """Cache registry entry ``key`` (of a session found or created) -> ``sid``."""
        self._routes[key] = sid
        if len(self._routes) > ROUTE_CACHE:
            self._routes.pop(next(iter(self._routes)))
        return sid

    def _work(self, event: Event, key: str, redelivered: bool) -> Work | None:
        """The event's work when no lookup is needed (else None)."""
        if event.sid:
            return Work(event.sid, event, new_uac(self.keys, event), redelivered)
        cached = self._routes.get(key)
        if cached is not None:
            return Work(cached, event, None, redelivered)
        return self._new_call(event, redelivered)

    def _new_call(self, event: Event, redelivered: bool) -> Work | None:
        """A new session for an initial INVITE, with the handler's decision to apply next."""
        new = new_uas(self.keys, event)
        if new is None:
            return None
        sid = new.fields["sid"]
        decision = self.decide(event, sid)
        options = media_option(decision, self.options(event, sid))
        if options:
            new = replace(new, fields={**new.fields, **options})
        if event.data.get("replaces"):  # the table answers a replacing call
            return Work(sid, event, new, redelivered)
        if isinstance(decision, CallUser):  # its bindings are looked up with the batch's
            self._users[sid] = decision
            return Work(sid, event, new, redelivered)
        if isinstance(decision, Forward):
            new = replace(new, table=decision.table)
        return Work(sid, event, new, redelivered, decision_event(decision, event, sid))

    def _redecided(self, work: Work) -> Work:
        """A redelivered initial INVITE whose session exists: the worker that created it may
        have died before the handler's decision was applied, so decide again (the
        decision's event id is the same: applied once)."""
        event = work.event
        if (
            not work.redelivered
            or work.new is not None
            or event.type != "Invite"
            or event.data.get("to_tag")
            or event.data.get("replaces")
        ):
            return work
        decision = self.decide(event, work.sid)
        if isinstance(decision, CallUser):
            self._users[work.sid] = decision
            return work
        return replace(work, then=decision_event(decision, event, work.sid))

    async def _find_replaced(self, work: list[Work]) -> list[Work]:
        """A new call whose INVITE carries Replaces (RFC 3891) learns which session it
        replaces (``replaces_sid``, empty when none matches: the table answers 481)."""
        found = [
            (i, key)
            for i, item in enumerate(work)
            if item.new is not None and (key := replaced_dialog(self.keys, item.event)) is not None
        ]
        owners = await get_many(self.redis, [key for _, key in found])
        for (i, _), owner in zip(found, owners, strict=True):
            event = work[i].event
            data = {**event.data, "replaces_sid": _text(owner) if owner is not None else ""}
            work[i] = replace(work[i], event=Event(event.id, event.type, data, event.sid))
        return work

    def options(self, invite: Event, sid: str) -> dict[str, str]:
        """Per-call session fields from a handler that sets them (:class:`SessionOptions`);
        none when it has no such method, fails, or names another field (logged)."""
        # isinstance(handler, SessionOptions) as the Protocol checks it, without its cost
        session_fields = getattr(self.handler, "session_fields", None)
        if session_fields is None:
            return {}
        try:
            fields = dict(session_fields(IncomingCallInfo.from_invite(invite, sid)))
        except Exception:
            log.exception("handler %r session_fields failed on %s", self.handler, invite.id)
            return {}
        unknown = set(fields) - OPTION_FIELDS
        if unknown:
            log.error("handler %r set unknown session fields %s", self.handler, sorted(unknown))
            return {}
        return {k: str(v) for k, v in fields.items()}

    def decide(self, invite: Event, sid: str) -> Decision:
        """The handler's decision on a new call; a handler that raises, returns something
        else than a decision, or forwards to a table this worker has not loaded, rejects the
        call with 500."""
        try:
            decision = self.handler.decide(IncomingCallInfo.from_invite(invite, sid))
            if not isinstance(decision, CallUser):
                decision_event(decision, invite, sid)  # TypeError if it is not a decision
        except Exception:
            log.exception("handler %r failed on %s: answering 500", self.handler, invite.id)
            return Reject(500)
        if isinstance(decision, Forward) and decision.table not in self.tables.names():
            log.error("forward of %s needs table %r, not loaded: 500", invite.id, decision.table)
            return Reject(500)
        return decision


def _refused(event: Event) -> bool:
    """A command the application schema refuses: acked with the batch, never applied."""
    problem = appschema.problem(event.type, event.data)
    if problem is not None:
        log.warning("refused command %s: %s", event.id, problem)
        metrics.EVENTS.labels(event.type, "refused").inc()
    return problem is not None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
