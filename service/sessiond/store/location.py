"""The location service: the bindings of the AORs this deployment is the registrar of.

One hash per AOR, ``location:<user>@<domain>``: contact URI -> :class:`Binding` as JSON
(readable with ``redis-cli HGETALL``). ``lua/register.lua`` applies a REGISTER to it
atomically (CSeq order, expiry, limit); a binding records which edge received the REGISTER,
over which transport and from which address, so a call to the AOR can go out through the
edge that holds the phone's connection (its ``flow``).

A lookup by AOR is one ``HGETALL``: :func:`lookup` drops bindings whose ``expires_at`` has
passed (the script drops them from Redis at the next REGISTER; the key's TTL is that of
its longest binding, so an AOR nobody refreshes disappears whole).

A binding's edge may have died (kill -9, host lost) while the phone is still registered:
:func:`lookup_routes` reads, in the same round trip, which of the edges it knows have their
heartbeat key (``process:edge:<name>``, a TTL kept by Redis' clock: no host clock is
compared) and the names listed in ``processes:edge`` (for the next lookup), and
:func:`fail_over` sends a UDP binding on a silent edge through a live one instead (a datagram
to its ``source`` reaches the phone from any edge), and passes over a TCP/TLS binding whose
connection died with its edge (the phone re-registers on a new connection).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from sessiond.store.keys import Keys
from sessiond.store.scripts import script


class Binding(msgspec.Struct, frozen=True, omit_defaults=True, kw_only=True):
    """One contact of an AOR, as stored (the JSON fields have these names)."""

    contact: str  # the Contact URI as registered
    expires_at: float  # unix seconds
    call_id: str
    cseq: int
    edge: str  # the edge that received the REGISTER (it holds the flow)
    transport: str  # UDP, TCP, TLS...
    source: str  # host:port the REGISTER came from (the NAT's address for a NATed phone)
    registered_at: float  # unix seconds of this REGISTER
    q: float | None = None
    flow: str = ""  # the connection id the transport gave the REGISTER, if any
    path: list[str] = []  # Path header values (RFC 3327), in order
    instance: str = ""  # +sip.instance (RFC 5626)
    reg_id: str = ""
    user_agent: str = ""

    def expires_in(self, now: float) -> int:
        return max(0, int(self.expires_at - now + 0.5))

    @property
    def destination(self) -> str:
        """``TRANSPORT host:port`` where requests to this contact go: the address its
        REGISTER came from (a NAT's binding, or the phone's own TCP/TLS connection)."""
        return f"{self.transport.upper()} {self.source}"


_ENCODE = msgspec.json.Encoder()
_DECODE = msgspec.json.Decoder(Binding)


def encode(binding: Binding) -> bytes:
    return _ENCODE.encode(binding)


def decode(raw: bytes | str) -> Binding | None:
    """A stored binding, or None when it cannot be read (it is then ignored)."""
    try:
        return _DECODE.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


@dataclass(frozen=True, slots=True)
class Applied:
    """What ``register.lua`` answered: ``status`` OK, OUT_OF_ORDER or TOO_MANY; for OK the
    bindings now held and how many were created, removed and found expired."""

    status: str
    bindings: list[Binding]
    created: int = 0
    removed: int = 0
    expired: int = 0


class Location:
    """The registrar's calls to Redis."""

    def __init__(self, redis: Any, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._register = script(redis, "register")

    async def apply(
        self,
        user: str,
        domain: str,
        *,
        now: float,
        call_id: str,
        cseq: int,
        wildcard: bool,
        changes: Sequence[tuple[str, int, Binding | None]],
        most: int,
    ) -> Applied:
        """Apply a REGISTER: ``changes`` are (contact, seconds, binding), seconds 0 to
        remove the contact (its binding is then not needed)."""
        args: list[Any] = [repr(now), call_id, cseq, "*" if wildcard else "", most]
        for contact, seconds, binding in changes:
            args += [contact, seconds, encode(binding) if binding is not None else b""]
        reply = await self._register(keys=[self.keys.location(user, domain)], args=args)
        return read_reply(reply)

    async def lookup(self, user: str, domain: str, now: float) -> list[Binding]:
        """The live bindings of ``sip:user@domain``, highest q first (one round trip)."""
        raw = await self.redis.hgetall(self.keys.location(user, domain))
        return live(raw.values(), now)


LISTED_WITHIN = 3600.0  # seconds: edges heard from since then are judged by a lookup


@dataclass(frozen=True, slots=True)
class Edges:
    """What a lookup learnt of the edges: ``judged`` (the names whose heartbeat key was
    read), ``live`` (those of them that have it, sorted), ``listed`` (the names in
    ``processes:edge`` lately: the names to judge next time)."""

    judged: frozenset[str] = frozenset()
    live: tuple[str, ...] = ()
    listed: frozenset[str] = frozenset()


async def lookup_routes(
    redis: Any, keys: Keys, aors: Sequence[str], now: float, edges: Sequence[str] = ()
) -> tuple[list[list[Binding]], Edges]:
    """The live bindings of each AOR (``user@domain``), highest q first, and what
    :func:`judge_edges` says of ``edges`` (the names a worker knows from its last lookup):
    one round trip for a worker's batch of new calls to registered users."""
    if not aors:
        return [], Edges()
    names = sorted(set(edges))
    pipe = redis.pipeline(transaction=False)
    for aor in aors:
        user, _, domain = aor.rpartition("@")
        pipe.hgetall(keys.location(user, domain))
    _queue_judging(pipe, keys, names, now)
    replies = await pipe.execute()
    found = replies[: len(aors)]
    return [live(raw.values(), now) for raw in found], _judged(names, replies[len(aors) :])


async def judge_edges(redis: Any, keys: Keys, names: Sequence[str], now: float) -> Edges:
    """Whether each edge of ``names`` has its heartbeat key, and the edges listed in
    ``processes:edge`` that heartbeat within the last :data:`LISTED_WITHIN` seconds (one
    round trip)."""
    names = sorted(set(names))
    pipe = redis.pipeline(transaction=False)
    _queue_judging(pipe, keys, names, now)
    return _judged(names, await pipe.execute())


def _queue_judging(pipe: Any, keys: Keys, names: Sequence[str], now: float) -> None:
    for name in names:
        pipe.exists(keys.heartbeat("edge", name))
    # an edge killed stays in the list: the ones heard from in the last hour are enough
    # (a wide window: the hosts' clocks need not agree to the second)
    pipe.zrangebyscore(keys.processes("edge"), now - LISTED_WITHIN, "+inf")


def _judged(names: Sequence[str], replies: Sequence[Any]) -> Edges:
    *beats, listed = replies
    return Edges(
        judged=frozenset(names),
        live=tuple(n for n, beat in zip(names, beats, strict=True) if beat),
        listed=frozenset(e.decode() if isinstance(e, bytes) else str(e) for e in listed),
    )


@dataclass(frozen=True, slots=True)
class FailedOver:
    """The bindings a call can use once dead edges are accounted for (:func:`fail_over`)."""

    bindings: list[Binding]
    moved: list[tuple[Binding, str]] = field(default_factory=list)  # (binding, live edge)
    skipped: list[Binding] = field(default_factory=list)  # a TCP/TLS flow on a dead edge


def fail_over(bindings: Sequence[Binding], edges: Edges) -> FailedOver:
    """``bindings`` with each one whose edge was judged silent sent through a live edge
    when it is over UDP (one picked by the contact's hash, so a contact's calls all take
    the same one), or dropped when it is a connection (TCP, TLS...: it died with its edge).
    A binding on an edge not judged is left as it is, and so is every binding when no edge
    at all is live (the store just came back, every heartbeat lapsed at once): absence of
    evidence is no evidence."""
    live_edges = edges.live
    if not live_edges:
        return FailedOver(list(bindings))
    kept: list[Binding] = []
    out = FailedOver(kept)
    for binding in bindings:
        if binding.edge in live_edges or binding.edge not in edges.judged:
            kept.append(binding)
        elif binding.transport.upper() == "UDP":
            edge = live_edges[zlib.crc32(binding.contact.encode()) % len(live_edges)]
            kept.append(msgspec.structs.replace(binding, edge=edge, flow=""))
            out.moved.append((binding, edge))
        else:
            out.skipped.append(binding)
    return out


def live(values: Any, now: float) -> list[Binding]:
    found = [b for b in map(decode, values) if b is not None and b.expires_at > now]
    return sorted(found, key=lambda b: -(1.0 if b.q is None else b.q))


def read_reply(reply: list[Any]) -> Applied:
    status = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
    if status != "OK":
        return Applied(status, [])
    bindings = [b for b in map(decode, reply[4:]) if b is not None]
    return Applied(status, bindings, int(reply[1]), int(reply[2]), int(reply[3]))


async def all_locations(redis: Any, keys: Keys, now: float) -> list[tuple[str, Binding]]:
    """Every live binding of every AOR (an operator's scan: not for hot paths)."""
    rows: list[tuple[str, Binding]] = []
    prefix = f"{keys.ns}:location:"
    async for key in redis.scan_iter(match=f"{prefix}*", count=1000):
        name = key.decode() if isinstance(key, bytes) else str(key)
        for binding in live((await redis.hgetall(key)).values(), now):
            rows.append((f"sip:{name.removeprefix(prefix)}", binding))
    return rows


async def census(redis: Any, keys: Keys) -> tuple[int, int]:
    """(AORs, bindings) in the location store: a SCAN with one HLEN per key (bindings past
    their expiry that no REGISTER has dropped yet are counted until their key's TTL)."""
    aors = bindings = 0
    async for key in redis.scan_iter(match=f"{keys.ns}:location:*", count=1000):
        aors += 1
        bindings += int(await redis.hlen(key))
    return aors, bindings
