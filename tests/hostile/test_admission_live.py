"""Admission against a running ``sessiond run --redis`` (edge here, workers and a media node as
processes of their own): one source cannot hold the media capacity (issue 18, F6), the calls
it held are released when they end, and digest guessing is locked out per source.

Sources are loopback addresses of their own (127.0.0.2 floods, 127.0.0.3 calls, 127.0.0.4/5
authenticate), so the per-source limits of one never touch another.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import shutil
import socket
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from sessiond.sip.digest import DigestClient
from sessiond.sip.message import SipResponse, parse_message
from sessiond.store import Keys
from sipp_scenarios import SIPP_INVITE

from .net import SDP, UdpAttacker, header, request, status
from .shared import Cluster, free_port, sipp, stats

pytestmark = [
    pytest.mark.redis,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp missing"),
]

LEGS = 40  # the media node's capacity: 40 RTP/RTCP port pairs
FLOOD = 100  # INVITEs from the flooding source: more than the capacity
CALLS = 20  # legitimate calls from another source


def _rtp_range(legs: int) -> str:
    """An even port range holding ``legs`` pairs, away from free_rtp_range()'s 22000-42000."""
    base = 44000 + 2 * random.Random(os.getpid()).randrange(0, 8000)
    return f"{base}-{base + 2 * legs}"


def _metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def _capacity(cluster: Cluster) -> dict[bytes, bytes]:
    """The media nodes' capacity reports (free, capacity, beat, busy, late...) in Redis."""
    reports: dict[bytes, bytes] = cluster.redis().hgetall(Keys(cluster.namespace).media_capacity())
    return reports


