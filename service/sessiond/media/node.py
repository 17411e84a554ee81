"""The media process: RTP legs driven by commands from Redis streams.

Theory of operation
-------------------
A node reads two command streams through the consumer group ``media``: the pool stream (any
node may take a ``create``) and its own stream (``update``, ``destroy``, ``play``... for legs it
owns, routed there by the ``media_node`` the session saved from MediaReady). The two are read by
separate loops because their keys live in different cluster slots. Commands run one at a time
(:class:`~sessiond.media.commands.Executor`); the events a command causes are published with ids
derived from the command id, then the entry is acked: a consumer loop sends the events and the
acks of one batch in the same pipeline as its next XREADGROUP (events first, then XACK, then the
read: one round trip per batch, packed into one write on a plain Redis, see
:class:`~sessiond.store.round.Round`). If a round's publishing part fails, its events and
acks are kept and sent again with the next round. Command ids already executed are dropped
(an LRU), so a re-emitted outbox does nothing twice. Entries nobody acked (a node died) are
taken over from the pool with XAUTOCLAIM; ``create`` entries older than ``max_create_age`` are
dropped rather than executed for a call that has long given up.

Leg ownership (:mod:`sessiond.media.owner`): the creates of a batch are claimed in one round
trip before any is executed, so a re-sent or stale create, or one for an ended call, makes
no leg; a command other than create that reached the pool (the session did not know the
leg's node yet) is forwarded to the owner's stream. A node whose heartbeat has not reached
Redis for longer than its TTL when a read returns (it was stopped) heartbeats first, and so
notices it was declared lost before it executes anything. At every heartbeat the node
checks its legs against their sessions and owner records and closes those found orphaned
for 3 s (:mod:`sessiond.media.audit`).

Audio runs on ONE timer loop per node: every 20 ms it ticks every leg (send the player's,
bridge's or a silence frame, record, run RTCP/inactivity timers). Datagrams are handled as they
arrive, by the socket callbacks, without a task per leg. The schedule is absolute (start +
k * 20 ms) so timing errors do not accumulate; after a stall of more than ``max_catch_up`` ticks
the node skips ahead instead of bursting. Media-caused events (DtmfReceived, RtpTimeout,
PlayFinished, RecordingStopped) go through a queue to a publisher task, so the tick never waits
for Redis.

Heartbeat every second (``process:media:NAME`` with a TTL, ``processes:media``). The legs the
node serves are listed in ``{media:NAME}:legs`` (written in the pipelines that publish their
events), so that if the node disappears a worker can tell their sessions
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
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

from redis.exceptions import ResponseError

from sessiond.core import metrics as process_metrics
from sessiond.core.types import Event
from sessiond.media import node_metrics as metrics
from sessiond.media.audit import orphan_reason, queue_leg_checks
from sessiond.media.codecs import create_codec
from sessiond.media.commands import CommandError, Executor, decode_command, failed_event
from sessiond.media.errors import CodecError
from sessiond.media.lost import INCARNATION, LegRegistry, lost_events, new_incarnation
from sessiond.media.offer_answer import DEFAULT_CODECS
from sessiond.media.owner import Claim, LegOwners, claimable
from sessiond.media.ports import PortAllocator
from sessiond.media.sdp import Codec
from sessiond.store import Keys
from sessiond.store.client import RETRYABLE
from sessiond.store.entries import encode_event
from sessiond.store.round import Round
from sessiond.store.streams import Backlog, cancel_and_wait, ensure_groups, retrying

log = logging.getLogger("sessiond.media")
GROUP = "media"
TICK = 0.02
T = TypeVar("T")


def available_codecs() -> tuple[Codec, ...]:
    """The default codecs this installation can actually run (Opus needs PyAV)."""
    usable = []
    for codec in DEFAULT_CODECS:
        try:
            if codec.name != "telephone-event":
                create_codec(codec)
        except (CodecError, ImportError):
            continue
        usable.append(codec)
    return tuple(usable)


def _routable(cmd: Any) -> bool:
    """A command (not a create) for a leg that may have an owner record."""
    media_id = cmd.data.get("media_id")
    return isinstance(media_id, str) and claimable(cmd.sid, media_id)


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
        heartbeat_ttl: int = 5,
        drain_timeout: float = 300.0,
        max_create_age: float = 30.0,
        stream_maxlen: int = 100_000,
        max_catch_up: int = 5,
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
        self.stream_maxlen = stream_maxlen
        self.max_catch_up = max_catch_up
        self.draining = asyncio.Event()
        self.stopping = asyncio.Event()
        self.ticks = 0
        self._queue: asyncio.Queue[Event] = asyncio.Queue()
        self._done: OrderedDict[str, None] = OrderedDict()
        self._lock = asyncio.Lock()
        #: per command stream: events a batch caused and its entry ids, not yet published/acked
        self._unpublished: dict[str, tuple[list[Event], list[bytes]]] = {}
        self._pool = keys.media_pool()
        self._own = keys.media_commands(name)
        self._packets = (0, 0)
        self.incarnation = new_incarnation()
        self.registry = LegRegistry(redis, keys, stream_maxlen=stream_maxlen)
        self.owners = LegOwners(redis, keys)
        #: claim results (media_claim.lua) of the creates of the batch being executed
        self._claims: dict[str, tuple[str, str]] = {}
        self._beat_at = time.monotonic()  # the last heartbeat that reached Redis
        self._audit_at = 0  # where the next self-audit starts in the legs
        self._backlog = Backlog([self._own, self._pool])  # delivered to us, maybe never run
        #: legs ("media id origin") audits found orphaned, and when that was first seen
        self._suspects: dict[str, float] = {}
        self._registered = False
        self._beats = 0
        loop = asyncio.get_running_loop()
        self.executor = Executor(
            name=name, ports=ports, emit=self._queue.put_nowait, clock=loop.time, **executor_args
        )

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
            for loop in (self._reclaim_loop(), self._heartbeat(), self._publisher(), self._ticker())
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
            for stream in list(self._unpublished):  # a consumer stopped before its last round
                await self._publish_unpublished(stream)
            await self.publish(events + lost)
            pipe = self.redis.pipeline(transaction=False)
            pipe.delete(self.keys.media_legs(self.name))
            pipe.delete(self.keys.heartbeat("media", self.name))
            pipe.hdel(self.keys.media_capacity(), self.name)
            pipe.zrem(self.keys.processes("media"), self.name)
            await pipe.execute()
        self._update_gauges()

    async def ensure_groups(self) -> None:
        """Create the ``media`` group on both command streams (from the start of each)."""
        await ensure_groups(self.redis, [self._pool, self._own], GROUP)

    async def _retrying(self, step: Callable[[], Awaitable[T]]) -> T | None:
        return await retrying(
            step, stopping=self.stopping, recreate_groups=self.ensure_groups, log=log
        )

    # -- commands -------------------------------------------------------------------------

    async def _consume(self, stream: str, stop: asyncio.Event) -> None:
        while not stop.is_set():
            # first (and after a Redis error) the entries delivered to us and never acked
            start = self._backlog.start(stream)
            count = await retrying(
                partial(self.consume_once, stream, start),
                stopping=self.stopping,
                recreate_groups=self.ensure_groups,
                log=log,
                on_error=partial(self._backlog.lost, stream),
            )
            self._backlog.read(stream, start, count)
        if stream in self._unpublished:  # the last batch's events and acks (no more reads)
            with contextlib.suppress(*RETRYABLE):
                await self._publish_unpublished(stream)

    async def consume_once(self, stream: str, start: str = ">") -> int:
        """Publish what the previous batch of ``stream`` caused and ack it, and read the next
        batch, in one pipeline; execute that batch (its events and acks wait for the next
        round, or for the end of the loop). Returns the entry count."""
        events, acks = self._unpublished.get(stream, ([], []))
        pipe = Round(self.redis)
        changes = self._queue_publish(pipe, events, (stream, acks))
        pipe.xreadgroup(GROUP, self.name, {stream: start}, count=64, block=self.block_ms)
        *published, reply = await pipe.execute(raise_on_error=False)
        failed = next((r for r in published if isinstance(r, Exception)), None)
        if failed is None:  # else they stay unpublished, sent again in the next round
            self._unpublished.pop(stream, None)
            self._forget_changes(changes)
        if isinstance(reply, Exception):
            raise reply
        entries = [item for _, items in reply or [] for item in items]
        if entries:
            events, acks = self._unpublished.setdefault(stream, ([], []))
            try:
                await self._after_stall()
                async with self._lock:
                    await self._claim_creates(stream, entries, takeover=start != ">")
                    for entry_id, fields in entries:
                        if await self._handle(stream, entry_id, fields, events):
                            acks.append(entry_id)
            except RETRYABLE:
                self._backlog.lost(stream)  # the entries not acked are read again
                raise
        if failed is not None:
            raise failed
        return len(entries)

    async def _publish_unpublished(self, stream: str) -> None:
        events, acks = self._unpublished[stream]
        await self.publish(events, (stream, acks))
        del self._unpublished[stream]

    async def process(self, stream: str, entries: list[tuple[bytes, Any]]) -> None:
        """Execute entries in order; then, in one pipeline, publish what they caused and ack
        them (a node that dies before that leaves them pending for another to claim)."""
        handled: list[bytes] = []
        events: list[Event] = []
        await self._after_stall()
        async with self._lock:
            await self._claim_creates(stream, entries, takeover=True)
            for entry_id, fields in entries:
                if await self._handle(stream, entry_id, fields, events):
                    handled.append(entry_id)
        if handled or events:
            await self._retrying(partial(self.publish, events, (stream, handled)))

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
        self._done[cmd.id] = None
        while len(self._done) > 50_000:
            self._done.popitem(last=False)
        process_metrics.child(metrics.COMMANDS, cmd.type, status).inc()
        events.extend(caused)
        return True

    def _too_old(self, entry_id: bytes) -> float:
        """The entry's age in seconds if it is past ``max_create_age``, else 0."""
        age = time.time() - int(entry_id.split(b"-")[0]) / 1000
        return age if age > self.max_create_age else 0.0

    async def _execute(self, stream: str, entry_id: bytes, cmd: Any, fields: Any) -> list[Event]:
        if cmd.type == "create" and cmd.data.get("media_id") not in self.executor.legs:
            if age := self._too_old(entry_id):
                log.warning("dropped create %s: %.0f s old", cmd.id, age)
                return []
            if self.draining.is_set():
                return [failed_event(cmd, str(cmd.data.get("media_id")), 503, "draining")]
        if cmd.type == "create" and cmd.id in self._claims:
            if not self._claimed(cmd, *self._claims.pop(cmd.id)):
                return []
        elif stream == self._pool and cmd.type != "create" and _routable(cmd):
            if await self._forwarded(cmd, fields):
                return []
        return await self.executor.execute(cmd)

    # -- leg ownership (sessiond.media.owner) ---------------------------------------------

    async def _claim_creates(
        self, stream: str, entries: list[tuple[bytes, Any]], *, takeover: bool
    ) -> None:
        """Claim, in one round trip, the creates of a batch this node will execute (see
        :mod:`sessiond.media.owner`); a FENCED answer means this incarnation was declared
        lost: close its legs, start a new incarnation, and claim the batch again."""
        self._claims.clear()
        claims: dict[str, Claim] = {}
        for entry_id, fields in entries:
            try:
                cmd = decode_command(fields or {})
            except CommandError:
                continue
            media_id = cmd.data.get("media_id")
            if cmd.type != "create" or cmd.id in self._done or not isinstance(media_id, str):
                continue
            if not claimable(cmd.sid, media_id):
                continue  # a malformed create: made (or refused) as before, without a record
            if media_id not in self.executor.legs and (
                self.draining.is_set() or self._too_old(entry_id)
            ):
                continue  # not executed (left for another node, refused or dropped)
            relocation = bool(cmd.data.get("origin"))
            claims[cmd.id] = Claim(cmd.sid, media_id, cmd.id, takeover, relocation)
        if not claims:
            return
        try:
            answers = await self.owners.claim_many(
                self.name, self.incarnation, list(claims.values())
            )
        except ResponseError as exc:  # e.g. an ACL without the script's commands
            log.error("claiming legs failed, creating them unclaimed: %s", exc)
            return
        if any(status == "FENCED" for status, _ in answers):
            await self._fenced_locked()
            again = [
                Claim(c.sid, c.media_id, c.create_id, True, c.relocation) for c in claims.values()
            ]
            answers = await self.owners.claim_many(self.name, self.incarnation, again)
        self._claims = dict(zip(claims, answers, strict=True))

    def _claimed(self, cmd: Any, status: str, owner: str) -> bool:
        """Whether a create whose claim answered ``status`` may make its leg; a copy of the
        leg this node holds is closed when the leg is not (or no longer) ours."""
        if status == "OK":
            return True
        media_id = str(cmd.data["media_id"])
        log.info("create %s for %s refused: %s %s", cmd.id, media_id, status, owner)
        leg = self.executor.legs.get(media_id)
        if leg is not None and (status == "ENDED" or status == "OWNED" and leg.origin == cmd.id):
            self.executor.end(leg, f"{cmd.id}:{status.lower()}")
        return False

    async def _forwarded(self, cmd: Any, fields: Any) -> bool:
        """A command for a leg that reached the pool (its session did not know the leg's
        node): send it to the node that owns the leg, unless that is this one. A destroy
        with no owner yet marks the leg so its create makes nothing."""
        try:
            owner = await self.owners.route(
                str(cmd.data["media_id"]), destroy=cmd.type == "destroy"
            )
        except ResponseError as exc:
            log.error("routing %s %s failed, running it here: %s", cmd.type, cmd.id, exc)
            return False
        if owner == self.name:
            return False
        if owner:
            stream = self.keys.media_commands(owner)
            await self.redis.xadd(stream, dict(fields), maxlen=self.stream_maxlen, approximate=True)
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
        reply = await self.redis.xautoclaim(
            self._pool, GROUP, self.name, self.claim_idle_ms, "0-0", count=64
        )
        entries = [(eid, fields) for eid, fields in reply[1] if fields is not None]
        await self.process(self._pool, entries)
        return len(entries)

    # -- events ---------------------------------------------------------------------------

    async def publish(
        self, events: list[Event], ack: tuple[str, list[bytes]] | None = None
    ) -> None:
        """XADD events to their sessions' partition streams, then (optionally) XACK command
        entries, in one pipeline."""
        if not events and not (ack and ack[1]) and not self.executor.changes:
            return
        pipe = Round(self.redis)
        changes = self._queue_publish(pipe, events, ack)
        await pipe.execute()
        self._forget_changes(changes)

    def _queue_publish(
        self, pipe: Any, events: list[Event], ack: tuple[str, list[bytes]] | None
    ) -> dict[str, str | None]:
        """Queue on ``pipe``: the legs hash changes, the events, the acks. Returns the changes
        queued (for :meth:`_forget_changes` once the pipeline succeeded)."""
        changes = dict(self.executor.changes)
        self._queue_leg_changes(pipe, changes)  # first: a leg is listed before it is announced
        for event in events:
            try:
                stream = self.keys.events(self.keys.partition_of(event.sid))
            except ValueError:
                log.warning("dropped %s %s: no session id", event.type, event.id)
                continue
            fields = encode_event(event)
            pipe.xadd(stream, fields, maxlen=self.stream_maxlen, approximate=True)
            process_metrics.child(metrics.EVENTS, event.type).inc()
        if ack and ack[1]:
            pipe.xack(ack[0], GROUP, *ack[1])
        return changes

    def _forget_changes(self, changes: dict[str, str | None]) -> None:
        """The legs hash has ``changes``: drop those not changed again since."""
        pending = self.executor.changes
        for media_id, entry in changes.items():
            if media_id in pending and pending[media_id] == entry:
                del pending[media_id]

    def _queue_leg_changes(self, pipe: Any, changes: dict[str, str | None]) -> None:
        key = self.keys.media_legs(self.name)
        added = {m: e for m, e in changes.items() if e is not None}
        gone = [m for m, e in changes.items() if e is None]
        if added:
            pipe.hset(key, mapping=added)
        if gone:
            pipe.hdel(key, *gone)

    def _lost_events(self) -> list[Event]:
        """MediaLost for every leg this node has (the ids workers would use)."""
        entries = {leg.media_id: f"{leg.sid} {leg.origin}" for leg in self.executor.legs.values()}
        return lost_events(self.name, entries)

    async def _publisher(self) -> None:
        while True:
            events = [await self._queue.get()]
            while not self._queue.empty():
                events.append(self._queue.get_nowait())
            await self._retrying(partial(self.publish, events))

    # -- the tick -------------------------------------------------------------------------

    async def _ticker(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            now = loop.time()
            behind = now - due
            if behind > self.max_catch_up * TICK:
                skipped = int(behind / TICK)
                metrics.TICKS_SKIPPED.inc(skipped)
                due += skipped * TICK
            elif behind > TICK:
                metrics.TICKS_LATE.inc()
            self.tick(now)
            metrics.TICK_SECONDS.observe(loop.time() - now)
            due += TICK
            await asyncio.sleep(max(0.0, due - loop.time()))

    def tick(self, now: float) -> None:
        """Tick every leg once (one leg's failure must not stop the others)."""
        self.ticks += 1
        for leg in list(self.executor.legs.values()):
            try:
                leg.tick(now)
            except Exception:
                log.exception("%s: tick failed; closing the leg", leg.media_id)
                with contextlib.suppress(Exception):
                    self.executor.end(leg, f"{self.name}:error:{leg.media_id}")

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
        """Announce this node; start draining if ``drain:NAME`` was set; if a worker declared
        this node lost (its heartbeat lapsed), give up the legs it moved."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(self.keys.heartbeat("media", self.name), str(os.getpid()), ex=self.heartbeat_ttl)
        pipe.zadd(self.keys.processes("media"), {self.name: time.time()})
        pipe.exists(self.keys.drain(self.name))
        pipe.hset(self.keys.media_capacity(), self.name, self._capacity_report())
        pipe.hget(self.keys.media_legs(self.name), INCARNATION)
        *_, drain, _, incarnation = await pipe.execute()
        self._beat_at = time.monotonic()
        if self._registered and (incarnation or b"").decode() != self.incarnation:
            await self._fenced()
        if drain and not self.draining.is_set():
            log.info("media node %s: drain requested", self.name)
            await self.redis.delete(self.keys.drain(self.name))
            self.draining.set()

    def _capacity_report(self) -> str:
        """``free capacity beat`` for the edges' admission (a draining node takes no new
        legs: 0 free); ``beat`` changes every heartbeat, so edges tell a report gone stale."""
        self._beats += 1
        free = 0 if self.draining.is_set() else self.ports.capacity - self.ports.in_use
        return f"{free} {self.ports.capacity} {self._beats}"

    async def _fenced(self) -> None:
        """We were declared lost while running: the calls are being moved elsewhere, so
        announce (same event ids as the worker's, refused as duplicates) and close every leg,
        then start a new incarnation."""
        async with self._lock:
            current = await self.redis.hget(self.keys.media_legs(self.name), INCARNATION)
            if (current or b"").decode() != self.incarnation:  # not done meanwhile (a claim)
                await self._fenced_locked()

    async def _fenced_locked(self) -> None:
        lost = self._lost_events()
        log.warning("media node %s was declared lost: closing %d legs", self.name, len(lost))
        self.executor.close_all("fenced")
        self.executor.changes.clear()
        incarnation = new_incarnation()
        await self.publish(lost)
        await self.registry.announce_stale(self.name, incarnation)
        self.incarnation = incarnation

    async def audit_once(self, limit: int = 256, grace: float = 3.0) -> int:
        """Close the legs (up to ``limit`` per call, in turn) that are not this node's any
        more: their session ended, or their owner record names another node or incarnation
        (:mod:`sessiond.media.audit`). A leg is closed once every audit for ``grace``
        seconds found it so (the destroy of a call that just ended is on its way). A safety
        net under the routing of commands: whatever race leaves a copy behind, it is closed
        within a few heartbeats."""
        legs = list(self.executor.legs.values())
        if not legs:
            return 0
        start = self._audit_at % len(legs)
        chosen = (legs[start:] + legs[:start])[:limit]
        self._audit_at = start + len(chosen)
        pipe = self.redis.pipeline(transaction=False)
        queue_leg_checks(pipe, self.keys, [(leg.media_id, leg.sid) for leg in chosen])
        replies = await pipe.execute()
        closed = 0
        async with self._lock:
            now = time.monotonic()
            checked = {f"{leg.media_id} {leg.origin}" for leg in chosen}
            held = {f"{leg.media_id} {leg.origin}" for leg in self.executor.legs.values()}
            suspects, self._suspects = (
                self._suspects,
                {
                    leg: since  # not checked this time, and not ended since
                    for leg, since in self._suspects.items()
                    if leg in held and leg not in checked
                },
            )
            for i, leg in enumerate(chosen):
                registry, exists, owner = replies[3 * i : 3 * i + 3]
                reason = orphan_reason(
                    self.name,
                    self.incarnation,
                    leg.sid,
                    registry,
                    exists,
                    owner,
                    missing_is_orphan=False,
                )
                if not reason or self.executor.legs.get(leg.media_id) is not leg:
                    continue
                name = f"{leg.media_id} {leg.origin}"
                since = self._suspects[name] = suspects.get(name, now)
                if now - since >= grace:
                    del self._suspects[name]
                    log.warning("closing leg %s of %s: %s", leg.media_id, leg.sid, reason)
                    self.executor.end(leg, f"{self.name}:orphan:{leg.media_id}")
                    closed += 1
        return closed

    def _update_gauges(self) -> None:
        legs = self.executor.legs.values()
        metrics.LEGS.set(len(legs))
        metrics.PORTS_FREE.set(self.ports.capacity - self.ports.in_use)
        received = self.executor.received + sum(leg.received for leg in legs)
        sent = self.executor.sent + sum(leg.sent for leg in legs)
        metrics.PACKETS.labels("in").inc(max(0, received - self._packets[0]))
        metrics.PACKETS.labels("out").inc(max(0, sent - self._packets[1]))
        self._packets = (received, sent)
