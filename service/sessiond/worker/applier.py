"""Apply events to sessions: read, decide, compare-and-set. Retries on conflict.

Theory of operation
-------------------
A batch is many events for many sessions. Each event becomes a :class:`_Job`, the one
record of its progress. One session's jobs queue in batch order, and each *round* takes
the head job of every queue, so a session's next event starts only after its previous one
is stored. A round costs at most two round trips, whatever the batch size:

1. Decide. A new session's first event is decided on the fresh session (no I/O). Any
   other event of a first delivery is decided on the snapshot this worker cached when it
   last wrote that session, if the decision is a transition (the compare-and-set checks
   the snapshot: every write bumps ``version``, so sid and version name its content; the
   cache forgets a session on a conflict, a duplicate, its end or its expiry). The rest
   are decided after one read of their sessions together with their applied-event
   markers. An event applied already was stored with its commands, which went out with
   it (see below), unless it was stored with an outbox (a Redis Cluster, or an older
   sessiond) not emitted yet (the attempt died before emitting): that outbox is emitted
   again (receivers drop repeated command ids), unless the call it started has ended since
   (stale).
2. Store, in one round: create.lua for new sessions (create-if-absent on the registry
   entries), transition.lua (compare-and-set on ``version``) for the others. CONFLICT means
   another worker moved the session first: the job stays at the head of its queue, its
   cached snapshot is dropped, and the next round reads again after a jittered back-off.
   A creation that finds the call's session already there becomes an event for it.
3. Follow up. A work's ``then`` event (the call handler's decision on a new call) is
   decided on the created snapshot and stored in the same round, right after the creation
   (expecting version 1). If that is not possible it becomes the session's next job.

Emission. On a store that is not a Redis Cluster the scripts send each transition's commands
themselves, atomically with storing it (``Store.direct``): commands leave in the order the
transitions are stored, and nothing is kept. The outboxes an older sessiond stored, which a
redelivery finds, are sent (and deleted) at the end of the round that found them, before
the next round stores their sessions' next transitions. In a Redis Cluster the commands'
streams are on other slots: the scripts keep each transition's outbox, and
:meth:`Applier.apply` returns the stored outboxes, in the order they were stored, for the
caller to send in its last round (the worker adds its acks and its next read to that round),
and the events they belong to: after the commands, their stored outboxes are deleted
(:meth:`~sessiond.store.store.Store.queue_emitted`): the applied-event marker still refuses
a later copy of an event, which then re-emits nothing. A crash before then leaves the
stream entries pending, and their redelivery re-emits. :meth:`Applier.run` is ``apply`` plus
that round.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from sessiond.core.errors import ConflictRetriesExhausted
from sessiond.core.types import Event, Outcome, Verdict
from sessiond.store import Store
from sessiond.store.round import Round
from sessiond.store.store import ApplyResult, CreateResult
from sessiond.store.tableset import TableSet
from sessiond.table.engine import decide
from sessiond.table.model import Table

Status = Literal["applied", "created", "duplicate", "ignored", "no_transition", "missing", "stale"]
log = logging.getLogger("sessiond.applier")
_Outbox = tuple[str, str, bytes]  # sid, event id, the stored outbox


@dataclass(frozen=True, slots=True)
class Handled:
    status: Status
    sid: str
    state: str = ""
    reason: str = ""
    commands: int = 0
    conflicts: int = 0
    previous: str = ""  # the state before (empty for a new session)
    terminal: bool = False
    followup: Handled | None = None  # the result of the work's ``then`` event
    # a stored transition: its decision and the session it was decided on (for the call log)
    decision: Verdict | None = field(default=None, compare=False, repr=False)
    session: Mapping[str, str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of(
        cls,
        status: Status,
        sid: str,
        decision: Verdict,
        conflicts: int = 0,
        previous: str = "",
        session: Mapping[str, str] | None = None,
    ) -> Handled:
        """The result of a stored transition."""
        return cls(
            status,
            sid,
            decision.state,
            decision.reason,
            len(decision.commands),
            conflicts,
            previous,
            decision.terminal,
            decision=decision,
            session=session,
        )


@dataclass(frozen=True, slots=True)
class NewSession:
    """What a session factory decided for an event that belongs to no session yet."""

    fields: Mapping[str, str]  # at least sid, role, call_id, local_tag (+ remote_tag, media_id)
    registry: Sequence[str]
    table: str = "default"


@dataclass(frozen=True, slots=True)
class Work:
    """One event for one session. ``redelivered`` is False only for a first delivery
    (XREADGROUP ``>``): then the event cannot have been applied before, and a cached
    snapshot may be used; otherwise the applied-event marker is checked first.

    ``then`` is an event for the same session to apply right after this one when this one
    created the session (or was found applied already): the call handler's decision on a new
    call, which so needs no trip through the event stream."""

    sid: str
    event: Event
    new: NewSession | None = None
    redelivered: bool = True
    then: Event | None = None


@dataclass(frozen=True, slots=True)
class Applied:
    """A batch's results, in batch order, and (a Redis Cluster) the outboxes of its stored
    transitions, in the order they were stored: the caller emits them before acknowledging
    the events, then forgets the stored outboxes of ``sent`` (sid, event id of each non-empty
    one). Elsewhere the scripts sent the commands: none are left."""

    handled: list[Handled]
    outboxes: list[bytes]
    sent: list[tuple[str, str]] = field(default_factory=list)


@dataclass(slots=True)
class _Job:
    """One event of a batch, from its first decision to its result."""

    work: Work
    conflicts: int = 0
    result: Handled | None = None
    followup: _Job | None = None  # the work's ``then`` event, once it has a job

    def handled(self) -> Handled:
        assert self.result is not None
        if self.followup is None:
            return self.result
        return replace(self.result, followup=self.followup.result)

    def follow(self, sid: str) -> _Job:
        """A job for this work's ``then`` event, on session ``sid``."""
        assert self.work.then is not None
        then = replace(self.work.then, sid=sid)
        return _Job(Work(sid, then, None, self.work.redelivered))