def _wait_metric(port: int, name: str, ok: object, timeout: float) -> float | None:
    """The metric's value once ``ok(value)`` holds (None if it never did within timeout)."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = _metrics(port).get(name)
        if value is not None and ok(value):  # type: ignore[operator]
            return value
        time.sleep(0.25)
    return None


# A caller that sends its INVITE and is done at once: it never ACKs the 200 nor answers the
# BYE that follows the ACK timeout. Each admitted INVITE holds a media leg for 32 s. sipp runs
# it with -nd: by default it CANCELs a call whose 180 comes during the 1 ms pause, and how
# many do depends on timing; their 487s released them, so the source could stay under its
# limit (the refusals went to the media reserve instead, whose estimate counts each admission).
FLOOD_SCENARIO = (
    '<?xml version="1.0"?>\n<scenario name="invite and vanish">\n'
    + SIPP_INVITE.split("  <recv")[0].replace('<send retrans="500">', "<send>")
    + '  <pause milliseconds="1"/>\n</scenario>\n'
)


class Service:
    def __init__(self, cluster: Cluster, port: int, metrics: int) -> None:
        self.cluster, self.port, self.metrics = cluster, port, metrics


def _start(cluster: Cluster, *extra: str, legs: int = LEGS) -> Service:
    mport = free_port(socket.SOCK_STREAM)
    extra = ("--metrics-port", str(mport), *extra)
    port = cluster.start_run(*extra, rtp_ports=_rtp_range(legs), any_answer=True)
    return Service(cluster, port, mport)


@pytest.fixture
def cluster(redis_url: str, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(redis_url, tmp_path)
    try:
        yield c
    finally:
        c.stop_all()
        c.cleanup()


def test_one_source_cannot_take_the_media_capacity(cluster: Cluster, tmp_path: Path) -> None:
    """F6: a flood of INVITEs that never ACK from 127.0.0.2 (more than the media node's 40
    legs) while 127.0.0.3 places 20 calls: every one of those succeeds (before: the flood held
    every leg and the calls failed with 503 "no free RTP port pair"); the flood's surplus is
    refused 503 + Retry-After; when the flood's calls time out (no ACK: BYE after 32 s) the
    edge holds no call any more."""
    service = _start(cluster)
    # the edge learns the media capacity at its heartbeat and the per-source limit derives
    # from it: until it sees all 40 legs free (a media node falling behind reports 0 free),
    # the flood would be refused, or not, for other reasons than the one this test is about
    free = _wait_metric(service.metrics, "sessiond_edge_media_free", lambda v: v == LEGS, 30.0)
    assert free == LEGS, (_metrics(service.metrics), _capacity(cluster))
    (tmp_path / "flood.xml").write_text(FLOOD_SCENARIO)
    flood = sipp(
        tmp_path,
        "-sf",
        "flood.xml",
        f"127.0.0.1:{service.port}",
        "-i",
        "127.0.0.2",
        "-m",
        str(FLOOD),
        "-r",
        "100",
        "-nd",
        "-p",
        str(free_port()),
        "-mp",
        str(free_port()),
        "-timeout",
        "20s",
        timeout=40,
    )
    # sipp counts a call whose 503 came during its 1 ms pause as failed: both are sent
    assert sum(stats(flood)) == FLOOD, flood.stdout[-1500:]
    flooded = time.monotonic()
    time.sleep(2.0)  # the admitted INVITEs become calls with a leg each
    calls = sipp(
        tmp_path,
        "-sn",
        "uac",
        f"127.0.0.1:{service.port}",
        "-i",
        "127.0.0.3",
        "-m",
        str(CALLS),
        "-r",
        "10",
        "-l",
        "5",
        "-d",
        "200",
        "-p",
        str(free_port()),
        "-mp",
        str(free_port()),
        "-timeout",
        "30s",
        timeout=45,
    )
    assert stats(calls) == (CALLS, 0), calls.stdout[-1500:] + cluster.log("run")[-3000:]
    seen = _metrics(service.metrics)
    drops = {k: v for k, v in seen.items() if k.startswith("sessiond_sip_dropped")}
    refused = seen.get('sessiond_sip_dropped_total{why="source-calls"}', 0)
    # the flood holds its share, a third of the legs (14), and no more: the rest is refused
    # (a slack of 2 for INVITEs lost on a loaded machine's loopback, refused for another reason)
    share = math.ceil(LEGS / 3)
    assert FLOOD - share - 2 <= refused <= FLOOD - share, (
        drops,
        _capacity(cluster),
        flood.stdout[-1500:],
    )
    # no leak: the flood's calls end at their ACK timeout (32 s after the 200), the BYE the
    # table sends releases them; the legitimate ones ended with their BYE
    left = 50.0 - (time.monotonic() - flooded)
    held = _wait_metric(service.metrics, "sessiond_edge_calls_held", lambda v: v == 0, left)
    assert held == 0, _metrics(service.metrics)


def _tagged(data: bytes, tag: str = "fixed") -> bytes:
    """``data`` with the From tag ``tag`` (request() draws a new one each time)."""
    head, _, rest = data.partition(b";tag=f")
    return head + f";tag={tag}".encode() + rest[8:]


def _reply(peer: UdpAttacker, call_id: str, method: str, codes: range) -> bytes:
    """The first response to ``call_id``'s ``method`` whose status is in ``codes`` (10 s)."""
    deadline = time.monotonic() + 10
    peer.sock.settimeout(0.5)
    while time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            reply = peer.sock.recv(65535)
            cseq = (header(reply, "CSeq") or "").split()
            ours = header(reply, "Call-ID") == call_id and cseq[-1:] == [method]
            if ours and status(reply) in codes:
                return reply
    raise AssertionError(f"no {codes} response to {method} {call_id}")


