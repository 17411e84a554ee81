"""register.lua on a real Redis and the embedded store: expiry, several contacts, q order,
``*``, CSeq order per Call-ID, the limit, and a re-REGISTER moving a binding to another edge."""

from __future__ import annotations

from typing import Any

import pytest

from sessiond.store import Keys
from sessiond.store.location import (
    LISTED_WITHIN,
    Applied,
    Binding,
    Edges,
    Location,
    fail_over,
    judge_edges,
    lookup_routes,
)

NOW = 1_700_000_000.0


def binding(contact: str, seconds: int, *, now: float = NOW, cseq: int = 1, **kw: Any) -> Binding:
    fields: dict[str, Any] = {
        "call_id": "c1",
        "edge": "edge-a",
        "transport": "UDP",
        "source": "10.0.0.5:5070",
        **kw,
    }
    return Binding(
        contact=contact,
        expires_at=now + seconds,
        cseq=cseq,
        registered_at=now,
        **fields,
    )


async def apply(
    loc: Location,
    *bindings: tuple[str, int, Binding | None],
    now: float = NOW,
    cseq: int = 1,
    call_id: str = "c1",
    wildcard: bool = False,
    most: int = 10,
) -> Applied:
    return await loc.apply(
        "alice",
        "example.com",
        now=now,
        call_id=call_id,
        cseq=cseq,
        wildcard=wildcard,
        changes=list(bindings),
        most=most,
    )


@pytest.fixture
def loc(backend: tuple[str, Any, Keys]) -> Location:
    _, client, keys = backend
    return Location(client, keys)


async def test_several_contacts_q_order_and_key_ttl(loc: Location) -> None:
    a = binding("sip:alice@10.0.0.5", 60, q=0.2)
    b = binding("sip:alice@10.0.0.6", 300, q=0.9)
    c = binding("sip:alice@10.0.0.7", 120)
    done = await apply(loc, (a.contact, 60, a), (b.contact, 300, b), (c.contact, 120, c))
    assert done.status == "OK"
    assert done.created == 3
    found = await loc.lookup("alice", "EXAMPLE.com", NOW)
    assert [x.contact for x in found] == [c.contact, b.contact, a.contact]  # no q: 1.0
    ttl = await loc.redis.ttl(loc.keys.location("alice", "example.com"))
    assert 300 - 60 < ttl <= 301  # the longest binding's


async def test_expired_bindings_go_on_the_next_register_and_from_lookups(loc: Location) -> None:
    a = binding("sip:alice@10.0.0.5", 60)
    b = binding("sip:alice@10.0.0.6", 600)
    await apply(loc, (a.contact, 60, a), (b.contact, 600, b))
    later = NOW + 61
    assert [x.contact for x in await loc.lookup("alice", "example.com", later)] == [b.contact]
    c = binding("sip:alice@10.0.0.7", 60, now=later, cseq=2)
    done = await apply(loc, (c.contact, 60, c), now=later, cseq=2)
    assert done.expired == 1
    assert done.created == 1
    assert sorted(x.contact for x in done.bindings) == [b.contact, c.contact]
    raw = await loc.redis.hkeys(loc.keys.location("alice", "example.com"))
    assert sorted(k.decode() for k in raw) == [b.contact, c.contact]
    # all gone: the key with them
    done = await apply(loc, now=NOW + 601, cseq=3)
    assert done.expired == 2
    assert done.bindings == []
    assert not await loc.redis.exists(loc.keys.location("alice", "example.com"))


async def test_refresh_removal_and_query(loc: Location) -> None:
    a = binding("sip:alice@10.0.0.5", 60)
    await apply(loc, (a.contact, 60, a))
    refreshed = binding(a.contact, 600, cseq=2)
    done = await apply(loc, (a.contact, 600, refreshed), cseq=2)
    assert done.created == 0
    assert done.bindings[0].expires_at == NOW + 600
    query = await apply(loc, cseq=3)
    assert [x.contact for x in query.bindings] == [a.contact]
    done = await apply(loc, (a.contact, 0, None), cseq=4)
    assert done.removed == 1
    assert done.bindings == []
    assert not await loc.redis.exists(loc.keys.location("alice", "example.com"))


async def test_cseq_order_per_call_id(loc: Location) -> None:
    a = binding("sip:alice@10.0.0.5", 60, cseq=5)
    await apply(loc, (a.contact, 60, a), cseq=5)
    for old in (5, 4):  # equal or older: refused, nothing changes
        stale = binding(a.contact, 600, cseq=old)
        done = await apply(loc, (a.contact, 600, stale), cseq=old)
        assert done.status == "OUT_OF_ORDER"
    assert (await loc.lookup("alice", "example.com", NOW))[0].expires_at == NOW + 60
    assert (await apply(loc, (a.contact, 0, None), cseq=4)).status == "OUT_OF_ORDER"
    assert (await apply(loc, wildcard=True, cseq=5)).status == "OUT_OF_ORDER"
    # another Call-ID (the phone rebooted) may update it whatever its CSeq
    other = binding(a.contact, 600, cseq=1, call_id="c2")
    done = await apply(loc, (a.contact, 600, other), cseq=1, call_id="c2")
    assert done.status == "OK"
    assert done.bindings[0].call_id == "c2"


async def test_wildcard_removes_every_binding(loc: Location) -> None:
    a, b = binding("sip:alice@10.0.0.5", 60), binding("sip:alice@10.0.0.6", 60)
    await apply(loc, (a.contact, 60, a), (b.contact, 60, b))
    done = await apply(loc, wildcard=True, cseq=2)
    assert done.status == "OK"
    assert done.removed == 2
    assert done.bindings == []
    assert not await loc.redis.exists(loc.keys.location("alice", "example.com"))


