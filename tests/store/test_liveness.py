"""Judging heartbeats only in steady contact with the store (issue 18, F5): the rule with
an injected clock, and the media-loss detection on a real Redis (and the embedded store)
holding back while the contact is not steady."""

from __future__ import annotations

import time
from typing import Any

import pytest

from sessiond.core.ids import new_sid
from sessiond.media.lost import INCARNATION, LegRegistry
from sessiond.store import Keys
from sessiond.store.liveness import StoreContact, run_id
from sessiond.store.store import decode_event


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0
        self.step = 0.0  # added at every reading: a store that answers this slowly

    def __call__(self) -> float:
        self.t += self.step
        return self.t


def steady_after(contact: StoreContact, clock: Clock, seconds: float, run: str = "run-1") -> bool:
    """Heartbeat rounds every second for ``seconds`` (on Redis run ``run``); steady then?"""
    end = clock.t + seconds
    while clock.t < end:
        clock.t += 1.0
        contact.reached(clock.t - 0.01, run)
    return contact.steady()


def test_grace_and_gap_follow_the_heartbeat_ttl() -> None:
    contact = StoreContact.for_heartbeats(5)
    assert contact.grace >= 5 + 5  # the TTL and the longest retry backoff
    assert contact.max_gap < 5 - 1  # shorter than a lapse of a heartbeat written every second


def test_a_fresh_process_waits_the_grace_period() -> None:
    clock = Clock()
    contact = StoreContact(grace=11, max_gap=2.5, clock=clock)
    assert not contact.steady()
    assert not steady_after(contact, clock, 10)
    assert steady_after(contact, clock, 1)


@pytest.mark.parametrize("trouble", ["failure", "slow round trip", "gap", "restart"])
def test_trouble_with_the_store_starts_the_grace_period_again(trouble: str) -> None:
    clock = Clock()
    contact = StoreContact(grace=11, max_gap=2.5, clock=clock)
    assert steady_after(contact, clock, 12)
    if trouble == "failure":
        contact.failed()
    elif trouble == "slow round trip":
        started = clock.t
        clock.t += 5  # a store stopped for 5 s answers late
        contact.reached(started, "run-1")
    elif trouble == "gap":
        clock.t += 5  # no round trip at all for 5 s (refused, or stuck in retries)
        contact.reached(clock.t - 0.01, "run-1")
    else:
        contact.reached(clock.t, "run-2")  # Redis restarted between two rounds
    assert not contact.steady()
    run = "run-2" if trouble == "restart" else "run-1"
    assert not steady_after(contact, clock, 10, run)
    assert steady_after(contact, clock, 1, run)


def test_same_run_and_prompt_rounds_keep_the_contact_steady() -> None:
    clock = Clock()
    contact = StoreContact(grace=11, max_gap=2.5, clock=clock)
    assert steady_after(contact, clock, 12)
    for _ in range(30):
        clock.t += 2.0  # a busy machine: rounds 2 s apart, still under the gap
        assert contact.reached(clock.t - 0.5, "run-1")


def test_run_id_from_info() -> None:
    assert run_id({b"run_id": b"abc"}) == "abc"
    assert run_id({"run_id": "abc", "redis_version": "7.0"}) == "abc"
    assert run_id(None) == run_id({}) == ""


async def a_dead_node(redis: Any, keys: Keys) -> str:
    """Node ``gone`` listed with one leg, in the zset, its heartbeat expired."""
    sid = new_sid("liveness@test")
    await redis.hset(keys.media_legs("gone"), mapping={f"{sid}.m": f"{sid} c/0", INCARNATION: "i"})
    await redis.zadd(keys.processes("media"), {"gone": time.time() - 30})
    return sid


async def lost_events(redis: Any, keys: Keys) -> list[str]:
    found = []
    for p in range(keys.partitions):
        found += [decode_event(f).id for _, f in await redis.xrange(keys.events(p))]
    return found


@pytest.mark.redis
async def test_no_media_node_is_judged_before_the_contact_is_steady(
    backend: tuple[str, Any, Keys],
) -> None:
    _, redis, keys = backend
    await a_dead_node(redis, keys)
    registry = LegRegistry(redis, keys)
    clock = Clock()
    contact = StoreContact(grace=11, max_gap=2.5, clock=clock)
    assert await registry.find_lost_nodes("w1", contact) == 0
    assert await lost_events(redis, keys) == []
    assert await redis.hlen(keys.media_legs("gone")) == 2  # nothing dropped
    assert steady_after(contact, clock, 12)
    clock.step = 3.0  # now the store answers each read 3 s late: stalled while we look
    assert await registry.find_lost_nodes("w1", contact) == 0
    assert await lost_events(redis, keys) == []
    clock.step = 0.0
    assert steady_after(contact, clock, 12)
    assert await registry.find_lost_nodes("w1", contact) == 1  # silent while the store was up
    assert len(await lost_events(redis, keys)) == 1
    assert not await redis.exists(keys.media_legs("gone"))
