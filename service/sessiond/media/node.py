"""The media process: RTP legs driven by commands from Redis streams.

Theory of operation
-------------------
A node reads two command streams through the consumer group ``media``: the pool stream (any
node may take a ``create``) and its own stream (``update``, ``destroy``, ``play``... for legs it
owns, routed there by the ``media_node`` the session saved from MediaReady). The two are read by
separate loops because their keys live in different cluster slots. Commands run one at a time
(:class:`~sessiond.media.commands.Executor`); the events a command causes are published with ids
derived from the command id, then the entry is acked: a consumer loop sends the events and the
acks of one batch in the same round as its next XREADGROUP (events first, then XACK, then the
read: :class:`~sessiond.store.consumer.Consumer`). If a round's publishing part fails, its
events and acks are kept and sent again with the next round. Command ids already executed
are dropped (:class:`~sessiond.store.consumer.SeenIds`), so a re-emitted outbox does
nothing twice. Entries nobody acked (a node died) are taken over from the pool with
XAUTOCLAIM; ``create`` entries older than ``max_create_age`` are dropped rather than
executed for a call that has long given up.

Leg ownership (:mod:`sessiond.media.owner`): the creates of a batch are claimed in one round
trip before any is executed, so a re-sent or stale create, or one for an ended call, makes
no leg; a command other than create that reached the pool (the session did not know the
leg's node yet) is forwarded to the owner's stream. A node whose heartbeat has not reached
Redis for longer than its TTL when a read returns (it was stopped) heartbeats first, and so
notices it was declared lost before it executes anything. At every heartbeat the node
checks its legs against their sessions and owner records and closes those found orphaned
for 3 s (:mod:`sessiond.media.audit`).

Audio runs on ONE timer loop per node (:mod:`sessiond.media.ticker`): every leg with audio
work (``idle_rtp``: with ``send`` every leg; with ``keepalive`` the others sleep until a
keepalive, an RTCP report or their inactivity timer is due), then every conference room's
mix (:mod:`sessiond.media.rooms`, which also runs the ``conf_*`` commands
and a leg's ``destroy``); media-caused events
(DtmfReceived, RtpTimeout, PlayFinished, RecordingStopped) go through a queue to a publisher
task, so the tick never waits for Redis.

Heartbeat every second (:class:`~sessiond.store.liveness.Liveness`), with the capacity
report the edges admit calls by (:meth:`MediaNode._capacity_report`: 0 free while the ticks
fall behind). The legs the node
serves are listed in ``{media:NAME}:legs`` (written in the rounds that publish their events,
:mod:`sessiond.media.publishing`), so that if the node disappears a worker can tell their sessions
(:mod:`sessiond.media.lost`); at start the node announces the legs a previous run under its
name left there, and if it finds it was declared lost while running, it announces and closes
its legs and starts afresh. Drain (SIGTERM,
or the ``drain:NAME`` key): stop reading the pool, keep serving existing legs until they are
destroyed or ``drain_timeout`` passes, then close every leg (RTCP BYE, files closed, ports
freed) and exit (legs still open at that point are announced as lost, so their calls move to another
node). A second SIGTERM skips the wait. Redis errors back off (0.1 s doubling to 5 s);
consumer groups are recreated on NOGROUP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

from redis.exceptions import ResponseError

from sessiond.core import metrics as process_metrics
from sessiond.core.types import Event
from sessiond.media import node_metrics as metrics
from sessiond.media.audit import LegAudit
from sessiond.media.codecs import available_codecs
from sessiond.media.commands import CommandError, Executor, decode_command, failed_event
from sessiond.media.lost import LegRegistry, lost_events, new_incarnation
from sessiond.media.owner import LegOwners, claim_allows, creates_to_claim, routable
from sessiond.media.ports import PortAllocator
from sessiond.media.publishing import NodeOutbox
from sessiond.media.rooms import Conferences
from sessiond.media.ticker import (
    DEFAULT_KEEPALIVE,
    IDLE_RTP,
    TICK,
    LegSchedule,
    TickLoad,
    run_ticker,
)
from sessiond.store import Keys
from sessiond.store.client import RETRYABLE
from sessiond.store.consumer import Consumer, SeenIds
from sessiond.store.keys import HEARTBEAT_TTL, MEDIA_GROUP, STREAM_MAXLEN
from sessiond.store.liveness import Liveness
from sessiond.store.rooms import RoomStore
from sessiond.store.round import Round
from sessiond.store.streams import cancel_and_wait, retrying

log = logging.getLogger("sessiond.media")
GROUP = MEDIA_GROUP
T = TypeVar("T")
__all__ = ["GROUP", "TICK", "MediaNode", "available_codecs"]


class MediaNode:
    """One media process: command consumers, the 20 ms tick, heartbeat, event publisher."""

    def __init__(
        self,
        redis: Any,
        keys: Keys,
        executor_args: dict[str, Any],
        *,
        name: str,
        ports: PortAllocator,
        block_ms: int = 200,
        claim_idle_ms: int = 5000,
        heartbeat_ttl: int = HEARTBEAT_TTL,
        drain_timeout: float = 300.0,
        max_create_age: float = 30.0,
        stream_maxlen: int = STREAM_MAXLEN,
        max_catch_up: int = 5,
        idle_rtp: str = "send",
        idle_keepalive: float = DEFAULT_KEEPALIVE,
        max_tick_busy: float = 0.7,
        max_late_ticks: float = 0.5,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.name = name
        self.ports = ports
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.heartbeat_ttl = heartbeat_ttl
        self.drain_timeout = drain_timeout
        self.max_create_age = max_create_age
        self.max_catch_up = max_catch_up
        self.draining = asyncio.Event()
        self.stopping = asyncio.Event()
        self.ticks = 0
        self._queue: asyncio.Queue[Event] = asyncio.Queue()
        self._done = SeenIds()  # command ids executed
        self._lock = asyncio.Lock()
        #: per command stream: events a batch caused, not yet published (its acks wait in
        #: the consumer, sent after them in the same round)
        self._unpublished: dict[str, list[Event]] = {}
        self._pool = keys.media_pool()
        self._own = keys.media_commands(name)
        self.consumer = Consumer(redis, GROUP, name, [self._own, self._pool], count=64)
        self._packets = (0, 0)
        self.incarnation = new_incarnation()
        self.registry = LegRegistry(redis, keys, stream_maxlen=stream_maxlen)
        self.legs = self.registry.store
        self.owners = LegOwners(redis, keys)
        self.liveness = Liveness(redis, keys, "media", name, ttl=heartbeat_ttl)
        self.audit = LegAudit(redis, keys, name)
        #: claim results (media_claim.lua) of the creates of the batch being executed
        self._claims: dict[str, tuple[str, str]] = {}
        self._beat_at = time.monotonic()  # the last heartbeat that reached Redis
        self._registered = False
        self._beats = 0
        loop = asyncio.get_running_loop()
        self.executor = Executor(
            name=name, ports=ports, emit=self._queue.put_nowait, clock=loop.time, **executor_args
        )
        if idle_rtp not in IDLE_RTP:
            raise ValueError(f"idle_rtp must be one of {', '.join(IDLE_RTP)}, not {idle_rtp!r}")
        keepalive = idle_keepalive if idle_rtp == "keepalive" else 0.0
        self.schedule = LegSchedule(self.executor, name, keepalive)
        self.load = TickLoad(loop.time())
        self.max_tick_busy = max_tick_busy
        self.max_late_ticks = max_late_ticks
        self.overloaded = False
        self._over = 0  # heartbeats in a row over the limits
        self.outbox = NodeOutbox(self.legs, self.consumer, self.executor, name)
        self.conferences = Conferences(self.executor, RoomStore(redis, keys))

    # -- lifecycle ------------------------------------------------------------------------

    def stop(self) -> None:
        """First call: drain. Second call: stop now (legs are closed either way)."""
        if self.draining.is_set():
            self.stopping.set()
        self.draining.set()

    async def run(self) -> None:
        """Serve until drained or stopped; then close every leg and publish what is left."""
        for step in (self.ensure_groups, self.register):  # SIGTERM ends these retries
            await retrying(
                step, stopping=self.draining, recreate_groups=self.ensure_groups, log=log
            )
        if self.draining.is_set() and not self._registered:
            log.info("media node %s stopped before it could register", self.name)
            return
        own = asyncio.create_task(self._consume(self._own, self.stopping))
        pool = asyncio.create_task(self._consume(self._pool, self.draining))
        helpers = [
            asyncio.create_task(loop)
            for loop in (
                self._reclaim_loop(),
                self._heartbeat(),
                self._publisher(),
                run_ticker(self.tick, self.max_catch_up, self.load),
            )
        ]
        try:
            await self.draining.wait()
            log.info("media node %s draining: %d legs", self.name, len(self.executor.legs))
            await asyncio.wait({pool}, timeout=5)
            deadline = time.monotonic() + self.drain_timeout
            while self.executor.legs and not self.stopping.is_set() and time.monotonic() < deadline:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), 0.1)
            self.stopping.set()
            await asyncio.wait({own}, timeout=5)
        finally:
            await cancel_and_wait([own, pool, *helpers])
        lost = self._lost_events()
        self.executor.close_all("shutdown")
        await self._final_flush(lost)
        log.info("media node %s stopped after %d ticks", self.name, self.ticks)

    async def _final_flush(self, lost: list[Event]) -> None:
        events = []
        while not self._queue.empty():
            events.append(self._queue.get_nowait())
        with contextlib.suppress(*RETRYABLE):
            for stream in (self._own, self._pool):  # a consumer stopped before its last round
                await self._publish_unpublished(stream)
            await self.outbox.publish(events + lost)
            await self.liveness.leave(partial(self.legs.queue_gone, node=self.name))
        self._update_gauges()

    async def ensure_groups(self) -> None:
        """Create the ``media`` group on both command streams (from the start of each)."""
        await self.consumer.ensure_groups()

    async def _retrying(
        self, step: Callable[[], Awaitable[T]], on_error: Callable[[], None] | None = None
    ) -> T | None:
        return await retrying(
            step,
            stopping=self.stopping,
            recreate_groups=self.ensure_groups,
            log=log,
            on_error=on_error,
        )

    # -- commands -------------------------------------------------------------------------

    async def _consume(self, stream: str, stop: asyncio.Event) -> None:
        while not stop.is_set():
            # first (and after a Redis error) the entries delivered to us and never acked
            lost = partial(self.consumer.backlog.lost, stream)
            await self._retrying(partial(self.consume_once, stream), lost)
        with contextlib.suppress(*RETRYABLE):  # the last batch's events and acks
            await self._publish_unpublished(stream)

    async def consume_once(self, stream: str) -> int:
        """Publish what the previous batch of ``stream`` caused and ack it, and read the next
        batch, in one round; execute that batch (its events and acks wait for the next
        round, or for the end of the loop). Returns the entry count."""
        pipe = Round(self.redis)
        changes = self.outbox.queue(pipe, self._unpublished.get(stream, []))
        batch = await self.consumer.read(stream, block=self.block_ms, before=pipe, strict=False)
        if batch.failed is None:  # else they stay unpublished, sent again in the next round
            self._unpublished.pop(stream, None)
            self.outbox.sent(changes)
        if batch.error is not None:
            raise batch.error
        if batch.entries:
            events = self._unpublished.setdefault(stream, [])
            try:
                await self._after_stall()
                async with self._lock:
                    await self._claim_creates(batch.entries, takeover=batch.start != ">")
                    for entry_id, fields in batch.entries:
                        if await self._handle(stream, entry_id, fields, events):
                            self.consumer.ack(stream, entry_id)
            except RETRYABLE:
                self.consumer.backlog.lost(stream)  # the entries not acked are read again
                raise
        if batch.failed is not None:
            raise batch.failed
        return len(batch.entries)

    async def _publish_unpublished(self, stream: str) -> None:
        if stream not in self._unpublished and not self.consumer.pending_acks(stream):
            return
        pipe = Round(self.redis)
        changes = self.outbox.queue(pipe, self._unpublished.get(stream, []))
        await self.consumer.flush(stream, before=pipe)
        self._unpublished.pop(stream, None)
        self.outbox.sent(changes)

    async def process(self, stream: str, entries: list[tuple[bytes, Any]]) -> None:
        """Execute entries in order; then, in one round, publish what they caused and ack
        them (a node that dies before that leaves them pending for another to claim)."""
        handled: list[bytes] = []
        events: list[Event] = []
        await self._after_stall()
        async with self._lock:
            await self._claim_creates(entries, takeover=True)
            for entry_id, fields in entries:
                if await self._handle(stream, entry_id, fields, events):
                    handled.append(entry_id)
        if handled or events:
            await self._retrying(partial(self.outbox.publish, events, (stream, handled)))

    async def _handle(self, stream: str, entry_id: bytes, fields: Any, events: list[Event]) -> bool:
        """Execute one entry, adding the events it caused to ``events``; False to leave it
        pending (for another node to claim)."""
        try:
            cmd = decode_command(fields or {})
        except CommandError as exc:
            log.warning("skipped command entry %r: %s", entry_id, exc)
            process_metrics.child(metrics.COMMANDS, "?", "garbage").inc()
            return True
        if cmd.id in self._done:
            process_metrics.child(metrics.COMMANDS, cmd.type, "duplicate").inc()
            return True
        if stream == self._pool and self.draining.is_set() and cmd.type == "create":
            log.info("draining: left create %s for another node", cmd.id)
            return False
        status = "ok"
        caused: list[Event] = []
        try:
            caused = await self._execute(stream, entry_id, cmd, fields)
        except RETRYABLE:
            raise  # Redis is unreachable (claiming, forwarding): the entry is not acked
        except CommandError as exc:
            log.warning("command %s %s refused: %s", cmd.type, cmd.id, exc)
            status = "refused"
        except Exception:
            log.exception("command %s %s failed", cmd.type, cmd.id)
            status = "error"
        self._done.add(cmd.id)
        process_metrics.child(metrics.COMMANDS, cmd.type, status).inc()
        events.extend(caused)
        return True

    def _too_old(self, entry_id: bytes) -> float:
        """The entry's age in seconds if it is past ``max_create_age``, else 0."""
        age = time.time() - int(entry_id.split(b"-")[0]) / 1000
        return age if age > self.max_create_age else 0.0

    async def _execute(self, stream: str, entry_id: bytes, cmd: Any, fields: Any) -> list[Event]:
        if cmd.type == "create" and cmd.data.media_id not in self.executor.legs:
            if age := self._too_old(entry_id):
                log.warning("dropped create %s: %.0f s old", cmd.id, age)
                return []
            if self.draining.is_set():
                return [failed_event(cmd, cmd.data.media_id, 503, "draining")]
        if cmd.type == "create" and cmd.id in self._claims:
            if not claim_allows(self.executor, cmd, *self._claims.pop(cmd.id)):
                return []
        elif stream == self._pool and cmd.type != "create" and routable(cmd):
            if await self._forwarded(cmd, fields):
                return []
        return await self.executor.execute(cmd)

    # -- leg ownership (sessiond.media.owner) ---------------------------------------------

    async def _claim_creates(self, entries: list[tuple[bytes, Any]], *, takeover: bool) -> None:
        """Claim, in one round trip, the creates of a batch this node will execute (see
        :mod:`sessiond.media.owner`); a FENCED answer means this incarnation was declared
        lost: close its legs, start a new incarnation, and claim the batch again."""
        claims = creates_to_claim(
            entries,
            done=self._done,
            held=self.executor.legs,
            makes_none=lambda entry_id: self.draining.is_set() or self._too_old(entry_id),
            takeover=takeover,
        )
        self._claims = await self.owners.claim_batch(
            self.name, lambda: self.incarnation, claims, self._fenced_locked
        )

    async def _forwarded(self, cmd: Any, fields: Any) -> bool:
        """A command for a leg that reached the pool (its session did not know the leg's
        node): send it to the node that owns the leg, unless that is this one. A destroy
        with no owner yet marks the leg so its create makes nothing."""
        try:
            owner = await self.owners.route(cmd.data.media_id, destroy=cmd.type == "destroy")
        except ResponseError as exc:
            log.error("routing %s %s failed, running it here: %s", cmd.type, cmd.id, exc)
            return False
        if owner == self.name:
            return False
        if owner:
            await self.legs.forward(owner, fields)
            process_metrics.child(metrics.COMMANDS, cmd.type, "forwarded").inc()
        return True

    async def _after_stall(self) -> None:
        """Before executing what a read returned: if this node's heartbeat has not reached
        Redis for about its TTL (the process stalled), heartbeat first, so that a node
        declared lost meanwhile closes its legs before it takes anything new."""
        # (most of the TTL: the key was set a little before the reply that dated _beat_at)
        if time.monotonic() - self._beat_at > 0.8 * self.heartbeat_ttl and self._registered:
            await self.heartbeat_once()

    async def _reclaim_loop(self) -> None:
        while not self.stopping.is_set():
            if not self.draining.is_set():
                await self._retrying(self.reclaim_once)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), self.claim_idle_ms / 2000)

    async def reclaim_once(self) -> int:
        """Take over pool entries another node left pending too long (it probably died)."""
        _, entries = await self.consumer.claim(self._pool, self.claim_idle_ms)
        await self.process(self._pool, entries)
        return len(entries)

    # -- events ---------------------------------------------------------------------------

    def _lost_events(self) -> list[Event]:
        """MediaLost for every leg this node has (the ids workers would use)."""
        entries = {leg.media_id: f"{leg.sid} {leg.origin}" for leg in self.executor.legs.values()}
        return lost_events(self.name, entries)

    async def _publisher(self) -> None:
        while True:
            events = [await self._queue.get()]
            while not self._queue.empty():
                events.append(self._queue.get_nowait())
            await self._retrying(partial(self.outbox.publish, events))

    def tick(self, now: float) -> None:
        """Tick the legs with audio work, visit the sleeping ones that are due (see
        :mod:`sessiond.media.ticker`), mix the rooms."""
        self.ticks += 1
        self.schedule.tick(now)
        self.conferences.tick()

    # -- heartbeat ------------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        while not self.stopping.is_set():
            await self._retrying(self.heartbeat_once)
            try:
                await self._retrying(self.audit_once)
            except ResponseError as exc:  # e.g. an ACL without HGETALL on session keys
                log.error("checking this node's legs failed: %s", exc)
            self._update_gauges()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), 1.0)

    async def register(self) -> None:
        """Heartbeat, then announce the legs a previous run under this name left listed
        (this run has none of them) and own the legs hash as this incarnation."""
        await self.heartbeat_once()
        await self.registry.announce_stale(self.name, self.incarnation)
        self._registered = True

    async def heartbeat_once(self) -> None:
        """Announce this node and its free capacity; start draining if ``drain:NAME`` was
        set; if a worker declared this node lost (its heartbeat lapsed), give up the legs."""

        def extra(pipe: Any) -> None:
            self.legs.queue_capacity(pipe, self.name, self._capacity_report())
            self.legs.queue_incarnation(pipe, self.name)

        beat = await self.liveness.beat(extra, accept_drain=not self.draining.is_set())
        self._beat_at = time.monotonic()
        incarnation = beat.extra[-1]
        if self._registered and (incarnation or b"").decode() != self.incarnation:
            await self._fenced()
        if beat.drain:
            log.info("media node %s: drain requested", self.name)
            self.draining.set()

    def _capacity_report(self) -> str:
        """``free capacity beat legs=N asleep=N busy=B late=L`` for the edges' admission
        and for operators: a draining node, or one falling behind (its ticks took more
        than ``max_tick_busy`` of the time since the last heartbeat, or more than
        ``max_late_ticks`` of them started a period late, two heartbeats in a row), takes
        no new legs: 0 free.
        ``beat`` changes every heartbeat, so edges tell a report gone stale."""
        self._beats += 1
        busy, late = self.load.take(asyncio.get_running_loop().time())
        over = busy > self.max_tick_busy or late > self.max_late_ticks
        self._over = self._over + 1 if over else 0
        self.overloaded = self._over >= 2  # one slow second (a GC, a neighbour) is not full
        metrics.OVERLOADED.set(int(self.overloaded))
        metrics.TICK_BUSY.set(busy)
        free = self.ports.capacity - self.ports.in_use
        if self.draining.is_set() or self.overloaded:
            free = 0
        legs, asleep = len(self.executor.legs), self.schedule.sleeping
        return (
            f"{free} {self.ports.capacity} {self._beats} "
            f"legs={legs} asleep={asleep} busy={busy:.2f} late={late:.2f}"
        )

    async def _fenced(self) -> None:
        """We were declared lost while running: the calls are being moved elsewhere, so
        announce (same event ids as the worker's, refused as duplicates) and close every leg,
        then start a new incarnation."""
        async with self._lock:
            if await self.legs.incarnation(self.name) != self.incarnation:  # not done meanwhile
                await self._fenced_locked()

    async def _fenced_locked(self) -> None:
        lost = self._lost_events()
        log.warning("media node %s was declared lost: closing %d legs", self.name, len(lost))
        self.executor.close_all("fenced")
        self.executor.changes.clear()
        incarnation = new_incarnation()
        await self.outbox.publish(lost)
        await self.registry.announce_stale(self.name, incarnation)
        self.incarnation = incarnation

    async def audit_once(self, limit: int = 256, grace: float = 3.0) -> int:
        """Close the legs (up to ``limit`` per call, in turn) that are not this node's any
        more: their session ended, or their owner record names another node or incarnation
        (:mod:`sessiond.media.audit`), in every audit for ``grace`` seconds. A safety net
        under the routing of commands: whatever race leaves a copy behind, it is closed
        within a few heartbeats."""
        chosen = self.audit.choose(list(self.executor.legs.values()), limit)
        if not chosen:
            return 0
        replies = await self.audit.read(chosen)
        async with self._lock:
            condemned = self.audit.condemned(
                chosen,
                replies,
                self.executor.legs.values(),
                self.incarnation,
                time.monotonic(),
                grace,
            )
            for leg, reason in condemned:
                log.warning("closing leg %s of %s: %s", leg.media_id, leg.sid, reason)
                self.executor.end(leg, f"{self.name}:orphan:{leg.media_id}")
        return len(condemned)

    def _update_gauges(self) -> None:
        self._packets = metrics.update_gauges(self.executor, self.ports, self._packets)
        metrics.LEGS_ASLEEP.set(self.schedule.sleeping)
