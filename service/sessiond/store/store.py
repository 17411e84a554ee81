"""Typed wrappers over the Lua scripts, plus the plain reads and writes around them.

The store never decides anything: it reads sessions and applies decisions the engine made
(compare-and-set on ``version``). A transition's commands go out with it: on a store that is
not a Redis Cluster the script that stores it runs them too (direct emission, one atomic
step: nothing is kept, a redelivery has nothing to send again); in a Redis Cluster, where
their streams are on other slots, the script keeps them as the transition's outbox, which
the worker emits and then deletes. Destinations are resolved before the transition, so a
re-emitted outbox (after a worker died between the transition and the emission) goes exactly
where the first one would have.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import msgpack
from redis.exceptions import NoScriptError

from sessiond.core.errors import StoreError
from sessiond.core.redact import scrubbed
from sessiond.core.types import Command, Event, Verdict
from sessiond.store import entries
from sessiond.store.applied import APPLIED_KEEP, was_applied
from sessiond.store.applied import digest as applied_digest
from sessiond.store.client import is_cluster
from sessiond.store.entries import decode_event as decode_event  # the tests' import path
from sessiond.store.entries import encode_event
from sessiond.store.history import lines as history_lines
from sessiond.store.history import parse as parse_history
from sessiond.store.keys import Keys
from sessiond.store.round import Round
from sessiond.store.scripts import register

ApplyStatus = Literal["OK", "DUPLICATE", "CONFLICT", "MISSING"]
NewItem = tuple[Mapping[str, str], Sequence[str], Event, Verdict]  # fields, registry, ...
ApplyItem = tuple[Mapping[str, str], str, Verdict]  # session as read, event id, decision
Call = tuple[Any, list[str], list[Any]]  # script, keys, args

#: Seconds after a call ends during which a copy of an event that started it can still
#: arrive: INVITE retransmissions and an edge's replays (64*T1 = 32 s), a stalled worker's
#: entries reclaimed by another (claim idle 1.5 s + lease 2 s), with a margin. An ended
#: session's keys (its hash is what refuses such a copy) live at least this long.
REDELIVERY_WINDOW = 60


@dataclass(frozen=True, slots=True)
class ApplyResult:
    status: ApplyStatus
    version: int = 0
    outbox: bytes = b""


@dataclass(frozen=True, slots=True)
class CreateResult:
    created: bool
    sid: str  # the new session, or the one that already owns the dialog
    outbox: bytes = b""


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


def decode_hash(raw: Mapping[bytes, bytes]) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in raw.items()}


class Store:
    """Session store on one Redis client (redis-py asyncio, or fakeredis for the embedded
    store). The client must be created with ``decode_responses=False``."""

    def __init__(
        self,
        redis: Any,
        keys: Keys | None = None,
        *,
        worker: str = "worker",
        ttl: int = 6 * 3600,
        ended_ttl: int = 3600,
        history_maxlen: int = 200,
        stream_maxlen: int = 100_000,
    ) -> None:
        self.redis = redis
        self.keys = keys or Keys()
        self.worker = worker
        self.ttl = ttl
        self.ended_ttl = max(ended_ttl, REDELIVERY_WINDOW)
        self.history_maxlen = history_maxlen
        self.stream_maxlen = stream_maxlen
        self.scripts = register(redis)
        self.cluster = is_cluster(redis)
        #: the scripts send the commands themselves (not in a cluster: cross-slot keys)
        self.direct = not self.cluster

    # -- reads ------------------------------------------------------------------------------
    async def get(self, sid: str) -> dict[str, str] | None:
        raw = await self.redis.hgetall(self.keys.session(sid))
        return decode_hash(raw) if raw else None

    async def read(self, sid: str, event_id: str) -> tuple[dict[str, str] | None, bytes | None]:
        """The session, and the stored outbox if ``event_id`` was already applied to it
        (``b""`` once that outbox was emitted)."""
        return (await self.read_many([(sid, event_id)]))[0]

    async def lookup(self, registry_key: str) -> str | None:
        """Registry lookup. A single GET is atomic already; it needs no script."""
        value = await self.redis.get(registry_key)
        return _text(value) if value is not None else None

    async def history(self, sid: str, count: int = 100) -> list[dict[str, str]]:
        """The first ``count`` of the session's history lines, oldest first, parsed."""
        lines = await self.redis.lrange(self.keys.history(sid), 0, count - 1)
        return [parse_history(_text(line)) for line in lines]

    # -- writes -----------------------------------------------------------------------------
    async def read_many(
        self, pairs: Sequence[tuple[str, str]]
    ) -> list[tuple[dict[str, str] | None, bytes | None]]:
        """``read`` for many (sid, event id) pairs in one round trip. The markers are the
        session hash's field ``applied`` (:mod:`sessiond.store.applied`), the older ones
        fields of ``{T}:applied:<sid>`` (digest -> ``""``); one an older sessiond wrote is
        there too (event id -> ``""``, or older still the outbox itself)."""
        pipe = Round(self.redis)
        for sid, event_id in pairs:
            pipe.hgetall(self.keys.session(sid))
            pipe.hget(self.keys.applied(sid), applied_digest(event_id))
            pipe.hget(self.keys.applied(sid), event_id)
            pipe.hget(self.keys.outboxes(sid), event_id)
        raw = await pipe.execute()
        out: list[tuple[dict[str, str] | None, bytes | None]] = []
        for (_, event_id), i in zip(pairs, range(0, len(raw), 4), strict=True):
            session = decode_hash(raw[i]) if raw[i] else None
            marker = raw[i + 1] if raw[i + 1] is not None else raw[i + 2]
            if session is not None and was_applied(session, event_id):
                marker = b""
            out.append((session, None if marker is None else raw[i + 3] or marker))
        return out

    async def create(
        self, fields: Mapping[str, str], registry: Sequence[str], event: Event, decision: Verdict
    ) -> CreateResult:
        """Create session ``fields['sid']`` with its first transition already applied."""
        return (await self.create_many([(fields, registry, event, decision)]))[0]

    async def create_many(self, items: Sequence[NewItem]) -> list[CreateResult]:
        return (await self.write_many(items, []))[0]

    async def apply(
        self, session: Mapping[str, str], event_id: str, decision: Verdict
    ) -> ApplyResult:
        """Compare-and-set ``decision`` onto ``session`` (as read, at its ``version``)."""
        return (await self.apply_many([(session, event_id, decision)]))[0]

    async def apply_many(self, items: Sequence[ApplyItem]) -> list[ApplyResult]:
        """``apply`` for many sessions in one round trip (at most one item per session)."""
        return (await self.write_many([], items))[1]

    async def write_many(
        self, creates: Sequence[NewItem], applies: Sequence[ApplyItem]
    ) -> tuple[list[CreateResult], list[ApplyResult]]:
        """``create_many`` and ``apply_many`` in one round trip (distinct sessions)."""
        calls: list[Call] = []
        outboxes = []
        for fields, registry, event, decision in creates:
            sid = fields["sid"]
            view = {**fields, **decision.fields, **_ended_by(event.id, decision)}
            keys = [*self.keys.session_keys(sid), *registry]
            # _args adds version; an empty field reads as an absent one: not written
            initial = {k: v for k, v in view.items() if k != "version" and v != ""}
            args = self._args(0, event.id, decision, sid, initial)
            outbox = self._commands(view, decision.commands, keys, args)
            calls.append((self.scripts.create, keys, args))
            outboxes.append(outbox)
        for session, event_id, decision in applies:
            sid = session["sid"]
            view = {**session, **decision.fields}
            changed = {
                k: v
                for k, v in {**decision.fields, **_ended_by(event_id, decision)}.items()
                if v != "" or k in session  # emptying an absent field changes nothing
            }
            if decision.terminal:  # the call's SRTP keys are not kept after it
                changed.update(scrubbed(view))
            args = self._args(int(session["version"]), event_id, decision, sid, changed)
            keys = [*self.keys.session_keys(sid), *self.keys.registry_keys(view)]
            outbox = self._commands(view, decision.commands, keys, args)
            calls.append((self.scripts.transition, keys, args))
            outboxes.append(outbox)
        replies = await self._eval_many(calls)
        created = []
        for (fields, *_), outbox, (status, value) in zip(
            creates, outboxes[: len(creates)], replies[: len(creates)], strict=True
        ):
            if status == b"CREATED":
                created.append(CreateResult(True, fields["sid"], outbox))
            elif status == b"EXISTS":
                created.append(CreateResult(False, _text(value)))
            else:
                raise StoreError(f"create.lua returned {status!r}")
        applied = [
            _apply_result(reply, outbox)
            for reply, outbox in zip(replies[len(creates) :], outboxes[len(creates) :], strict=True)
        ]
        return created, applied

    async def _eval_many(self, calls: list[Call]) -> list[Any]:
        replies = await eval_many(self.redis, calls, cluster=self.cluster)
        for reply in replies:
            if isinstance(reply, Exception):
                raise StoreError(f"script failed: {reply}") from reply
        return replies

    def _args(
        self,
        expected: int,
        event_id: str,
        decision: Verdict,
        sid: str,
        fields: Mapping[str, str],
    ) -> list[Any]:
        """The scripts' ARGV (create.lua and transition.lua share one layout), up to the
        history lines: :meth:`_commands` adds the outbox or the ops."""
        ttl = self.ended_ttl if decision.terminal else self.ttl
        args: list[Any] = [
            expected,
            event_id,
            ttl,
            self.history_maxlen,
            b"",  # the outbox: set by _commands in a cluster
            "1" if decision.terminal else "0",
            sid,
            applied_digest(event_id),
            APPLIED_KEEP,
            len(fields) + 1,
        ]
        for name, value in fields.items():
            args += (name, value)
        args += ("version", expected + 1)
        args.append(len(decision.steps))
        args += history_lines(decision.steps, expected + 1, event_id, self.worker, time.time())
        return args

    async def unmap(self, sid: str, registry: Sequence[str]) -> int:
        return int(await self.scripts.unmap(keys=list(registry), args=[sid]))

    async def pop_timers(self, partition: int, now: float, limit: int = 256) -> int:
        keys = [self.keys.timers(partition), self.keys.events(partition)]
        return int(await self.scripts.pop_timers(keys=keys, args=[now, limit, self.stream_maxlen]))

    async def pop_all_timers(
        self, now: float, limit: int = 256, partitions: Iterable[int] | None = None
    ) -> int:
        """:meth:`pop_timers` for every partition (or those given), in one round trip."""
        script = self.scripts.pop_timers
        calls: list[Call] = [
            (script, [self.keys.timers(p), self.keys.events(p)], [now, limit, self.stream_maxlen])
            for p in (range(self.keys.partitions) if partitions is None else partitions)
        ]
        return sum(int(n) for n in await self._eval_many(calls))

    async def publish(self, partition: int, event: Event) -> bytes:
        """Append an event to its partition's stream (what the edge, media and app do)."""
        fields = encode_event(event)
        key = self.keys.events(partition)
        return bytes(await self.redis.xadd(key, fields, maxlen=self.stream_maxlen))

    # -- the outbox -------------------------------------------------------------------------
    def _commands(
        self, view: Mapping[str, str], commands: Sequence[Command], keys: list[str], args: list[Any]
    ) -> bytes:
        """Add a transition's commands to its script's ``keys`` and ``args`` (from
        :meth:`_args`): as ops the script runs (direct emission), or in a cluster as the
        outbox it keeps (returned, for the worker to emit)."""
        outbox = b""
        ops: list[Any] = []
        if not self.direct:
            outbox = self.build_outbox(view, commands)
            args[4] = outbox
        else:
            for cmd in commands:
                op = self._resolve(view, cmd)
                keys.append(op[1])
                if op[0] == "xadd":
                    ops += ("x", op[2], op[3], op[4], op[5])
                elif op[0] == "zadd":
                    ops += ("a", op[2], repr(op[3]))
                else:
                    ops += ("r", op[2])
        args += (self.stream_maxlen, len(commands) if self.direct else 0, *ops)
        return outbox

    def build_outbox(self, view: Mapping[str, str], commands: Iterable[Command]) -> bytes:
        """Resolve each command's destination now, and pack the lot."""
        ops = [self._resolve(view, c) for c in commands]
        return msgpack.packb(ops) if ops else b""

    def _resolve(self, view: Mapping[str, str], cmd: Command) -> list[Any]:
        keys = self.keys
        if cmd.target == "timer":
            sid = str(cmd.data["sid"])
            member = f"{sid}|{cmd.data['event']}|{cmd.data['epoch']}"
            zset = keys.timers(keys.partition_of(sid))
            if cmd.name == "arm":
                return ["zadd", zset, member, float(cmd.data["due"])]
            return ["zrem", zset, member]
        if cmd.target == "edge":
            stream = (
                keys.edge_commands(view["edge"]) if view.get("edge") else keys.edge_commands("any")
            )
        elif cmd.target == "media":
            node = view.get("media_node")
            stream = keys.media_commands(node) if node else keys.media_pool()
        elif cmd.target == "media-pool":
            stream = keys.media_pool()
        elif cmd.target == "app":
            stream = keys.app_events()
        elif cmd.target == "session":  # an event for another session, on its partition
            sid = str(cmd.data["sid"])
            data = entries.pack(cmd.data.get("data") or {})
            return ["xadd", keys.events(keys.partition_of(sid)), cmd.id, cmd.name, sid, data]
        else:
            raise StoreError(f"command {cmd.id} has unknown target {cmd.target!r}")
        sid = view.get("sid", "")
        return ["xadd", stream, cmd.id, cmd.name, sid, entries.pack(cmd.data)]

    def queue_emitted(self, pipe: Any, sent: Iterable[tuple[str, str]]) -> None:
        """Add to ``pipe`` (after the commands of the outboxes ``sent`` names, as (sid, event
        id), went out) the deletion of those stored outboxes: the events stay applied (a later
        copy is a DUPLICATE) and a copy re-emits nothing, since their commands went out first
        (in one round on one connection Redis runs them in order, and a replica receives them
        in that order; in a Redis Cluster, a round after theirs)."""
        by_sid: dict[str, list[str]] = {}
        for sid, event_id in sent:
            by_sid.setdefault(sid, []).append(event_id)
        for sid, event_ids in by_sid.items():
            pipe.hdel(self.keys.outboxes(sid), *event_ids)

    def queue_outboxes(self, pipe: Any, outboxes: Iterable[bytes]) -> int:
        """Add the commands of ``outboxes`` to ``pipe`` (in order); returns how many."""
        count = 0
        for outbox in outboxes:
            if not outbox:
                continue
            for op in msgpack.unpackb(outbox):
                count += 1
                if op[0] == "xadd":
                    _, stream, cid, name, sid, data = op
                    entry = entries.fields(cid, name, sid, data)
                    pipe.xadd(stream, entry, maxlen=self.stream_maxlen, approximate=True)
                elif op[0] == "zadd":
                    pipe.zadd(op[1], {op[2]: op[3]})
                elif op[0] == "zrem":
                    pipe.zrem(op[1], op[2])
        return count