@dataclass(slots=True)
class _Write:
    """A decided transition, waiting for the round that stores it."""

    job: _Job
    session: Mapping[str, str]  # the snapshot it was decided on
    decision: Verdict
    then: _Write | None = None  # a creation's follow-up, stored right after it


class Applier:
    def __init__(
        self,
        store: Store,
        tables: TableSet,
        *,
        clock: Callable[[], float] = time.time,
        max_conflicts: int = 64,
        cache_size: int = 20_000,
    ) -> None:
        self.store = store
        self.tables = tables
        self.clock = clock
        self.max_conflicts = max_conflicts
        self.cache_size = cache_size
        self._cache: OrderedDict[str, dict[str, str]] = OrderedDict()

    async def handle(self, sid: str, event: Event) -> Handled:
        return (await self.run([Work(sid, event)]))[0]

    async def create(
        self,
        fields: Mapping[str, str],
        registry: Sequence[str],
        event: Event,
        table_name: str = "default",
    ) -> Handled:
        """Create a session for ``event`` (create-if-absent on the registry entries). If
        another worker created it first, the event is applied to that session instead."""
        work = Work(fields["sid"], event, NewSession(fields, registry, table_name))
        return (await self.run([work]))[0]

    async def run(self, batch: Sequence[Work]) -> list[Handled]:
        """:meth:`apply`, then (a Redis Cluster) emit the outboxes in one round, and forget
        them in another once they are sent (other nodes)."""
        applied = await self.apply(batch)
        pipe = Round(self.store.redis)
        if self.store.queue_outboxes(pipe, applied.outboxes):
            await pipe.execute()
            pipe = Round(self.store.redis)
            self.store.queue_emitted(pipe, applied.sent)
            await pipe.execute()
        return applied.handled

    async def apply(self, batch: Sequence[Work]) -> Applied:
        """Decide and store a batch, round by round (see the module's docstring)."""
        jobs = [_Job(work) for work in batch]
        queues: dict[str, deque[_Job]] = {}
        for job in jobs:
            queues.setdefault(job.work.sid, deque()).append(job)
        outboxes: list[_Outbox] = []
        while queues:
            heads = [queue[0] for queue in queues.values()]
            creates = self._decide_new(heads)
            applies = await self._decide_events(heads, outboxes)
            await self._store(creates, applies, outboxes)
            if self.store.direct and any(outbox for *_, outbox in outboxes):
                await self._resend(outboxes)
            lost = max((job.conflicts for job in heads if job.result is None), default=0)
            if lost:  # lost a race: back off a little, with jitter, so racers spread out
                await asyncio.sleep(random.uniform(0, min(0.05, 0.0005 * 2**lost)))
            _advance(queues)
        sent = [(sid, event_id) for sid, event_id, outbox in outboxes if outbox]
        return Applied([job.handled() for job in jobs], [o for *_, o in outboxes], sent)

    async def _resend(self, outboxes: list[_Outbox]) -> None:
        """Where the scripts send the commands (not a cluster), the only outboxes are those
        an older sessiond stored and a redelivery found: send them (and delete them) now,
        before the next round stores these sessions' next transitions, whose commands go
        out as they are stored."""
        pipe = Round(self.store.redis)
        self.store.queue_outboxes(pipe, (outbox for *_, outbox in outboxes))
        self.store.queue_emitted(pipe, [(sid, eid) for sid, eid, outbox in outboxes if outbox])
        await pipe.execute()
        outboxes.clear()

    # -- 1. decide ----------------------------------------------------------------------
    def _decide_new(self, heads: list[_Job]) -> list[_Write]:
        """The first transitions of new sessions, with their follow-ups (no I/O)."""
        writes: list[_Write] = []
        for job in heads:
            work = job.work
            if work.new is None:
                continue
            table = self.tables.current(work.new.table)
            now = self.clock()
            session = {
                "created_at": f"{now:.3f}",
                **work.new.fields,
                "state": table.initial,
                "version": "0",
                "table": table.name,
                "table_rev": table.rev,
            }
            decision = decide(table, session, work.event, now)
            if decision.outcome is Outcome.TRANSITION:
                then = self._decide_then(job, session, decision)
                writes.append(_Write(job, session, decision, then))
            else:
                job.result = _not_applied(work.sid, decision, table)
        return writes

    def _decide_then(
        self, job: _Job, session: Mapping[str, str], decision: Verdict
    ) -> _Write | None:
        """The work's ``then`` event decided on the snapshot its creation will store."""
        if job.work.then is None or decision.terminal:
            return None
        after = {**session, **decision.fields, "version": "1"}
        follow = job.follow(job.work.sid)
        then = decide(self.tables.current(session["table"]), after, follow.work.event, self.clock())
        return _Write(follow, after, then) if then.outcome is Outcome.TRANSITION else None

    async def _decide_events(self, heads: list[_Job], outboxes: list[_Outbox]) -> list[_Write]:
        """Decide the events of existing sessions: on cached snapshots, and on one read of
        the sessions not cached (one round trip for all of them)."""
        writes: list[_Write] = []
        to_read: list[_Job] = []
        for job in heads:
            if job.work.new is not None:
                continue
            write = await self._decide_cached(job)
            if write is None:
                to_read.append(job)
            else:
                writes.append(write)
        if to_read:
            reads = await self.store.read_many([(j.work.sid, j.work.event.id) for j in to_read])
            for job, (session, done) in zip(to_read, reads, strict=True):
                write = await self._decide_read(job, session, done, outboxes)
                if write is not None:
                    writes.append(write)
        return writes

    async def _decide_cached(self, job: _Job) -> _Write | None:
        """Decide a first delivery on the cached snapshot; only a transition is trusted
        (the compare-and-set will verify it). Anything else may be an artefact of a stale
        cache, so the caller reads Redis."""
        work = job.work
        session = None if work.redelivered else self._cache.get(work.sid)
        if session is None:
            return None
        table = await self.tables.for_session(session)
        decision = decide(table, session, work.event, self.clock())
        return _Write(job, session, decision) if decision.outcome is Outcome.TRANSITION else None

    async def _decide_read(
        self,
        job: _Job,
        session: dict[str, str] | None,
        done: bytes | None,
        outboxes: list[_Outbox],
    ) -> _Write | None:
        """Decide on the session as read, knowing whether the event was applied already."""
        sid, event = job.work.sid, job.work.event
        state = (session or {}).get("state", "")
        if done is not None and (ended_by := _stale(event, session)):
            log.info("dropped stale %s %s: %s ended by %s", event.type, event.id, sid, ended_by)
            job.result = Handled("stale", sid, state, f"ended by {ended_by}")
        elif done is not None:
            outboxes.append((sid, event.id, done))
            job.result = Handled("duplicate", sid, state)
        elif session is None:
            self._cache.pop(sid, None)
            job.result = Handled("missing", sid, reason="no such session")
        else:
            table = await self.tables.for_session(session)
            decision = decide(table, session, event, self.clock())
            if decision.outcome is Outcome.TRANSITION:
                return _Write(job, session, decision)
            job.result = _not_applied(sid, decision, table)
        return None

    # -- 2. store -----------------------------------------------------------------------
    async def _store(
        self, creates: list[_Write], applies: list[_Write], outboxes: list[_Outbox]
    ) -> None:
        """Create the new sessions and compare-and-set the others, in one round trip. A
        creation's follow-up goes right after the creations, expecting version 1: if the
        creation failed, it finds no session or another version, or the same session
        created by another worker from the same event, where it is due anyway."""
        if not creates and not applies:
            return
        thens = [w.then for w in creates if w.then is not None]
        created, applied = await self.store.write_many(
            [(w.session, _registry(w), w.job.work.event, w.decision) for w in creates],
            [(w.session, w.job.work.event.id, w.decision) for w in thens + applies],
        )
        followed = iter(applied[: len(thens)])
        for write, made in zip(creates, created, strict=True):
            self._created(write, made, next(followed) if write.then is not None else None, outboxes)
        self._applied(zip(applies, applied[len(thens) :], strict=True), outboxes)

    def _created(
        self,
        write: _Write,
        made: CreateResult,
        followed: ApplyResult | None,
        outboxes: list[_Outbox],
    ) -> None:
        job = write.job
        if not made.created:  # another worker won: this event now goes to its session
            job.work = replace(job.work, sid=made.sid, new=None, redelivered=True)
            return
        self._remember(made.sid, write.session, write.decision, 1)
        outboxes.append((made.sid, job.work.event.id, made.outbox))
        job.result = Handled.of("created", made.sid, write.decision, session=write.session)
        then = write.then
        if then is not None and followed is not None and followed.status == "OK":
            self._remember(made.sid, then.session, then.decision, followed.version)
            outboxes.append((made.sid, then.job.work.event.id, followed.outbox))
            then.job.result = Handled.of(
                "applied",
                made.sid,
                then.decision,
                previous=write.decision.state,
                session=then.session,
            )
            job.followup = then.job

    def _applied(
        self, stored: Iterable[tuple[_Write, ApplyResult]], outboxes: list[_Outbox]
    ) -> None:
        for write, result in stored:
            job = write.job
            sid = job.work.sid
            if result.status == "CONFLICT":  # stays at the head; read fresh next round
                self._cache.pop(sid, None)
                job.work = replace(job.work, redelivered=True)
                job.conflicts += 1
                if job.conflicts >= self.max_conflicts:
                    raise ConflictRetriesExhausted(f"{sid}: {job.conflicts} conflicts")
            elif result.status == "MISSING":
                self._cache.pop(sid, None)
                job.result = Handled("missing", sid, reason="session expired while deciding")
            else:
                outboxes.append((sid, job.work.event.id, result.outbox))
                status: Status = "applied"
                if result.status == "OK":
                    self._remember(sid, write.session, write.decision, result.version)
                else:
                    status = "duplicate"
                    self._cache.pop(sid, None)
                job.result = Handled.of(
                    status,
                    sid,
                    write.decision,
                    job.conflicts,
                    write.session["state"],
                    write.session,
                )

    def _remember(
        self, sid: str, session: Mapping[str, str], decision: Verdict, version: int
    ) -> None:
        """Keep the snapshot this worker just wrote. Every write to a session goes through a
        script that bumps ``version``, so (sid, version) identifies the content exactly."""
        cache = self._cache
        if decision.terminal:
            cache.pop(sid, None)
            return
        cache[sid] = {**session, **decision.fields, "version": str(version)}
        cache.move_to_end(sid)
        if len(cache) > self.cache_size:
            cache.popitem(last=False)


