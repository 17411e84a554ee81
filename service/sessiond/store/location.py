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
:func:`lookup_routes` reads, in the same round trip, which edges heartbeat
(``processes:edge``, scored with each heartbeat's time) and :func:`fail_over` sends a UDP
binding through a live edge instead (a datagram to its ``source`` reaches the phone from
any edge), and passes over a TCP/TLS binding whose connection died with its edge (the
phone re-registers on a new connection).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from sessiond.store.keys import HEARTBEAT_TTL, Keys
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


async def lookup_routes(
    redis: Any, keys: Keys, aors: Sequence[str], now: float
) -> tuple[list[list[Binding]], list[str]]:
    """The live bindings of each AOR (``user@domain``), highest q first, and the names of
    the edges whose heartbeat is recent (scored in ``processes:edge`` within
    :data:`HEARTBEAT_TTL` seconds of ``now``), sorted: one round trip for a worker's batch
    of new calls to registered users."""
    if not aors:
        return [], []
    pipe = redis.pipeline(transaction=False)
    for aor in aors:
        user, _, domain = aor.rpartition("@")
        pipe.hgetall(keys.location(user, domain))
    pipe.zrangebyscore(keys.processes("edge"), now - HEARTBEAT_TTL, "+inf")
    *found, edges = await pipe.execute()
    names = sorted({e.decode() if isinstance(e, bytes) else str(e) for e in edges})
    return [live(raw.values(), now) for raw in found], names


@dataclass(frozen=True, slots=True)
class FailedOver:
    """The bindings a call can use once dead edges are accounted for (:func:`fail_over`)."""

    bindings: list[Binding]
    moved: list[tuple[Binding, str]] = field(default_factory=list)  # (binding, live edge)
    skipped: list[Binding] = field(default_factory=list)  # a TCP/TLS flow on a dead edge


def fail_over(bindings: Sequence[Binding], live_edges: Sequence[str]) -> FailedOver:
    """``bindings`` with each one whose edge is not in ``live_edges`` sent through a live
    edge when it is over UDP (one picked by the contact's hash, so a contact's calls all
    take the same one), or dropped when it is a connection (TCP, TLS...: it died with its
    edge). With no live edge known at all (the store just came back, every heartbeat
    lapsed) the bindings are left as they are: absence of evidence is no evidence."""
    if not live_edges:
        return FailedOver(list(bindings))
    alive = set(live_edges)
    kept: list[Binding] = []
    out = FailedOver(kept)
    for binding in bindings:
        if binding.edge in alive:
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
