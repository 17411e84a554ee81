"""Apply events to sessions: read, decide, compare-and-set, emit. Retries on conflict.

This is the whole per-event job of a worker, minus reading the stream. For each event:

1. Read the session and, in the same round trip, whether this event id was applied already.
   If it was, a previous attempt died after its transition and maybe before its emission:
   re-emit the stored outbox (receivers drop repeated command ids) and stop.
2. Decide on the snapshot (pure).
3. Compare-and-set. CONFLICT means another worker moved the session first: go to 1.
4. Emit the outbox. The caller acknowledges the stream entry only after this returns.

Batches run these steps for many sessions at once, one pipeline per step, while one
session's events still go strictly one after another (a session's next event starts only
after the previous one is stored and its outbox emitted).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from sessiond.core.errors import ConflictRetriesExhausted
from sessiond.core.types import Event, Outcome, Verdict
from sessiond.store import Store
from sessiond.store.round import Round
from sessiond.store.store import ApplyResult
from sessiond.table.engine import decide
from sessiond.table.tableset import TableSet

Tail = Callable[[Any, list["Handled"]], int]  # (pipeline, results) -> commands added
Todo = tuple[int, Mapping[str, str], Verdict]  # work index, session as read, decision
Status = Literal["applied", "created", "duplicate", "ignored", "no_transition", "missing", "stale"]
log = logging.getLogger("sessiond.applier")


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

    async def run(
        self, batch: Sequence[Work], tail: Tail | None = None, replies: list[Any] | None = None
    ) -> list[Handled]:
        """Handle a batch; results in batch order. Per session, events keep batch order.

        Every stored transition's outbox is emitted at the end, in order, in one pipeline,
        followed by whatever ``tail(pipe, results)`` adds (the worker's XACKs): a crash
        before that pipeline leaves the entries pending, and their redelivery re-emits.
        That pipeline's replies are appended to ``replies`` if given."""
        items = list(batch)
        count = len(items)
        results: list[Handled | None] = [None] * count
        parent: dict[int, int] = {}  # follow-up index -> the index of the work it follows
        queues: dict[str, deque[int]] = {}
        for i, work in enumerate(items):
            queues.setdefault(work.sid, deque()).append(i)
        conflicts = [0] * count
        outboxes: list[bytes] = []
        while queues:
            heads = [q[0] for q in queues.values()]
            creates = self._prepare_creates([i for i in heads if items[i].new], items, results)
            applies = await self._prepare_events(
                [i for i in heads if not items[i].new], items, results, outboxes
            )
            chained = await self._write(creates, applies, items, results, outboxes, conflicts)
            lost = max(
                (conflicts[q[0]] for q in queues.values() if results[q[0]] is None), default=0
            )
            if lost:  # lost a race: back off a little, with jitter, so racers spread out
                await asyncio.sleep(random.uniform(0, min(0.05, 0.0005 * 2**lost)))
            self._advance(queues, items, results, conflicts, parent, chained)
        for i, head in parent.items():
            if (first := results[head]) is not None:
                results[head] = replace(first, followup=results[i])
        done = [r for r in results[:count] if r is not None]
        pipe = Round(self.store.redis)
        queued = self.store.queue_outboxes(pipe, outboxes)
        if tail is not None:
            queued += tail(pipe, done)
        if queued:
            got = await pipe.execute()
            if replies is not None:
                replies.extend(got)
        return done

    @staticmethod
    def _advance(
        queues: dict[str, deque[int]],
        items: list[Work],
        results: list[Handled | None],
        conflicts: list[int],
        parent: dict[int, int],
        chained: dict[int, Handled],
    ) -> None:
        """Drop the handled heads from their queues; a head's ``then`` becomes the new head,
        unless it was applied already, chained to the head's creation."""
        for sid in list(queues):
            queue = queues[sid]
            head = queue[0]
            result = results[head]
            if result is None:
                continue
            queue.popleft()
            then = items[head].then
            if then is not None and result.status in ("created", "duplicate"):
                parent[len(items)] = head
                follow = replace(then, sid=result.sid)
                items.append(Work(result.sid, follow, None, items[head].redelivered))
                results.append(chained.get(head))
                conflicts.append(0)
                if head not in chained:
                    queue.appendleft(len(items) - 1)
            if not queue:
                del queues[sid]

    def _prepare_creates(
        self, heads: list[int], items: list[Work], results: list[Handled | None]
    ) -> list[Todo]:
        """Decide the first transition of each new session (no I/O)."""
        todo: list[Todo] = []
        for i in heads:
            work = items[i]
            assert work.new is not None
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
                todo.append((i, session, decision))
            else:
                results[i] = _not_applied(work.sid, decision)
        return todo

    async def _prepare_events(
        self,
        heads: list[int],
        items: list[Work],
        results: list[Handled | None],
        outboxes: list[bytes],
    ) -> list[Todo]:
        """Decide each event on its cached snapshot, or on one read of the sessions not
        cached (one round trip for all of them)."""
        todo: list[Todo] = []
        to_read = []
        for i in heads:
            cached = None if items[i].redelivered else self._cache.get(items[i].sid)
            decided = await self._decide(items[i], cached) if cached is not None else None
            if decided is None:  # not cached, or cached but not a transition: read to be sure
                to_read.append(i)
            else:
                todo.append((i, cached, decided))  # type: ignore[arg-type]
        if not to_read:
            return todo
        reads = await self.store.read_many([(items[i].sid, items[i].event.id) for i in to_read])
        for i, (session, done) in zip(to_read, reads, strict=True):
            sid = items[i].sid
            if done is not None and (ended_by := _stale(items[i].event, session)):
                log.info(
                    "dropped stale %s %s: %s ended by %s",
                    items[i].event.type,
                    items[i].event.id,
                    sid,
                    ended_by,
                )
                state = (session or {}).get("state", "")
                results[i] = Handled("stale", sid, state, f"ended by {ended_by}")
            elif done is not None:
                outboxes.append(done)
                results[i] = Handled("duplicate", sid, (session or {}).get("state", ""))
            elif session is None:
                self._cache.pop(sid, None)
                results[i] = Handled("missing", sid, reason="no such session")
            else:
                decision = decide(
                    await self.tables.for_session(session), session, items[i].event, self.clock()
                )
                if decision.outcome is Outcome.TRANSITION:
                    todo.append((i, session, decision))
                else:
                    results[i] = _not_applied(sid, decision)
        return todo

    async def _decide(self, work: Work, session: Mapping[str, str]) -> Verdict | None:
        """Decide on a cached snapshot; only a transition is trusted (the CAS will verify it).
        Anything else may be an artefact of a stale cache, so the caller reads Redis."""
        decision = decide(await self.tables.for_session(session), session, work.event, self.clock())
        return decision if decision.outcome is Outcome.TRANSITION else None

    async def _write(
        self,
        creates: list[Todo],
        applies: list[Todo],
        items: list[Work],
        results: list[Handled | None],
        outboxes: list[bytes],
        conflicts: list[int],
    ) -> dict[int, Handled]:
        """Create the new sessions and compare-and-set the others, in one round trip.

        A new session's ``then`` event is decided on the created snapshot and its
        compare-and-set (expecting version 1) goes in the same pipeline, right after the
        creation: if the creation fails, it finds no session (or another version) and
        changes nothing. Returns the results of those that were applied, by creating work."""
        if not creates and not applies:
            return {}
        chain = self._chain(creates, items)
        created, applied = await self.store.write_many(
            [(s, items[i].new.registry, items[i].event, d) for i, s, d in creates],  # type: ignore[union-attr]
            [(s, e.id, d) for _, e, s, d in chain]
            + [(s, items[i].event.id, d) for i, s, d in applies],
        )
        chained_results = dict(zip([i for i, *_ in chain], applied, strict=False))
        applied = applied[len(chain) :]
        chained: dict[int, Handled] = {}
        for (i, session, decision), made in zip(creates, created, strict=True):
            if made.created:
                self._remember(made.sid, session, decision, 1)
                outboxes.append(made.outbox)
                results[i] = Handled.of("created", made.sid, decision, session=session)
                follow = chained_results.get(i)
                if follow is not None and follow.status == "OK":
                    _, _, after, then = next(c for c in chain if c[0] == i)
                    self._remember(made.sid, after, then, follow.version)
                    outboxes.append(follow.outbox)
                    chained[i] = Handled.of(
                        "applied", made.sid, then, previous=decision.state, session=after
                    )
            else:  # another worker won: this event now goes to the session that exists
                items[i] = replace(items[i], sid=made.sid, new=None, redelivered=True)
        self._applied(applies, applied, items, results, outboxes, conflicts)
        return chained

    def _chain(
        self, creates: list[Todo], items: list[Work]
    ) -> list[tuple[int, Event, Mapping[str, str], Verdict]]:
        """For each creation whose work has a ``then`` event: (creating work, the event,
        the snapshot it is decided on, its decision), when that decision is a transition."""
        chain: list[tuple[int, Event, Mapping[str, str], Verdict]] = []
        for i, session, decision in creates:
            then = items[i].then
            if then is None or decision.terminal:
                continue
            after = {**session, **decision.fields, "version": "1"}
            follow = decide(self.tables.current(session["table"]), after, then, self.clock())
            if follow.outcome is Outcome.TRANSITION:
                chain.append((i, then, after, follow))
        return chain

    def _applied(
        self,
        applies: list[Todo],
        applied: list[ApplyResult],
        items: list[Work],
        results: list[Handled | None],
        outboxes: list[bytes],
        conflicts: list[int],
    ) -> None:
        for (i, session, decision), result in zip(applies, applied, strict=True):
            sid = items[i].sid
            if result.status == "CONFLICT":
                self._cache.pop(sid, None)
                items[i] = replace(items[i], redelivered=True)  # read fresh next round
                conflicts[i] += 1
                if conflicts[i] >= self.max_conflicts:
                    raise ConflictRetriesExhausted(f"{sid}: {conflicts[i]} conflicts")
            elif result.status == "MISSING":
                self._cache.pop(sid, None)
                results[i] = Handled("missing", sid, reason="session expired while deciding")
            else:
                outboxes.append(result.outbox)
                status: Status = "applied"
                if result.status == "OK":
                    self._remember(sid, session, decision, result.version)
                else:
                    status = "duplicate"
                    self._cache.pop(sid, None)
                results[i] = Handled.of(
                    status, sid, decision, conflicts[i], session["state"], session
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


def _not_applied(sid: str, decision: Verdict) -> Handled:
    status: Status = "ignored" if decision.outcome is Outcome.IGNORED else "no_transition"
    return Handled(status, sid, decision.state, decision.reason)