def test_held_calls_are_released_when_cancelled(cluster: Cluster) -> None:
    """--max-calls-per-source 2 and calls that ring (--answer app): a third INVITE from the
    source is refused 503 + Retry-After; CANCEL one (200, 487) and the next is admitted; when
    every call is cancelled the edge holds none."""
    service = _start(cluster, "--answer", "app", "--max-calls-per-source", "2")
    peer = UdpAttacker("127.0.0.6", service.port)
    invites: dict[str, bytes] = {}

    def invite(name: str) -> bytes:
        call_id = f"{name}-{uuid.uuid4().hex}"
        data = _tagged(
            request(
                "INVITE",
                service.port,
                peer.addr,
                call_id=call_id,
                body=SDP,
                extra="Content-Type: application/sdp\r\n",
            )
        )
        invites[name] = data
        peer.send(data)
        return _reply(peer, call_id, "INVITE", range(180, 700))

    def cancel(name: str) -> None:
        data = invites[name]
        call_id = header(data, "Call-ID") or ""
        branch = (header(data, "Via") or "").split("branch=")[1].split(";")[0]
        peer.send(
            _tagged(request("CANCEL", service.port, peer.addr, call_id=call_id, branch=branch))
        )
        assert status(_reply(peer, call_id, "CANCEL", range(200, 700))) == 200
        assert status(_reply(peer, call_id, "INVITE", range(300, 700))) == 487

    try:
        assert status(invite("a")) == 180
        assert status(invite("b")) == 180
        refused = invite("c")
        assert status(refused) == 503, refused[:300]
        assert b"too many calls" in refused.split(b"\r\n", 1)[0].lower()
        assert int(header(refused, "Retry-After") or "0") >= 1
        cancel("a")
        assert status(invite("d")) == 180
        # the gauge is set at the edge's heartbeat (every second)
        assert _wait_metric(service.metrics, "sessiond_edge_calls_held", lambda v: v == 2, 5.0)
        cancel("b")
        cancel("d")
        held = _wait_metric(service.metrics, "sessiond_edge_calls_held", lambda v: v == 0, 5.0)
        assert held == 0
    finally:
        peer.close()


def test_media_capacity_sheds_at_the_edge_before_a_leg_fails(cluster: Cluster) -> None:
    """No per-source limit, a media node of 6 legs: 12 calls that never ACK get 200 while
    more than the reserve (2 legs) is free, then 503 "Out of media capacity" from the edge;
    never a failed leg ("no free RTP port pair")."""
    service = _start(cluster, "--max-calls-per-source", "0", legs=6)
    assert _wait_metric(service.metrics, "sessiond_edge_media_free", lambda v: v == 6, 10.0)
    peer = UdpAttacker("127.0.0.7", service.port)
    finals: dict[str, bytes] = {}
    try:
        for _ in range(12):
            call_id = uuid.uuid4().hex
            extra = "Content-Type: application/sdp\r\n"
            peer.send(
                request("INVITE", service.port, peer.addr, call_id=call_id, body=SDP, extra=extra)
            )
            finals[call_id] = _reply(peer, call_id, "INVITE", range(200, 700))
    finally:
        peer.close()
    lines = [reply.split(b"\r\n", 1)[0] for reply in finals.values()]
    answered = [line for line in lines if line.startswith(b"SIP/2.0 200")]
    assert len(answered) == 4, lines
    assert all(b"Out of media capacity" in line for line in lines if line not in answered), lines


def _raw_invite(peer: UdpAttacker, port: int, call_id: str, auth: str = "") -> bytes:
    extra = "Content-Type: application/sdp\r\n" + (f"Authorization: {auth}\r\n" if auth else "")
    cseq = 2 if auth else 1
    data = request("INVITE", port, peer.addr, call_id=call_id, cseq=cseq, extra=extra, body=SDP)
    return _tagged(data)  # one From tag for the call (the challenged and the answered INVITE)


def _final(peer: UdpAttacker, call_id: str, cseq: int) -> bytes:
    """The first final response to ``call_id``'s INVITE ``cseq`` (within 10 s; we send no
    ACK, so earlier finals come again: they are skipped)."""
    deadline = time.monotonic() + 10
    peer.sock.settimeout(0.5)
    while time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            reply = peer.sock.recv(65535)
            ours = header(reply, "Call-ID") == call_id and header(reply, "CSeq") == f"{cseq} INVITE"
            if ours and status(reply) >= 200:
                return reply
    raise AssertionError(f"no final response for {call_id}")


def _authenticated(peer: UdpAttacker, port: int, password: str) -> bytes:
    """INVITE, 401, INVITE with a digest answer computed for ``password``: the final reply."""
    call_id = uuid.uuid4().hex
    peer.send(_raw_invite(peer, port, call_id))
    challenge = _final(peer, call_id, 1)
    if status(challenge) != 401:
        return challenge
    resp = parse_message(challenge)
    assert isinstance(resp, SipResponse)
    uri = f"sip:bob@127.0.0.1:{port}"
    value = DigestClient("alice", password).answer(resp, "INVITE", uri)[1]
    peer.send(_raw_invite(peer, port, call_id, auth=value))
    return _final(peer, call_id, 2)