# -- 3. follow up -------------------------------------------------------------------------
def _advance(queues: dict[str, deque[_Job]]) -> None:
    """Drop the handled heads from their sessions' queues, and the queues left empty. A
    creation's (or a duplicate's) ``then`` event goes first, unless it was stored with the
    creation. A head without a result (it lost a race, or became an event for the session
    another worker created) stays for the next round."""
    for sid, queue in list(queues.items()):
        job = queue[0]
        if job.result is None:
            continue
        queue.popleft()
        if job.work.then is not None and job.result.status in ("created", "duplicate"):
            if job.followup is None:
                job.followup = job.follow(job.result.sid)
            if job.followup.result is None:
                queue.appendleft(job.followup)
        if not queue:
            del queues[sid]


def _registry(write: _Write) -> Sequence[str]:
    new = write.job.work.new
    assert new is not None
    return new.registry


def _stale(event: Event, session: Mapping[str, str] | None) -> str:
    """For an event that starts a call (an initial INVITE, a MakeCall), applied before, whose
    session has since been ended by another event: that event's id (else empty). Its outbox
    (ringing, a media leg, IncomingCall, our INVITE) is not sent again: the call is over. A
    session ended by the event itself or by its handler's decision (``<id>:answer``) re-sends
    it: the worker may have died before that final answer went out."""
    ended_by = (session or {}).get("ended_by", "")
    starts = event.type == "MakeCall" or event.type == "Invite" and not event.data.get("to_tag")
    if not ended_by or not starts or ended_by == event.id or ended_by.startswith(f"{event.id}:"):
        return ""
    return ended_by


def _not_applied(sid: str, decision: Verdict, table: Table) -> Handled:
    """An event the session took no transition on; ``terminal`` when the session has ended
    (a request to it then gets 481: its dialog no longer exists, RFC 3261 12.2.2)."""
    status: Status = "ignored" if decision.outcome is Outcome.IGNORED else "no_transition"
    state = table.states.get(decision.state)
    ended = state is not None and state.terminal
    return Handled(status, sid, decision.state, decision.reason, terminal=ended)