async def test_limit_on_bindings(loc: Location) -> None:
    a, b = binding("sip:alice@10.0.0.5", 60), binding("sip:alice@10.0.0.6", 60)
    await apply(loc, (a.contact, 60, a), (b.contact, 60, b), most=2)
    c = binding("sip:alice@10.0.0.7", 60, cseq=2)
    done = await apply(loc, (c.contact, 60, c), cseq=2, most=2)
    assert done.status == "TOO_MANY"
    # replacing one within the limit is fine
    done = await apply(loc, (a.contact, 0, None), (c.contact, 60, c), cseq=3, most=2)
    assert done.status == "OK"
    assert sorted(x.contact for x in done.bindings) == [b.contact, c.contact]


async def test_a_register_through_another_edge_moves_the_flow(loc: Location) -> None:
    a = binding("sip:alice@10.0.0.5", 60, transport="TCP", flow="conn-1")
    await apply(loc, (a.contact, 60, a))
    moved = binding(
        a.contact, 60, cseq=2, edge="edge-b", transport="TCP", source="10.0.0.5:40001", flow="c9"
    )
    await apply(loc, (a.contact, 60, moved), cseq=2)
    (found,) = await loc.lookup("alice", "example.com", NOW)
    assert (found.edge, found.source, found.flow) == ("edge-b", "10.0.0.5:40001", "c9")


async def test_an_unreadable_binding_is_dropped_not_kept(loc: Location) -> None:
    key = loc.keys.location("alice", "example.com")
    await loc.redis.hset(key, "sip:alice@10.0.0.9", "not json")
    a = binding("sip:alice@10.0.0.5", 60)
    done = await apply(loc, (a.contact, 60, a))
    assert done.status == "OK"
    assert done.expired == 1
    assert [k.decode() for k in await loc.redis.hkeys(key)] == [a.contact]


async def test_lookup_routes_judges_the_known_edges_by_their_heartbeat_keys(
    loc: Location,
) -> None:
    """One round trip: each AOR's live bindings, whether each edge named has its heartbeat
    key (edge-a's lapsed: it has none), and the edges listed within the last hour."""
    await apply(loc, ("sip:a@h", 60, binding("sip:a@h", 60)))
    await loc.redis.set(loc.keys.heartbeat("edge", "edge-b"), "1", ex=5)
    listed = {"edge-a": NOW - 10, "edge-b": NOW - 1, "edge-gone": NOW - 2 * LISTED_WITHIN}
    await loc.redis.zadd(loc.keys.processes("edge"), listed)
    found, edges = await lookup_routes(
        loc.redis, loc.keys, ["alice@example.com", "x@y"], NOW, ["edge-b", "edge-a"]
    )
    assert [[b.contact for b in f] for f in found] == [["sip:a@h"], []]
    assert edges == Edges(
        judged=frozenset({"edge-a", "edge-b"}),
        live=("edge-b",),
        listed=frozenset({"edge-a", "edge-b"}),
    )
    assert await judge_edges(loc.redis, loc.keys, ["edge-gone"], NOW) == Edges(
        frozenset({"edge-gone"}), (), frozenset({"edge-a", "edge-b"})
    )
    assert await lookup_routes(loc.redis, loc.keys, [], NOW) == ([], Edges())


def judged(live: tuple[str, ...], dead: tuple[str, ...] = ()) -> Edges:
    return Edges(judged=frozenset(live + dead), live=live)


def test_fail_over_moves_udp_bindings_to_a_live_edge_and_skips_dead_connections() -> None:
    udp = binding("sip:a@10.0.0.5", 60, edge="edge-a", flow="u1")
    tcp = binding("sip:a@10.0.0.6;transport=tcp", 60, edge="edge-a", transport="TCP")
    tls = binding("sip:a@10.0.0.7;transport=tls", 60, edge="edge-a", transport="TLS")
    alive = binding("sip:a@10.0.0.8;transport=tcp", 60, edge="edge-b", transport="TCP")
    unknown = binding("sip:a@10.0.0.9;transport=tcp", 60, edge="edge-new", transport="TCP")
    edges = judged(("edge-b", "edge-c"), ("edge-a",))
    done = fail_over([udp, tcp, tls, alive, unknown], edges)
    moved = done.bindings[0]
    assert moved.edge in ("edge-b", "edge-c")
    assert moved.flow == ""
    assert (moved.contact, moved.source, moved.transport) == (udp.contact, udp.source, "UDP")
    assert done.bindings[1:] == [alive, unknown]  # an edge not judged: left as it is
    assert done.moved == [(udp, moved.edge)]
    assert done.skipped == [tcp, tls]
    # the same contact always takes the same live edge
    assert fail_over([udp], edges).bindings[0].edge == moved.edge


def test_fail_over_leaves_everything_when_no_edge_is_known_alive() -> None:
    """After a store outage every heartbeat lapsed at once: nothing is moved or dropped."""
    tcp = binding("sip:a@10.0.0.6;transport=tcp", 60, edge="edge-a", transport="TCP")
    udp = binding("sip:a@10.0.0.5", 60, edge="edge-a")
    done = fail_over([tcp, udp], judged((), ("edge-a", "edge-b")))
    assert (done.bindings, done.moved, done.skipped) == ([tcp, udp], [], [])
    assert fail_over([udp], judged(("edge-a",))).bindings == [udp]