def test_password_guessing_is_locked_out_per_source(cluster: Cluster, tmp_path: Path) -> None:
    """Wrong passwords from 127.0.0.4 (digest answers computed with sip/digest.py): each is
    403 and counted; after 5 the source is locked out, so even the right password gets 403
    there, while 127.0.0.5 authenticates; after the lockout window 127.0.0.4 can call again."""
    users = tmp_path / "users"
    users.write_text("alice:s3cret\n")
    service = _start(
        cluster,
        "--auth-file",
        str(users),
        "--auth-max-failures",
        "5",
        "--auth-failure-window",
        "60",
        "--auth-lockout",
        "4",
    )
    guesser = UdpAttacker("127.0.0.4", service.port)
    other = UdpAttacker("127.0.0.5", service.port)
    try:
        for guess in ("123456", "password", "alice", "qwerty", "letmein"):
            assert status(_authenticated(guesser, service.port, guess)) == 403
        locked_at = time.monotonic()
        locked = _authenticated(guesser, service.port, "s3cret")
        assert status(locked) == 403, locked[:200]
        assert b"too many failed" in locked.split(b"\r\n", 1)[0].lower()
        assert status(_authenticated(other, service.port, "s3cret")) == 200
        seen = _metrics(service.metrics)
        assert seen["sessiond_edge_auth_failures_total"] == 5, seen
        assert seen["sessiond_edge_auth_lockouts_total"] == 1, seen
        time.sleep(max(0.0, 4.5 - (time.monotonic() - locked_at)))
        assert status(_authenticated(guesser, service.port, "s3cret")) == 200
    finally:
        guesser.close()
        other.close()
    assert "s3cret" not in cluster.log("run")


def test_past_capacity_new_calls_get_503_at_once_and_held_calls_go_on(cluster: Cluster) -> None:
    """Issue 17 item 5: a media node of 6 legs with ``--idle-rtp keepalive``; 4 answered and
    ACKed calls fill it (the reserve is 2); the next INVITEs get 503 + Retry-After straight
    from the edge (no ringing first), while the held calls still get their keepalive RTP
    and hang up normally (BYE, 200)."""
    service = _start(
        cluster,
        "--max-calls-per-source",
        "0",
        "--idle-rtp",
        "keepalive",
        "--idle-keepalive",
        "1",
        legs=6,
    )
    assert _wait_metric(service.metrics, "sessiond_edge_media_free", lambda v: v == 6, 10.0)
    peer = UdpAttacker("127.0.0.8", service.port)
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp.bind(("127.0.0.8", 0))
    rtp.settimeout(0.5)
    sdp = SDP.replace("127.0.0.1", "127.0.0.8").replace("4000", str(rtp.getsockname()[1]))
    ctype = "Content-Type: application/sdp\r\n"
    held: list[tuple[str, str, str]] = []  # call id, from tag, to tag
    try:
        for n in range(4):
            call_id, tag = uuid.uuid4().hex, f"held{n}"
            invite = request(
                "INVITE", service.port, peer.addr, call_id=call_id, body=sdp, extra=ctype
            )
            peer.send(_tagged(invite, tag))
            ok = _reply(peer, call_id, "INVITE", range(200, 700))
            assert status(ok) == 200, ok
            to_tag = (header(ok, "To") or "").split("tag=")[1]
            ack = request("ACK", service.port, peer.addr, call_id=call_id, to_tag=to_tag)
            peer.send(_tagged(ack, tag))
            held.append((call_id, tag, to_tag))
        for _ in range(2):
            call_id = uuid.uuid4().hex
            invite = request(
                "INVITE", service.port, peer.addr, call_id=call_id, body=sdp, extra=ctype
            )
            peer.send(invite)
            first = _reply(peer, call_id, "INVITE", range(101, 700))  # after 100 Trying
            assert status(first) == 503, first  # no 180 first: refused at the edge
            assert header(first, "Retry-After"), first
            assert b"Out of media capacity" in first.split(b"\r\n", 1)[0]
        rtp.setblocking(False)  # what arrived before the refusals does not count
        with contextlib.suppress(BlockingIOError):
            while True:
                rtp.recv(2048)
        rtp.settimeout(0.5)
        sources: set[tuple[str, int]] = set()  # the held legs still send (keepalives)
        deadline = time.monotonic() + 10
        while len(sources) < 4 and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                sources.add(rtp.recvfrom(2048)[1])
        assert len(sources) == 4, sources
        for call_id, tag, to_tag in held:
            bye = request("BYE", service.port, peer.addr, call_id=call_id, to_tag=to_tag, cseq=2)
            peer.send(_tagged(bye, tag))
            assert status(_reply(peer, call_id, "BYE", range(200, 700))) == 200
    finally:
        peer.close()
        rtp.close()


