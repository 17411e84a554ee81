"""The stateless worker: consumer-group reader of the event partitions.

Theory of operation
-------------------
Every worker joins the consumer group ``workers`` on every partition stream, holds leases on
a fair share of the partitions (:mod:`~sessiond.worker.leases`), and reads batches with one
XREADGROUP over the partitions it holds. :mod:`~sessiond.worker.intake` finds each entry's
session (the event's ``sid``, a registry lookup, or a new session for an initial INVITE /
MakeCall); the :class:`~sessiond.worker.applier.Applier` decides and stores the batch (one
session's events in order; the scripts that store the transitions send their commands, or
in a Redis Cluster keep them as outboxes); then one last round sends those outboxes (a
cluster's), answers the requests no session took (481/500 to the edge), XACKs the batch and
reads the next one. A
worker that dies leaves its entries pending; live workers take them over with XAUTOCLAIM
once they have been idle for ``claim_idle_ms``, and process them as redeliveries (the
applied-event check makes that harmless). Timers are popped into the streams by whichever
worker polls first. Every heartbeat also tidies the consumer group
and, every few, trims the streams by what was consumed (:mod:`~sessiond.worker.upkeep`), and
looks for media nodes whose heartbeat expired and tells
their sessions (``MediaLost``, one claimant per node: :mod:`sessiond.media.lost`).

Shutdown (SIGTERM, or ``ctl drain``): stop reading, finish the batch in hand, ack, exit.
Redis errors: back off (0.1 s doubling to 5 s) and carry on; consumer groups are recreated if
Redis lost them; scripts are reloaded on NOSCRIPT by the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from sessiond.core import metrics
from sessiond.core.redact import redact_keys
from sessiond.core.types import Event
from sessiond.media.lost import LegRegistry
from sessiond.store import Store
from sessiond.store.client import RETRYABLE, is_embedded, listpack_advice
from sessiond.store.consumer import autoclaim, queue_acks, queue_read, read_group
from sessiond.store.entries import decode_event, pack
from sessiond.store.entries import fields as entry_fields
from sessiond.store.liveness import Liveness, StoreContact, run_id
from sessiond.store.round import Round
from sessiond.store.streams import Backlog, cancel_and_wait, ensure_groups, retrying
from sessiond.worker import calllog, upkeep
from sessiond.worker.applier import Applier, Handled, Work
from sessiond.worker.handlers import CallHandler, RegisteredUsers, builtin
from sessiond.worker.intake import Entry, Intake
from sessiond.worker.leases import Leases
from sessiond.worker.router import AnswerMode, fallback_response
from sessiond.worker.upkeep import GROUP as GROUP  # ctl and tests import it from here

log = logging.getLogger("sessiond.worker")
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
        self.batch = batch
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.heartbeat_ttl = heartbeat_ttl
        self.stats = WorkerStats()
        self.stopping = asyncio.Event()
        self._streams = [self.keys.events(p) for p in range(self.keys.partitions)]
        self._poll = 0.002 if is_embedded(self.redis) else 0.0
        #: new calls get the handler's decision (default: a registered user's phone rings,
        #: other calls get the built-in one for ``answer``)
        handler = handler or RegisteredUsers(builtin(answer))
        self.intake = Intake(
            self.redis, self.keys, handler, applier.tables, lambda: self.contact.steady()
        )
        self.leases = Leases(self.store, self.name, lease_ms, lease_interval)
        self._beats = 0  # heartbeats so far (the shared streams are trimmed every few)
        self._prefetched: Any = None  # the next batch, read in the previous batch's pipeline
        self._backlog = Backlog(self._streams)  # entries delivered to us, maybe never seen
        self.media_legs = LegRegistry(self.redis, self.keys, stream_maxlen=self.store.stream_maxlen)
        #: judges other processes' heartbeats only after steady contact with Redis
        self.contact = StoreContact.for_heartbeats(heartbeat_ttl)
        # its processes:worker entry is written by the lease loop
        self.liveness = Liveness(
            self.redis, self.keys, "worker", self.name, ttl=heartbeat_ttl, listed=False
        )
        # a Redis restart is also told by its run_id (INFO server); a cluster has one per
        # node and the embedded store none: there, by errors and gaps only
        self._ask_run_id = not self.store.cluster and not self._poll

    # -- lifecycle ------------------------------------------------------------------------
    async def run(self) -> None:
        """Run until :meth:`stop` (or a drain request); then finish in-flight work."""
        await self._retrying(self.ensure_groups)
        if advice := await listpack_advice(self.redis):
            log.warning("%s", advice)
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
            asyncio.create_task(self._every(seconds, step))
            for seconds, step in (
                (self.claim_idle_ms / 2000, self.reclaim_once),
                (0.1, self.timers_once),
                (1.0, self.heartbeat_once),
                (self.leases.interval, self.lease_once),
            )
        ]
        try:
            await self.stopping.wait()
            # the readers finish the batch in hand and return; the helpers are only waiting
            await asyncio.wait(readers, timeout=30)
        finally:
            await cancel_and_wait(readers + helpers)
        with contextlib.suppress(*RETRYABLE):
            await self.leases.leave()
            await self.liveness.leave()
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

    @property
    def owned(self) -> frozenset[int]:
        """The partitions whose lease this worker holds."""
        return self.leases.owned

    # -- the loops ------------------------------------------------------------------------
    async def _every(self, seconds: float, step: Callable[[], Awaitable[Any]]) -> None:
        """Run ``step`` (retrying on Redis errors) every ``seconds`` until stopped."""
        while not self.stopping.is_set():
            await self._retrying(step)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), seconds)

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
            reply = await read_group(
                self.redis, GROUP, self.name, starts, count=self.batch, block=self.block_ms
            )
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

    async def reclaim_once(self) -> int:
        """Take over entries another consumer left pending too long (it probably died)."""
        total = 0
        for partition, stream in enumerate(self._streams):
            start = "0-0"
            while True:
                start, claimed = await autoclaim(
                    self.redis, stream, GROUP, self.name, self.claim_idle_ms, start, self.batch
                )
                entries = [
                    Entry(partition, eid, _decode(fields), True)
                    for eid, fields in claimed
                    if fields is not None
                ]
                if entries:
                    total += len(entries)
                    await self.process(entries)
                if start == "0-0" or not claimed:
                    break
        self.stats.reclaimed += total
        metrics.RECLAIMED.inc(total)
        return total

    async def timers_once(self) -> int:
        # the timers of the partitions this worker reads (all of them if it holds none)
        fired = await self.store.pop_all_timers(time.time(), partitions=sorted(self.owned) or None)
        self.stats.timers += fired
        metrics.TIMERS.inc(fired)
        return fired

    async def heartbeat_once(self) -> None:
        """Refresh our heartbeat and look for a drain request; then the consumer group's
        upkeep and the search for lost media nodes."""
        started = self.contact.now()
        beat = await self.liveness.beat(errors="own", info=self._ask_run_id)
        self.contact.reached(started, self._run_id(beat.extra))
        if beat.drain:
            log.info("worker %s: drain requested", self.name)
            self.stop()
        if self.contact.steady():
            await upkeep.forget_dead_consumers(self.redis, self.keys, self._streams, self.name)
        await upkeep.sample_streams(self.redis, self._streams)
        self._beats += 1
        if self._beats % upkeep.TRIM_EVERY == 0:
            await upkeep.trim_streams(self.redis, self.keys, self.owned)
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

    async def lease_once(self) -> None:
        await self.leases.renew(self.stopping)

    # -- one batch ------------------------------------------------------------------------
    async def process(
        self, entries: Sequence[Entry], prefetch: list[str] | None = None
    ) -> list[Handled]:
        """Route, apply (the transitions' commands go out as they are stored), then one last
        round: in a Redis Cluster the outboxes, then the fallback answers, the acks and (with
        ``prefetch``) the read of the next batch from those streams, in that order. A crash
        before that round leaves the entries pending: their redelivery re-emits a cluster's
        outboxes, and elsewhere finds their commands sent."""
        started = time.perf_counter()
        work, orphans = await self.intake.route(entries)
        applied = await self.applier.apply(work)
        last = Round(self.redis)
        self.store.queue_outboxes(last, applied.outboxes)  # a Redis Cluster's (else none)
        for event, status, state in _unanswered(orphans, work, applied.handled):
            self._fallback(last, event, status, state)
        self._ack(last, entries)
        if prefetch:
            queue_read(last, GROUP, self.name, {s: ">" for s in prefetch}, count=self.batch)
        replies = await last.execute()
        if prefetch:
            self._prefetched = replies[-1]
        if applied.sent:  # a Redis Cluster's, on other nodes: only once the commands are in
            marks = Round(self.redis)
            self.store.queue_emitted(marks, applied.sent)
            await marks.execute()
        elapsed = time.perf_counter() - started
        for item, handled in zip(work, applied.handled, strict=True):
            self.stats.count(handled, item.event.type, elapsed)
            if handled.followup is not None and item.then is not None:
                self.stats.count(handled.followup, item.then.type, elapsed)
            calllog.record(handled)  # start / answer / end lines of the call
            if handled.status == "created" and item.new is not None:
                for key in item.new.registry:  # the next events of this call find it here
                    self.intake.remember(key, handled.sid)
        return applied.handled

    def _ack(self, pipe: Round, entries: Sequence[Entry]) -> None:
        by_stream: dict[str, list[bytes]] = {}
        for entry in entries:
            by_stream.setdefault(self._streams[entry.partition], []).append(entry.entry_id)
        queue_acks(pipe, GROUP, by_stream)

    def _fallback(self, pipe: Round, event: Event, status: str, state: str) -> None:
        """Answer a request no session took (481 or 500), through the edge's stream."""
        answer = fallback_response(event, status, state)
        if answer is None:
            log.info("dropped %s %s: %s", event.type, event.id, status)
            return
        edge = self.keys.edge_commands(str(event.data.get("edge", "any")))
        data = answer.data(last=("txn", "call_id", "local_tag"))  # the map's order before
        fields = entry_fields(f"{event.id}/fallback", "respond", "", pack(data))
        pipe.xadd(edge, fields, maxlen=self.store.stream_maxlen, approximate=True)

    def _partition(self, stream: bytes | str) -> int:
        name = _text(stream)
        return int(name[name.index("{p") + 2 : name.index("}")])


def _unanswered(
    orphans: list[Event], work: Sequence[Work], handled: Sequence[Handled]
) -> list[tuple[Event, str, str]]:
    """The requests no session took: (event, status, state) for a fallback answer."""
    missed = [(event, "missing", "") for event in orphans]
    for item, result in zip(work, handled, strict=True):
        if result.status == "no_transition" and result.terminal:  # the dialog has ended
            missed.append((item.event, "missing", result.state))
        elif result.status in ("missing", "no_transition"):
            missed.append((item.event, result.status, result.state))
    return missed


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _decode(fields: Any) -> Event | None:
    try:
        return decode_event(fields)
    except Exception:  # a malformed entry must not stop the partition
        log.warning("undecodable stream entry: %s", redact_keys(repr(fields)))
        return None
