"""Admission at the edge, sans-I/O: calls held per source, media capacity from the media nodes'
reports, digest-failure lockout (live checks: tests/hostile/test_admission_live.py)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from sessiond.edge.access import AccessPolicy, load_users
from sessiond.edge.admission import Admission, AuthThrottle, MediaCapacity, SourceCalls
from sessiond.edge.process import Edge
from sessiond.edge.transport import ListenSpec
from sessiond.sip.digest import DigestClient
from sessiond.sip.message import SipRequest, make_response, parse_message
from sessiond.store import Keys
from sessiond.store.client import connect
from sessiond.store.store import delete_namespace


def test_calls_are_counted_per_source_and_released_once() -> None:
    calls = SourceCalls()
    calls.admit(("c1", "t"), "10.0.0.1", 0.0)
    calls.admit(("c1", "t"), "10.0.0.1", 0.5)  # the same call again: still one
    calls.admit(("c2", "t"), "10.0.0.1", 1.0)
    calls.admit(("c3", "t"), "10.0.0.2", 1.0)
    assert (calls.held("10.0.0.1"), calls.held("10.0.0.2"), len(calls)) == (2, 1, 3)
    assert calls.release(("c1", "t"))
    assert not calls.release(("c1", "t"))  # a second end (487 then BYE...) releases nothing
    assert not calls.release(("nope", "t"))
    assert calls.release(("c2", "t"))
    assert calls.release(("c3", "t"))
    assert (len(calls), calls.sources, calls.held("10.0.0.1")) == (0, 0, 0)


def test_stale_candidates_are_the_old_ones_and_a_check_defers_them() -> None:
    calls = SourceCalls()
    calls.admit(("old", "t"), "a", 0.0)
    calls.admit(("new", "t"), "a", 50.0)
    assert calls.stale(60.0, 42.0) == [("old", "t")]
    calls.checked(("old", "t"), 60.0)  # its session exists: not a candidate for 42 s
    assert calls.stale(61.0, 42.0) == []
    assert calls.stale(103.0, 42.0) == [("new", "t"), ("old", "t")]


def test_limit_per_source_fixed_or_derived_from_media_capacity() -> None:
    fixed = Admission(3)
    for n in range(3):
        assert fixed.check("s") is None
        fixed.admit((f"c{n}", "t"), "s", 0.0)
    shed = fixed.check("s")
    assert shed is not None
    assert shed.why == "source-calls"
    assert shed.retry_after >= 1
    assert fixed.check("other") is None  # another source is not affected
    fixed.release(("c0", "t"))
    assert fixed.check("s") is None

    auto = Admission()
    assert auto.limit() == 250  # no media node reports yet
    auto.media.observe({"m1": "40 40 1"}, 0.0)
    assert auto.limit() == 14  # a third of 40 legs
    auto.media.observe({"m1": "40 40 2", "m2": "1000 1000 1"}, 1.0)
    assert auto.limit() == 347
    assert Admission(0).limit() == 0


def test_the_derived_share_holds_while_a_node_is_away() -> None:
    auto = Admission()
    auto.media.observe({"m1": "100 100 1", "m2": "100 100 1"}, 0.0)
    assert auto.limit() == 67
    auto.media.observe({"m1": "100 100 2", "m2": "100 100 1"}, 10.0)  # m2 stopped beating
    assert auto.media.capacity == 100
    assert auto.limit() == 67  # a node away for a moment shrinks nobody's share
    auto.media.observe({"m1": "100 100 3"}, 400.0)  # gone for longer than peak_hold
    assert auto.limit() == 34
    unlimited = Admission(0, reserve=0)
    for n in range(1000):
        unlimited.admit((f"c{n}", "t"), "s", 0.0)
    assert unlimited.check("s") is None


def test_media_reports_that_stop_changing_are_from_a_dead_node() -> None:
    media = MediaCapacity(stale_after=5.0)
    media.observe({"m1": "30 40 1", "m2": "10 40 7", "bad": "x y"}, 0.0)
    assert (media.capacity, media.free) == (80, 40)
    media.observe({"m1": "30 40 2", "m2": "10 40 7"}, 3.0)
    assert media.capacity == 80  # m2 unchanged for 3 s: still live
    media.observe({"m1": "30 40 8", "m2": "10 40 7"}, 6.0)
    assert (media.capacity, media.free) == (40, 30)  # m2's beat stopped 6 s ago
    media.observe({}, 7.0)
    assert not media.known


def test_media_capacity_sheds_new_calls_near_the_reserve() -> None:
    adm = Admission(reserve=2)
    adm.media.observe({"m1": "6 40 1"}, 0.0)
    admitted = 0
    for n in range(10):  # no new report: the edge counts what it admitted since
        if adm.check(f"10.0.0.{n}") is None:
            adm.admit((f"c{n}", "t"), f"10.0.0.{n}", 0.0)
            admitted += 1
    assert admitted == 4
    shed = adm.check("10.0.1.1")
    assert shed is not None
    assert shed.why == "media-capacity"
    adm.media.observe({"m1": "20 40 2"}, 1.0)  # legs came free
    assert adm.check("10.0.1.1") is None
    assert Admission().media_reserve() == 2
    big = Admission()
    big.media.observe({"m1": "1000 1000 1"}, 0.0)
    assert big.media_reserve() == 20


def test_a_call_released_before_the_reports_show_it_gives_its_leg_back() -> None:
    """A call counts against the reported free legs from its admission until the second
    report after it (the first may have been written before its leg was taken); released
    before that, it no longer counts; released after, the reports give its leg back, not
    the release (no double count). INVITE + CANCEL pairs cannot use up the estimate."""
    adm = Admission(max_per_source=0, reserve=2)
    adm.media.observe({"m1": "10 10 1"}, 0.0)
    for n in range(100):  # one source: INVITE, CANCEL, INVITE, CANCEL...
        assert adm.check("10.0.0.1") is None
        adm.admit((f"c{n}", "t"), "10.0.0.1", 0.0)
        assert adm.release((f"c{n}", "t"))
    assert adm.media.free == 10
    adm.admit(("a", "t"), "10.0.0.2", 0.0)
    adm.admit(("b", "t"), "10.0.0.2", 0.0)
    assert adm.media.free == 8
    adm.media.observe({"m1": "10 10 2"}, 1.0)  # written before their legs were taken
    assert adm.media.free == 8
    adm.release(("a", "t"))  # before the report that shows it
    assert adm.media.free == 9
    adm.admit(("c", "t"), "10.0.0.2", 1.0)
    adm.media.observe({"m1": "8 10 3"}, 2.0)  # b and c have their legs
    assert adm.media.free == 7  # c may still be missing from it
    adm.media.observe({"m1": "8 10 4"}, 3.0)
    assert adm.media.free == 8
    adm.release(("b", "t"))  # the report shows its leg: the next one gives it back
    adm.release(("b", "t"))
    assert adm.media.free == 8
    adm.media.observe({"m1": "9 10 5"}, 4.0)
    assert adm.media.free == 9


def test_auth_throttle_locks_out_after_k_failures_in_the_window() -> None:
    throttle = AuthThrottle(max_failures=3, window=10.0, lockout=5.0)
    assert not throttle.failed("a", 0.0)
    assert not throttle.failed("a", 11.0)  # the first one left the window
    assert not throttle.failed("a", 12.0)
    assert throttle.locked("a", 12.0) == 0.0
    assert throttle.failed("a", 13.0)
    assert throttle.locked("a", 14.0) == pytest.approx(4.0)
    assert throttle.locked("b", 14.0) == 0.0
    assert throttle.locked("a", 18.0) == 0.0  # the lockout is over
    with pytest.raises(ValueError, match="max_failures"):
        AuthThrottle(max_failures=0)


def test_auth_throttle_memory_is_bounded() -> None:
    throttle = AuthThrottle(max_failures=1, window=10.0, lockout=100.0, max_sources=50)
    for n in range(500):
        throttle.failed(f"10.0.{n // 256}.{n % 256}", float(n) / 100)
    assert len(throttle) <= 100


INVITE = (
    b"INVITE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-a\r\n"
    b"From: <sip:alice@127.0.0.1>;tag=a\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: acc@h\r\n"
    b"CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
)


def test_policy_locks_out_a_guessing_source_even_for_the_right_password(tmp_path: Path) -> None:
    users = tmp_path / "users"
    users.write_text("alice:secret\n")
    policy = AccessPolicy(
        users=load_users(users, "sessiond", "MD5"),
        throttle=AuthThrottle(max_failures=3, window=60.0, lockout=30.0),
    )
    invite = parse_message(INVITE)
    assert isinstance(invite, SipRequest)

    def answer(password: str, now: float) -> SipRequest:
        challenge = policy.check(invite, "192.0.2.1", now)
        assert challenge is not None
        assert challenge.status == 401
        resp = make_response(invite, 401, headers=challenge.headers)
        value = DigestClient("alice", password).answer(resp, "INVITE", "sip:bob@127.0.0.1")[1]
        return invite.with_header("Authorization", value)

    right = answer("secret", 100.0)
    for _ in range(3):
        refused = policy.check(answer("guess", 100.0), "192.0.2.1", 100.0)
        assert refused is not None
        assert refused.status == 403
    locked = policy.check(right, "192.0.2.1", 101.0)
    assert locked is not None
    assert locked.status == 403
    assert "too many" in locked.reason.lower()
    assert policy.check(right, "192.0.2.2", 101.0) is None  # another source is not locked
    assert policy.check(right, "192.0.2.1", 131.0) is None  # the lockout is over


@pytest.mark.redis
async def test_edge_heartbeat_reads_media_capacity_and_drops_calls_whose_session_is_gone(
    redis_url: str,
) -> None:
    """The edge's heartbeat against a real Redis: the media nodes' reports become the
    capacity; a call held longer than 64*T1 + 10 s whose ``initial:`` registry entry is gone
    is released, one whose entry exists is kept (and looked at again only later)."""
    client: Any = connect(redis_url)
    keys = Keys(f"adm{uuid.uuid4().hex[:8]}")
    await delete_namespace(client, keys.ns)
    edge = Edge(client, keys, "adm", [ListenSpec("UDP", "127.0.0.1", 0)])
    try:
        await client.hset(keys.media_capacity(), mapping={"m1": "30 40 1", "m2": "5 40 9"})
        long_ago = time.monotonic() - 100
        edge.admission.admit(("gone@h", "t1"), "192.0.2.1", long_ago)
        edge.admission.admit(("live@h", "t2"), "192.0.2.1", long_ago)
        edge.admission.admit(("young@h", "t3"), "192.0.2.1", time.monotonic())
        await client.set(keys.initial("live@h", "t2"), "sid")
        await edge._beat()
        # 35 reported, minus the two calls admitted since that are still held (the third,
        # released, no longer counts)
        assert (edge.admission.media.capacity, edge.admission.media.free) == (80, 33)
        assert ("gone@h", "t1") not in edge.admission.calls
        assert ("live@h", "t2") in edge.admission.calls
        assert ("young@h", "t3") in edge.admission.calls
        assert edge.admission.calls.held("192.0.2.1") == 2
        await client.delete(keys.initial("live@h", "t2"))
        await edge._beat()  # checked a moment ago: not looked at again yet
        assert ("live@h", "t2") in edge.admission.calls
    finally:
        await delete_namespace(client, keys.ns)
        await client.aclose()


def test_a_media_node_falling_behind_is_full_and_its_load_fields_are_skipped() -> None:
    """A node reports ``free capacity beat`` then ``key=value`` load fields; one falling
    behind reports 0 free: with every node so, a new call is shed at once."""
    adm = Admission(max_per_source=0)
    adm.media.observe({"m1": "0 400 7 legs=120 asleep=0 busy=0.93 late=0.71"}, 0.0)
    assert adm.media.known
    assert (adm.media.free, adm.media.capacity) == (0, 400)
    shed = adm.check("10.0.0.1")
    assert shed is not None
    assert (shed.why, shed.retry_after) == ("media-capacity", 5)
    both = {"m1": "0 400 8 legs=120", "m2": "380 400 1 legs=20 asleep=20 busy=0.01 late=0.00"}
    adm.media.observe(both, 1.0)  # another node has room
    assert adm.check("10.0.0.1") is None
