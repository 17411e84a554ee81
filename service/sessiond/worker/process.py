"""The stateless worker: consumer-group reader of the event partitions.

Theory of operation
-------------------
Every worker joins the consumer group ``workers`` on every partition stream and reads
batches with one XREADGROUP over all partitions. For each entry it finds the session (the
event's ``sid``, or a registry lookup, or a new session for an initial INVITE / MakeCall),
hands the batch to the :class:`~sessiond.worker.applier.Applier` (which keeps one session's events
in order), answers requests no session took (481/500 to the edge), and XACKs only after the
applier has stored every transition and emitted every outbox. A worker that dies leaves its
entries pending; live workers take them over with XAUTOCLAIM once they have been idle for
``claim_idle_ms``, and process them as redeliveries (the applied-event check makes that
harmless). Timers are popped into the streams by whichever worker polls first. Every
heartbeat also looks for media nodes whose heartbeat expired and tells their sessions
(``MediaLost``, one claimant per node: :mod:`sessiond.media.lost`).

Shutdown (SIGTERM, or ``ctl drain``): stop reading, finish the batch in hand, ack, exit.
Redis errors: back off (0.1 s doubling to 5 s) and carry on; consumer groups are recreated if
Redis lost them; scripts are reloaded on NOSCRIPT by the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, TypeVar

from sessiond.core import appschema, metrics
from sessiond.core.types import Event
from sessiond.media.lost import LegRegistry
from sessiond.store import Store, entries
from sessiond.store.client import RETRYABLE, is_embedded
from sessiond.store.keys import WORKERS_GROUP
from sessiond.store.liveness import Liveness, StoreContact, run_id
from sessiond.store.round import Round
from sessiond.store.streams import Backlog, cancel_and_wait, ensure_groups, retrying
from sessiond.worker import calllog
from sessiond.worker.applier import Applier, Handled, Work
from sessiond.worker.handlers import (
    CallHandler,
    Decision,
    Forward,
    IncomingCallInfo,
    Reject,
    builtin,
    decision_event,
)
from sessiond.worker.router import (
    AnswerMode,
    fallback_response,
    new_uac,
    new_uas,
    registry_candidates,
    replaced_dialog,
)

log = logging.getLogger("sessiond.worker")
GROUP = WORKERS_GROUP
T = TypeVar("T")


def default_name(kind: str) -> str:
    return f"{kind}-{socket.gethostname()}-{os.getpid()}"


@dataclass
class WorkerStats:
    events: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    reclaimed: int = 0
    timers: int = 0
    errors: int = 0
    conflicts: int = 0

    def count(self, handled: Handled, event_type: str, seconds: float) -> None:
        self.events += 1
        self.by_status[handled.status] = self.by_status.get(handled.status, 0) + 1
        metrics.child(metrics.EVENTS, event_type, handled.status).inc()
        metrics.TRANSITION_SECONDS.observe(seconds)
        if handled.conflicts:
            self.conflicts += handled.conflicts
            metrics.CONFLICTS.inc(handled.conflicts)
        if handled.status == "duplicate":
            metrics.DUPLICATES.inc()
        if handled.status not in ("created", "applied") or handled.previous == handled.state:
            return
        if handled.previous:
            metrics.child(metrics.SESSIONS, handled.previous).dec()
        else:
            metrics.child(metrics.CALLS, "started").inc()
        if handled.terminal:
            metrics.child(metrics.CALLS, "ended").inc()
        else:
            metrics.child(metrics.SESSIONS, handled.state).inc()
        if handled.state == "Established":
            metrics.child(metrics.CALLS, "answered").inc()


@dataclass(frozen=True, slots=True)
class Entry:
    partition: int
    entry_id: bytes
    event: Event | None  # None: an entry we could not decode (acked and counted)
    redelivered: bool


class Worker:
    def __init__(
        self,
        applier: Applier,
        *,
        name: str | None = None,
        answer: AnswerMode = "auto",
        handler: CallHandler | None = None,
        batch: int = 256,
        block_ms: int = 100,
        claim_idle_ms: int = 1500,
        heartbeat_ttl: int = 5,
        lease_ms: int = 2000,
        lease_interval: float = 0.25,
    ) -> None:
        self.applier = applier
        self.store: Store = applier.store
        self.redis: Any = applier.store.redis
        self.keys = applier.store.keys
        self.name = name or default_name("worker")
        self.answer = answer
        #: decides every new incoming call (default: the built-in handler for ``answer``)
        self.handler: CallHandler = handler or builtin(answer)
        self.batch = batch
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.heartbeat_ttl = heartbeat_ttl
        self.lease_ms = lease_ms
        self.lease_interval = lease_interval
        self.stats = WorkerStats()
        self.stopping = asyncio.Event()
        self._streams = [self.keys.events(p) for p in range(self.keys.partitions)]
        self._poll = 0.002 if is_embedded(self.redis) else 0.0
        self._routes: dict[str, str] = {}  # registry key -> sid (immutable while it exists)
        self.owned: frozenset[int] = frozenset()  # partitions whose lease this worker holds
        self._prefetched: Any = None  # the next batch, read in the previous batch's pipeline
        self._backlog = Backlog(self._streams)  # entries delivered to us, maybe never seen
        self.media_legs = LegRegistry(self.redis, self.keys, stream_maxlen=self.store.stream_maxlen)
        #: judges other processes' heartbeats only after steady contact with Redis
        self.contact = StoreContact.for_heartbeats(heartbeat_ttl)
        # a Redis restart is also told by its run_id (INFO server); a cluster has one per
        # node and the embedded store none: there, by errors and gaps only
        self._ask_run_id = not self.store.cluster and not self._poll
        # its processes:worker entry is written by the lease loop
        self.liveness = Liveness(
            self.redis, self.keys, "worker", self.name, ttl=heartbeat_ttl, listed=False
        )

    # -- lifecycle ------------------------------------------------------------------------
    async def run(self) -> None:
        """Run until :meth:`stop` (or a drain request); then finish in-flight work."""
        await self._retrying(self.ensure_groups)
        await self._retrying(self.applier.tables.publish)
        await self._retrying(self.heartbeat_once)
        await self._retrying(self.lease_once)
        # One reader over the partitions this worker holds; in a Redis Cluster, where one
        # XREADGROUP cannot span slots, one reader per partition.
        groups = (
            [[p] for p in range(self.keys.partitions)]
            if self.store.cluster
            else [list(range(self.keys.partitions))]
        )
        readers = [asyncio.create_task(self._consume(partitions)) for partitions in groups]
        helpers = [
            asyncio.create_task(loop)
            for loop in (
                self._reclaim_loop(),
                self._timer_loop(),
                self._heartbeat(),
                self._lease_loop(),
            )
        ]
        try:
            await self.stopping.wait()
            # the readers finish the batch in hand and return; the helpers are only waiting
            await asyncio.wait(readers, timeout=30)
        finally:
            await cancel_and_wait(readers + helpers)
        with contextlib.suppress(*RETRYABLE):
            # leave the live count, then let the other workers take our partitions at once
            await self.redis.zrem(self.keys.processes("worker"), self.name)
            await self._lease(0)
            await self.redis.delete(self.keys.heartbeat("worker", self.name))
        log.info("worker %s stopped: %s", self.name, self.stats)

    def stop(self) -> None:
        self.stopping.set()

    async def ensure_groups(self) -> None:
        await ensure_groups(self.redis, self._streams, GROUP)

    async def _retrying(self, step: Callable[[], Awaitable[T]]) -> T | None:
        def count() -> None:
            self.stats.errors += 1
            self.contact.failed()
            self._backlog.lost()  # a read's reply may be lost: its entries are ours, pending

        return await retrying(
            step,
            stopping=self.stopping,
            recreate_groups=self.ensure_groups,
            log=log,
            on_error=count,
        )

    # -- the loops ------------------------------------------------------------------------
    async def _consume(self, partitions: list[int]) -> None:
        while not self.stopping.is_set():
            streams = [self._streams[p] for p in partitions if p in self.owned]
            if not streams:  # none of ours (yet): the heartbeat takes leases
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), self.block_ms / 1000)
                continue
            await self._retrying(partial(self.consume_once, streams))
        if self._prefetched:  # read just before the stop: ours now, so finish it
            await self._retrying(lambda: self.consume_once([]))

    async def consume_once(self, streams: list[str] | None = None) -> int:
        """Process one batch of new entries (read now, or prefetched by the previous batch's
        pipeline), ack it. Returns the entry count."""
        reply, self._prefetched = self._prefetched, None
        starts: dict[str, str] = {}  # read from "0": our backlog, entries maybe applied
        while not reply and streams != []:  # our backlog first (when due), then new entries
            starts = {s: self._backlog.start(s) for s in streams or self._streams}
            read = Round(self.redis)
            read.xreadgroup(GROUP, self.name, starts, count=self.batch, block=self.block_ms)
            (reply,) = await read.execute()
            got = {_text(stream): len(items) for stream, items in reply or []}
            for stream, start in starts.items():
                self._backlog.read(stream, start, got.get(stream, 0))
            if any(got.values()) or ">" in starts.values():
                break
            reply = None  # an empty backlog: read the new entries now
        entries = [
            Entry(
                self._partition(stream),
                eid,
                _decode(fields),
                starts.get(_text(stream), ">") != ">",
            )
            for stream, items in reply or []
            for eid, fields in items
        ]
        if entries:
            # in a cluster the next read cannot share the pipeline (other slots)
            prefetch = None if self.store.cluster or self.stopping.is_set() else streams
            await self.process(entries, prefetch or None)
        elif self._poll:  # the embedded store does not block: poll at a short interval
            await asyncio.sleep(self._poll)
        return len(entries)

    async def _reclaim_loop(self) -> None:
        while not self.stopping.is_set():
            await self._retrying(self.reclaim_once)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), self.claim_idle_ms / 2000)

    async def reclaim_once(self) -> int:
        """Take over entries another consumer left pending too long (it probably died)."""
        total = 0
        for partition, stream in enumerate(self._streams):
            start = "0-0"
            while True:
                reply = await self.redis.xautoclaim(
                    stream, GROUP, self.name, self.claim_idle_ms, start, count=self.batch
                )
                start, claimed = reply[0], reply[1]
                entries = [
                    Entry(partition, eid, _decode(fields), True)
                    for eid, fields in claimed
                    if fields is not None
                ]
                if entries:
                    total += len(entries)
                    await self.process(entries)
                if start in (b"0-0", "0-0") or not claimed:
                    break
        self.stats.reclaimed += total
        metrics.RECLAIMED.inc(total)
        return total

    async def _timer_loop(self) -> None:
        while not self.stopping.is_set():
            await self._retrying(self.timers_once)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), 0.1)

    async def timers_once(self) -> int:
        # the timers of the partitions this worker reads (all of them if it holds none)
        fired = await self.store.pop_all_timers(time.time(), partitions=sorted(self.owned) or None)
        self.stats.timers += fired
        metrics.TIMERS.inc(fired)
        return fired

    async def _heartbeat(self) -> None:
        while not self.stopping.is_set():
            await self._retrying(self.heartbeat_once)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), 1.0)

    async def heartbeat_once(self) -> None:
        started = self.contact.now()
        beat = await self.liveness.beat(errors="own", info=self._ask_run_id)
        self.contact.reached(started, self._run_id(beat.extra))
        if beat.drain:
            log.info("worker %s: drain requested", self.name)
            self.stop()
        if self.contact.steady():
            await self._forget_dead_consumers()
        await self._sample_streams()
        await self.media_legs.find_lost_nodes(self.name, self.contact)

    def _run_id(self, server: list[Any]) -> str:
        if server and isinstance(server[0], Exception):  # e.g. an ACL without +info
            log.warning(
                "worker %s: INFO refused (%s); Redis restarts show as errors and gaps only",
                self.name,
                server[0],
            )
            self._ask_run_id = False
            return ""
        return run_id(server[0] if server else None)

    async def _lease_loop(self) -> None:
        while not self.stopping.is_set():
            await self._retrying(self.lease_once)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), self.lease_interval)

    async def lease_once(self) -> None:
        """Say we are alive (``processes:worker``), count the workers seen in the last
        second, and hold a fair share of the partitions: ceil(partitions / live). A worker
        above its share gives leases up, one below takes free ones; a dead worker drops out
        of the count after a second and its leases lapse after ``lease_ms``."""
        now = time.time()
        pipe = self.redis.pipeline(transaction=False)
        pipe.zadd(self.keys.processes("worker"), {self.name: now})
        pipe.zcount(self.keys.processes("worker"), now - 4 * self.lease_interval, "+inf")
        _, live = await pipe.execute()
        if not self.stopping.is_set():
            await self._lease(math.ceil(self.keys.partitions / max(1, int(live))))

    async def _lease(self, share: int) -> None:
        held = await self.store.scripts.lease(
            keys=self.keys.leases(), args=[self.name, self.lease_ms, share]
        )
        owned = frozenset(int(p) for p in held)
        if owned != self.owned:
            log.info("worker %s reads partitions %s", self.name, sorted(owned))
        self.owned = owned
        metrics.PARTITIONS.labels(self.name).set(len(owned))

    async def _sample_streams(self) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for stream in self._streams:
            pipe.xinfo_groups(stream)
        for stream, groups in zip(self._streams, await pipe.execute(), strict=True):
            for group in groups:
                if _text(group["name"]) == GROUP:
                    metrics.STREAM_LAG.labels(stream).set(int(group.get("lag") or 0))
                    metrics.STREAM_PENDING.labels(stream).set(int(group["pending"]))

    async def _forget_dead_consumers(self) -> None:
        """Remove consumers with nothing pending whose process no longer heartbeats."""
        for stream in self._streams[:1]:  # every worker joins every partition: one suffices
            for consumer in await self.redis.xinfo_consumers(stream, GROUP):
                name = _text(consumer["name"])
                if name == self.name or int(consumer["pending"]) > 0:
                    continue
                if await self.redis.exists(self.keys.heartbeat("worker", name)):
                    continue
                if int(consumer.get("idle", 0)) < 60_000:
                    continue
                for s in self._streams:
                    await self.redis.xgroup_delconsumer(s, GROUP, name)
                await self.redis.zrem(self.keys.processes("worker"), name)

    # -- one batch ------------------------------------------------------------------------
    async def process(
        self, entries: Sequence[Entry], prefetch: list[str] | None = None
    ) -> list[Handled]:
        """Route, apply, then one pipeline: the outboxes, the fallback responses, the XACKs
        and (with ``prefetch``) the read of the next batch from those streams, in that order."""
        started = time.perf_counter()
        orphans: list[tuple[Event, str, str]] = []
        work = await self._route(entries, orphans)

        def tail(pipe: Any, handled: list[Handled]) -> int:
            added = self._tail(pipe, entries, work, handled, orphans)
            if prefetch:
                pipe.xreadgroup(GROUP, self.name, {s: ">" for s in prefetch}, count=self.batch)
            return added

        replies: list[Any] = []
        handled = await self.applier.run(work, tail, replies)
        if prefetch and replies:
            self._prefetched = replies[-1]
        elapsed = time.perf_counter() - started
        for item, h in zip(work, handled, strict=True):
            self.stats.count(h, item.event.type, elapsed)
            if h.followup is not None and item.then is not None:
                self.stats.count(h.followup, item.then.type, elapsed)
            calllog.record(h)  # start / answer / end lines of the call
            if h.status == "created" and item.new is not None:
                for key in item.new.registry:  # the next events of this call find it here
                    self._remember_route(key, h.sid)
        return handled

    async def _route(
        self,
        entries: Sequence[Entry],
        orphans: list[tuple[Event, str, str]],
    ) -> list[Work]:
        """Turn entries into work: find each event's session, or make a new one (the
        handler decides first, since a Forward picks the new session's table; its decision
        is applied right after the session's creation, in the same batch). Registry
        entries never change while they exist, so found mappings are cached."""
        pending: list[tuple[int, Event, str]] = []
        work: list[Work | None] = []
        for entry in entries:
            event = entry.event
            work.append(None)
            if event is None:
                continue
            refused = appschema.problem(event.type, event.data)
            if refused is not None:  # acked with the batch, never applied
                log.warning("refused command %s: %s", event.id, refused)
                metrics.EVENTS.labels(event.type, "refused").inc()
                continue
            if event.sid:
                new = new_uac(self.keys, event)
                work[-1] = Work(event.sid, event, new, entry.redelivered)
                continue
            candidates = registry_candidates(self.keys, event)
            key = candidates[0] if candidates else ""
            cached = self._routes.get(key)
            if cached is not None:
                work[-1] = Work(cached, event, None, entry.redelivered)
            elif (new_call := self._new_call(event, entry.redelivered)) is not None:
                # no lookup first: the creation is create-if-absent on the registry, and if
                # the call has a session already, the event goes to it
                work[-1] = new_call
            else:
                pending.append((len(work) - 1, event, key))
        if pending:
            pipe = Round(self.redis)
            for _, _, key in pending:
                pipe.get(key)
            owners = await pipe.execute()
            for (i, event, key), owner in zip(pending, owners, strict=True):
                redelivered = entries[i].redelivered
                if owner is not None:
                    work[i] = Work(
                        self._remember_route(key, _text(owner)), event, None, redelivered
                    )
                else:
                    orphans.append((event, "missing", ""))
        await self._find_replaced(work)
        return [self._redecided(w) for w in work if w is not None]

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
        return replace(work, then=decision_event(self._decide(event, work.sid), event, work.sid))

    def _new_call(self, event: Event, redelivered: bool) -> Work | None:
        """A new session for an initial INVITE, with the handler's decision to apply next."""
        new = new_uas(self.keys, event)
        if new is None:
            return None
        sid = new.fields["sid"]
        decision = self._decide(event, sid)
        if event.data.get("replaces"):  # the table answers a replacing call
            return Work(sid, event, new, redelivered)
        if isinstance(decision, Forward):
            new = replace(new, table=decision.table)
        return Work(sid, event, new, redelivered, decision_event(decision, event, sid))

    async def _find_replaced(self, work: list[Work | None]) -> None:
        """A new call whose INVITE carries Replaces (RFC 3891) learns which session it
        replaces (``replaces_sid``, empty when none matches: the table answers 481)."""
        found = [
            (i, key)
            for i, item in enumerate(work)
            if item is not None
            and item.new is not None
            and (key := replaced_dialog(self.keys, item.event)) is not None
        ]
        if not found:
            return
        pipe = Round(self.redis)
        for _, key in found:
            pipe.get(key)
        owners = await pipe.execute()
        for (i, _), owner in zip(found, owners, strict=True):
            item = work[i]
            assert item is not None
            event = item.event
            data = {**event.data, "replaces_sid": _text(owner) if owner is not None else ""}
            work[i] = replace(item, event=Event(event.id, event.type, data, event.sid))

    def _remember_route(self, key: str, sid: str) -> str:
        self._routes[key] = sid
        if len(self._routes) > 50_000:
            self._routes.pop(next(iter(self._routes)))
        return sid

    def _tail(
        self,
        pipe: Any,
        entries: Sequence[Entry],
        work: Sequence[Work],
        handled: Sequence[Handled],
        orphans: list[tuple[Event, str, str]],
    ) -> int:
        """Fallback answers to orphan requests, and acks."""
        added = 0
        for item, result in zip(work, handled, strict=True):
            if result.status in ("missing", "no_transition"):
                orphans.append((item.event, result.status, result.state))
        for event, status, state in orphans:
            added += self._fallback(pipe, event, status, state)
        by_partition: dict[int, list[bytes]] = {}
        for entry in entries:
            by_partition.setdefault(entry.partition, []).append(entry.entry_id)
        for partition, ids in by_partition.items():
            pipe.xack(self._streams[partition], GROUP, *ids)
            added += 1
        return added

    def _decide(self, invite: Event, sid: str) -> Decision:
        """The handler's decision on a new call; a handler that raises, returns something
        else than a decision, or forwards to a table this worker has not loaded, rejects the
        call with 500."""
        try:
            decision = self.handler.decide(IncomingCallInfo.from_invite(invite, sid))
            decision_event(decision, invite, sid)  # TypeError if it is not a decision
        except Exception:
            log.exception("handler %r failed on %s: answering 500", self.handler, invite.id)
            return Reject(500)
        if isinstance(decision, Forward) and decision.table not in self.applier.tables.names():
            log.error("forward of %s needs table %r, not loaded: 500", invite.id, decision.table)
            return Reject(500)
        return decision

    def _fallback(self, pipe: Any, event: Event, status: str, state: str) -> int:
        data = fallback_response(event, status, state)
        if data is None:
            log.info("dropped %s %s: %s", event.type, event.id, status)
            return 0
        edge = self.keys.edge_commands(str(event.data.get("edge", "any")))
        fields = entries.fields(f"{event.id}/fallback", "respond", "", entries.pack(data))
        pipe.xadd(edge, fields, maxlen=self.store.stream_maxlen, approximate=True)
        return 1

    def _partition(self, stream: bytes | str) -> int:
        name = _text(stream)
        return int(name[name.index("{p") + 2 : name.index("}")])


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _decode(fields: Any) -> Event | None:
    try:
        return entries.decode_event(fields)
    except Exception:  # a malformed entry must not stop the partition
        log.warning("undecodable stream entry: %r", fields)
        return None