def _cancel_pairs(port: int, pairs: int, rate: float) -> Counter[int]:
    """From 127.0.0.9: ``pairs`` times an INVITE and at once its CANCEL, ``rate`` a second
    (under the per-source rate limit); each call ends at once (487 ACKed, or a 200 that beat
    the CANCEL ACKed and hung up with BYE), so the source holds about one call at a time.
    The INVITEs' final statuses."""
    peer = UdpAttacker("127.0.0.9", port)
    finals: Counter[int] = Counter()
    ctype = "Content-Type: application/sdp\r\n"
    start = time.monotonic()
    try:
        for n in range(pairs):
            time.sleep(max(0.0, start + n / rate - time.monotonic()))
            call_id, tag = f"pair{n}-{uuid.uuid4().hex}", f"pair{n}"
            branch = "z9hG4bK" + uuid.uuid4().hex[:16]
            invite = request(
                "INVITE", port, peer.addr, call_id=call_id, branch=branch, body=SDP, extra=ctype
            )
            peer.send(_tagged(invite, tag))
            peer.send(_tagged(request("CANCEL", port, peer.addr, call_id=call_id, branch=branch)))
            final = _reply(peer, call_id, "INVITE", range(200, 700))
            finals[status(final)] += 1
            to_tag = (header(final, "To") or "").split("tag=")[-1]
            ok = status(final) == 200
            ack = request(
                "ACK",
                port,
                peer.addr,
                call_id=call_id,
                to_tag=to_tag,
                branch=None if ok else branch,
            )
            peer.send(_tagged(ack, tag))
            if ok:  # answered before the CANCEL arrived: hang up
                bye = request("BYE", port, peer.addr, call_id=call_id, to_tag=to_tag, cseq=2)
                peer.send(_tagged(bye, tag))
    finally:
        peer.close()
    return finals


def test_cancelled_calls_do_not_use_up_the_media_estimate(cluster: Cluster, tmp_path: Path) -> None:
    """One source sends INVITE + CANCEL pairs at 20/s, under its rate limit (50/s), 120 of
    them (three times the node's 40 legs), while 127.0.0.3 places 20 calls: every call
    succeeds and no INVITE is refused for media capacity. Before, the edge counted every
    call it admitted against the reported free legs until two reports later, even when it
    had ended: the pairs drove the estimate to the reserve and every caller got 503 "Out of
    media capacity" from one source holding a call or two."""
    service = _start(cluster)
    assert _wait_metric(service.metrics, "sessiond_edge_media_free", lambda v: v == LEGS, 30.0)
    pool = ThreadPoolExecutor(1)
    pairs = pool.submit(_cancel_pairs, service.port, 3 * LEGS, 20.0)
    time.sleep(1.0)  # the pairs are under way
    calls = sipp(
        tmp_path,
        "-sn",
        "uac",
        f"127.0.0.1:{service.port}",
        "-i",
        "127.0.0.3",
        "-m",
        str(CALLS),
        "-r",
        "5",
        "-d",
        "200",
        "-p",
        str(free_port()),
        "-mp",
        str(free_port()),
        "-timeout",
        "30s",
        timeout=45,
    )
    finals = pairs.result(timeout=60)
    pool.shutdown()
    seen = _metrics(service.metrics)
    drops = {k: v for k, v in seen.items() if k.startswith("sessiond_sip_dropped")}
    assert stats(calls) == (CALLS, 0), (drops, calls.stdout[-1500:])
    assert seen.get('sessiond_sip_dropped_total{why="media-capacity"}', 0) == 0, drops
    assert set(finals) <= {200, 487}, (finals, drops)
    held = _wait_metric(service.metrics, "sessiond_edge_calls_held", lambda v: v == 0, 10.0)
    assert held == 0, _metrics(service.metrics)