def _ended_by(event_id: str, decision: Verdict) -> dict[str, str]:
    """``ended_by``: the event whose transition ended the session (so a stale copy of the
    event that started it can be told from a crash before its outbox went out)."""
    return {"ended_by": event_id} if decision.terminal else {}


def _apply_result(reply: Any, outbox: bytes) -> ApplyResult:
    status, value = reply
    if status == b"OK":
        return ApplyResult("OK", int(value), outbox)
    if status == b"DUPLICATE":
        return ApplyResult("DUPLICATE", 0, bytes(value))
    if status == b"CONFLICT":
        return ApplyResult("CONFLICT", int(value))
    if status == b"MISSING":
        return ApplyResult("MISSING")
    raise StoreError(f"transition.lua returned {status!r}")


async def delete_namespace(redis: Any, namespace: str) -> int:
    """Delete every key under ``namespace:`` (benchmarks and tests clean up with this)."""
    keys = [k async for k in redis.scan_iter(match=f"{namespace}:*", count=1000)]
    deleted = 0
    for i in range(0, len(keys), 1000):
        deleted += int(await redis.delete(*keys[i : i + 1000]))
    return deleted


async def eval_many(redis: Any, calls: list[Call], *, cluster: bool) -> list[Any]:
    """EVALSHA each (script, keys, args) call in one round (in a Redis Cluster, where
    pipelines may not carry scripts, as concurrent requests, each to the node of its slot);
    on NOSCRIPT (Redis restarted or failed over), load the scripts and run the calls that
    missed them again. Replies in order; a failed call's reply is its exception."""
    if not calls:
        return []
    replies = await _evalsha(redis, calls, cluster)
    missed = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
    if missed:
        for script in {id(calls[i][0]): calls[i][0] for i in missed}.values():
            await redis.script_load(script.script)
        again = await _evalsha(redis, [calls[i] for i in missed], cluster)
        for i, reply in zip(missed, again, strict=True):
            replies[i] = reply
    return replies


async def _evalsha(redis: Any, calls: list[Call], cluster: bool) -> list[Any]:
    if cluster:
        return list(
            await asyncio.gather(
                *(redis.evalsha(s.sha, len(k), *k, *a) for s, k, a in calls),
                return_exceptions=True,
            )
        )
    pipe = Round(redis)
    for script, keys, args in calls:
        pipe.evalsha(script.sha, len(keys), *keys, *args)
    return list(await pipe.execute(raise_on_error=False))
