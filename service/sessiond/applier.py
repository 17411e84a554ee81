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
import random
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from sessiond.engine import Decision, Event, Outcome, decide
from sessiond.errors import ConflictRetriesExhausted
from sessiond.store import Store
from sessiond.tables import TableSet

Tail = Callable[[Any, list["Handled"]], int]  # (pipeline, results) -> commands added
Status = Literal["applied", "created", "duplicate", "ignored", "no_transition", "missing"]


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
    snapshot may be used; otherwise the applied-event marker is checked first."""

    sid: str
    event: Event
    new: NewSession | None = None
    redelivered: bool = True


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

    async def run(self, batch: Sequence[Work], tail: Tail | None = None) -> list[Handled]:
        """Handle a batch; results in batch order. Per session, events keep batch order.

        Every stored transition's outbox is emitted at the end, in order, in one pipeline,
        followed by whatever ``tail(pipe, results)`` adds (the worker's XACKs): a crash
        before that pipeline leaves the entries pending, and their redelivery re-emits."""
        items = list(batch)
        results: list[Handled | None] = [None] * len(items)
        queues: dict[str, deque[int]] = {}
        for i, work in enumerate(items):
            queues.setdefault(work.sid, deque()).append(i)
        conflicts = [0] * len(items)
        outboxes: list[bytes] = []
        while queues:
            heads = [q[0] for q in queues.values()]
            await self._creates([i for i in heads if items[i].new], items, results, outboxes)
            await self._events(
                [i for i in heads if not items[i].new], items, results, outboxes, conflicts
            )
            lost = max(
                (conflicts[q[0]] for q in queues.values() if results[q[0]] is None), default=0
            )
            if lost:  # lost a race: back off a little, with jitter, so racers spread out
                await asyncio.sleep(random.uniform(0, min(0.05, 0.0005 * 2**lost)))
            for sid in list(queues):
                queue = queues[sid]
                if results[queue[0]] is not None:
                    queue.popleft()
                    if not queue:
                        del queues[sid]
        done = [r for r in results if r is not None]
        pipe = self.store.redis.pipeline(transaction=False)
        queued = self.store.queue_outboxes(pipe, outboxes)
        if tail is not None:
            queued += tail(pipe, done)
        if queued:
            await pipe.execute()
        return done

    async def _creates(
        self,
        heads: list[int],
        items: list[Work],
        results: list[Handled | None],
        outboxes: list[bytes],
    ) -> None:
        todo = []
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
            if decision.outcome is not Outcome.TRANSITION:
                results[i] = _not_applied(work.sid, decision)
                continue
            todo.append((i, session, decision))
        if not todo:
            return
        created = await self.store.create_many(
            [(s, items[i].new.registry, items[i].event, d) for i, s, d in todo]  # type: ignore[union-attr]
        )
        for (i, session, decision), result in zip(todo, created, strict=True):
            if result.created:
                self._remember(result.sid, session, decision, 1)
                outboxes.append(result.outbox)
                results[i] = Handled(
                    "created",
                    result.sid,
                    decision.state,
                    decision.reason,
                    len(decision.commands),
                    terminal=decision.terminal,
                )
            else:  # another worker won: this event now goes to the session that exists
                items[i] = replace(items[i], sid=result.sid, new=None)

    async def _events(
        self,
        heads: list[int],
        items: list[Work],
        results: list[Handled | None],
        outboxes: list[bytes],
        conflicts: list[int],
    ) -> None:
        todo: list[tuple[int, Mapping[str, str], Decision]] = []
        to_read = []
        for i in heads:
            cached = None if items[i].redelivered else self._cache.get(items[i].sid)
            decided = await self._decide(items[i], cached) if cached is not None else None
            if decided is None:  # not cached, or cached but not a transition: read to be sure
                to_read.append(i)
            else:
                todo.append((i, cached, decided))  # type: ignore[arg-type]
        if to_read:
            reads = await self.store.read_many([(items[i].sid, items[i].event.id) for i in to_read])
            for i, (session, done) in zip(to_read, reads, strict=True):
                sid = items[i].sid
                if done is not None:
                    outboxes.append(done)
                    results[i] = Handled("duplicate", sid, (session or {}).get("state", ""))
                elif session is None:
                    self._cache.pop(sid, None)
                    results[i] = Handled("missing", sid, reason="no such session")
                else:
                    decision = decide(
                        await self.tables.for_session(session),
                        session,
                        items[i].event,
                        self.clock(),
                    )
                    if decision.outcome is Outcome.TRANSITION:
                        todo.append((i, session, decision))
                    else:
                        results[i] = _not_applied(sid, decision)
        if todo:
            await self._apply(todo, items, results, outboxes, conflicts)

    async def _decide(self, work: Work, session: Mapping[str, str]) -> Decision | None:
        """Decide on a cached snapshot; only a transition is trusted (the CAS will verify it).
        Anything else may be an artefact of a stale cache, so the caller reads Redis."""
        decision = decide(await self.tables.for_session(session), session, work.event, self.clock())
        return decision if decision.outcome is Outcome.TRANSITION else None

    async def _apply(
        self,
        todo: list[tuple[int, Mapping[str, str], Decision]],
        items: list[Work],
        results: list[Handled | None],
        outboxes: list[bytes],
        conflicts: list[int],
    ) -> None:
        applied = await self.store.apply_many([(s, items[i].event.id, d) for i, s, d in todo])
        for (i, session, decision), result in zip(todo, applied, strict=True):
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
                results[i] = Handled(
                    status,
                    sid,
                    decision.state,
                    decision.reason,
                    len(decision.commands),
                    conflicts[i],
                    session["state"],
                    decision.terminal,
                )

    def _remember(
        self, sid: str, session: Mapping[str, str], decision: Decision, version: int
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


def _not_applied(sid: str, decision: Decision) -> Handled:
    status: Status = "ignored" if decision.outcome is Outcome.IGNORED else "no_transition"
    return Handled(status, sid, decision.state, decision.reason)
