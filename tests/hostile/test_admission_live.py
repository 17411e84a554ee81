"""Admission against a running ``sessiond run --redis`` (edge here, workers and a media node as
processes of their own): one source cannot hold the media capacity (issue 18, F6), the calls
it held are released when they end, and digest guessing is locked out per source.

Sources are loopback addresses of their own (127.0.0.2 floods, 127.0.0.3 calls, 127.0.0.4/5
authenticate), so the per-source limits of one never touch another.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sessiond.sip.digest import DigestClient
from sessiond.sip.message import SipResponse, parse_message
from sipp_scenarios import SIPP_INVITE

from .net import SDP, UdpAttacker, header, request, status
from .shared import Cluster, free_port, sipp, stats, wait_listening

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
# BYE that follows the ACK timeout. Each admitted INVITE holds a media leg for 32 s.
FLOOD_SCENARIO = (
    '<?xml version="1.0"?>\n<scenario name="invite and vanish">\n'
    + SIPP_INVITE.split("  <recv")[0].replace('<send retrans="500">', "<send>")
    + '  <pause milliseconds="1"/>\n</scenario>\n'
)


class Service:
    def __init__(self, cluster: Cluster, port: int, metrics: int) -> None:
        self.cluster, self.port, self.metrics = cluster, port, metrics


def _start(cluster: Cluster, *extra: str) -> Service:
    port, mport = free_port(), free_port(socket.SOCK_STREAM)
    cluster.start(
        "run",
        "run",
        *cluster.common(),
        "--listen",
        f"udp:127.0.0.1:{port}",
        "--rtp-ports",
        _rtp_range(LEGS),
        "--metrics-port",
        str(mport),
        *extra,
    )
    wait_listening(port, any_answer=True)
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
    # the edge learns the media capacity at its next heartbeat (the limit derives from it)
    _wait_metric(service.metrics, "sessiond_edge_media_free", lambda v: v > 0, 10.0)
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
    assert seen.get('sessiond_sip_dropped_total{why="source-calls"}', 0) > 0, seen
    # no leak: the flood's calls end at their ACK timeout (32 s after the 200), the BYE the
    # table sends releases them; the legitimate ones ended with their BYE
    left = 50.0 - (time.monotonic() - flooded)
    held = _wait_metric(service.metrics, "sessiond_edge_calls_held", lambda v: v == 0, left)
    assert held == 0, _metrics(service.metrics)


def _raw_invite(peer: UdpAttacker, port: int, call_id: str, auth: str = "") -> bytes:
    extra = "Content-Type: application/sdp\r\n" + (f"Authorization: {auth}\r\n" if auth else "")
    cseq = 2 if auth else 1
    data = request("INVITE", port, peer.addr, call_id=call_id, cseq=cseq, extra=extra, body=SDP)
    # one From tag for the whole call (the challenge's INVITE and the authenticated one)
    head, _, rest = data.partition(b";tag=f")
    return head + b";tag=fixed" + rest[8:]


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
