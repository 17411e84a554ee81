"""Hostile traffic against a live ``sessiond run --redis`` (edge, worker and media in one
process) on loopback: RFC 4475 torture messages, oversize and header-bomb messages, floods,
scans, requests for dialogs that do not exist, ACK storms. After each attack the process is
up, its RSS and open files stay bounded, and a legitimate sipp call placed *during* the attack
completes. Attackers send from 127.0.0.2-127.0.0.9, the legitimate caller from 127.0.0.1."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .net import SDP, UdpAttacker, header, open_fds, request, rss_kb, status
from .shared import (
    INVALID,
    VALID,
    Cluster,
    free_port,
    sipp,
    stats,
)

pytestmark = [pytest.mark.redis, pytest.mark.slow]

RATE, BURST = 20, 40
RSS_GROWTH_KB = 64 * 1024  # per attack; a leak of one object per message would exceed it
FD_GROWTH = 16


@dataclass
class Service:
    cluster: Cluster
    port: int
    pid: int
    tmp: Path

    def alive(self) -> bool:
        return self.cluster.procs["run"].poll() is None


@pytest.fixture(scope="module")
def service(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("hostile")
    cluster = Cluster(redis_url, tmp)
    try:
        port = cluster.start_run("--rate-limit", str(RATE), "--rate-burst", str(BURST), tcp=True)
        yield Service(cluster, port, cluster.procs["run"].pid, tmp)
    finally:
        cluster.stop_all()
        cluster.cleanup()


def legit_call(service: Service) -> None:
    """One basic call from 127.0.0.1 with sipp's uac scenario: INVITE, 200, ACK, BYE."""
    result = sipp(
        service.tmp,
        "-sn",
        "uac",
        f"127.0.0.1:{service.port}",
        "-i",
        "127.0.0.1",
        "-m",
        "1",
        "-d",
        "300",
        "-p",
        str(free_port()),
        "-mp",
        str(free_port()),
        "-timeout",
        "30s",
        timeout=45,
    )
    assert stats(result) == (1, 0), result.stdout[-1500:]


def under_attack(
    service: Service, attack: Callable[[threading.Event], Any], fd_allowance: int = 0
) -> Any:
    """Run ``attack`` in a thread (bounded in count and time; it may stop early when the event
    is set), place a legitimate call meanwhile, and check the process, its memory and its
    open files (``fd_allowance`` more for what the attack legitimately opened: media ports)."""
    rss, fds = rss_kb(service.pid), open_fds(service.pid)
    stop = threading.Event()
    result: list[Any] = []

    def run() -> None:
        try:
            result.append(attack(stop))
        except BaseException as exc:  # reported by the test, not as a thread warning
            result.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    time.sleep(0.3)  # the attack is under way before the call starts
    try:
        legit_call(service)
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
    assert service.alive(), service.cluster.log("run")[-3000:]
    after_rss, after_fds = rss_kb(service.pid), open_fds(service.pid)
    print(f"RSS {rss} -> {after_rss} kB, open files {fds} -> {after_fds}")
    assert after_rss - rss < RSS_GROWTH_KB
    assert after_fds - fds <= FD_GROWTH + fd_allowance
    assert result
    assert not isinstance(result[0], BaseException), result
    return result[0]


def test_torture_messages_over_udp(service: Service) -> None:
    """Invalid RFC 4475 requests get their stateless error, responses and ACKs get nothing,
    valid requests are processed (no validation error), unparseable datagrams are dropped."""

    def attack(stop: threading.Event) -> dict[str, list[int]]:
        got: dict[str, list[int]] = {}
        for name, (data, _, _) in INVALID.items():
            got[f"invalid-{name}"] = _exchange("127.0.0.2", service.port, data)
        for name, data in VALID.items():
            got[f"valid-{name}"] = _exchange("127.0.0.2", service.port, data)
        garbage = UdpAttacker("127.0.0.2", service.port)
        for n in range(200):
            garbage.send(bytes((n * 7 + i) % 256 for i in range(n + 1)))
        got["garbage"] = [status(r) for r in garbage.replies(quiet=0.5)]
        garbage.close()
        return got

    got = under_attack(service, attack)
    for name, (data, code, _) in INVALID.items():
        expected = [] if data.startswith(b"SIP/") else [code]
        assert got[f"invalid-{name}"] == expected, name
    assert got["garbage"] == []
    assert {name: got[f"valid-{name}"] for name in VALID} == VALID_ANSWERS


# What a valid torture message gets back on the socket it came from. A response goes to the
# top Via's sent-by (RFC 3261 18.2.2); without rport that is port 5060 of a 192.0.2.x or
# example.com host, never our socket: so only what the edge answers itself (OPTIONS 200,
# REGISTER 405, unknown methods 501, validation errors), worker answers to Vias that name
# 127.0.0.1 or a reachable port, and answers through a live server transaction (which go back
# to the source) come back. RFC 2543 requests (no magic cookie) are matched by their fields
# (17.2.3) and answered through their transaction. A request reusing an earlier message's
# branch and sent-by with another Call-ID is no retransmission of it: it is answered too.
VALID_ANSWERS = {
    "wsinv": [481],  # re-INVITE for no dialog: 481 from the worker (RFC 2543 branch)
    "intmeth": [501],  # a method we do not know (RFC 3261 8.2.1, 21.5.2)
    "esc01": [488],  # the RFC's Content-Length cuts the SDP: no usable offer
    "escnull": [405],
    "esc02": [501],  # RE%47IST%45R is not REGISTER
    "lwsdisp": [200],
    "longreq": [488],  # cookieless branch: matched and answered the RFC 2543 way
    "dblreq": [405],
    "semiuri": [200],
    "transports": [200],
    "mpart01": [405],
    "unreason": [],  # responses are never answered
    "noreason": [],
    "unksm2": [400],  # To of a REGISTER must be a SIP URI
    "invut": [415],  # a body we cannot read: 415 with Accept (RFC 3261 8.2.3, RFC 4475 3.1.1.13)
    "regaut01": [405],
    "bcast": [],
    "zeromf": [200],
    "cparam01": [405],
    "cparam02": [405],  # cparam01's branch and sent-by, but its own request
    "regescrt": [405],  # escnull's branch and sent-by, but its own request
    "inv2543": [488],  # RFC 2543: no Max-Forwards, accepted; its SDP refused by the tables
}


def _exchange(source: str, port: int, data: bytes) -> list[int]:
    peer = UdpAttacker(source, port)
    try:
        peer.send(data)
        replies = peer.replies(quiet=0.4)
    finally:
        peer.close()
    return sorted({status(r) for r in replies if status(r) >= 200})


def test_torture_messages_over_tcp(service: Service) -> None:
    """The same over TCP (Content-Length is mandatory there): every invalid request that can
    be framed gets its error on its connection; the edge stays up and keeps no connection."""
    framed = {
        name: (data, code)
        for name, (data, code, _) in INVALID.items()
        if not data.startswith(b"SIP/") and name not in ("clerr", "ncl", "mcl01")
    }
    fds = open_fds(service.pid)
    answers = {}
    for name, (data, _) in framed.items():
        with socket.create_connection(("127.0.0.1", service.port), timeout=3) as conn:
            conn.sendall(data)
            answers[name] = status(conn.recv(65535))
    assert answers == {name: code for name, (_, code) in framed.items()}
    time.sleep(0.3)
    assert open_fds(service.pid) <= fds + 2
    assert service.alive()


def test_message_just_over_the_size_limit_gets_513(service: Service) -> None:
    """65,535 bytes is the edge's limit (a UDP datagram cannot carry more): a TCP message one
    byte over (its body within the framer's limit) is answered 513 and the connection kept; a
    UDP datagram of the largest size is processed."""
    with socket.create_connection(("127.0.0.1", service.port), timeout=3) as conn:
        conn.sendall(_sized("OPTIONS", service.port, 65_536, "TCP"))
        assert status(conn.recv(65535)) == 513
        conn.sendall(_sized("OPTIONS", service.port, 65_535, "TCP"))
        assert status(conn.recv(65535)) == 200
    peer = UdpAttacker("127.0.0.2", service.port)
    try:
        peer.send(_sized("OPTIONS", service.port, 65_507, "UDP"))
        assert [status(r) for r in peer.replies()] == [200]
    finally:
        peer.close()


def _sized(method: str, port: int, size: int, transport: str) -> bytes:
    """A request of exactly ``size`` bytes; a text body makes up the difference, so the
    header section stays within the TCP framer's 16 kB."""
    src = ("127.0.0.2", 5099)
    ct = "Content-Type: text/plain\r\n"
    base = request(method, port, src, transport=transport, extra=ct, body="")
    pad = size - len(base)
    for _ in range(3):  # the Content-Length digits count too
        data = request(method, port, src, transport=transport, extra=ct, body="a" * pad)
        pad += size - len(data)
    assert len(data) == size
    return data


def test_header_repeated_thousands_of_times(service: Service) -> None:
    """Requests with 4,000 copies of one header (unknown, Via, Route, Contact) near the size
    limit: each is answered (processed or refused with a precise error), none crashes."""

    def bombs(port: int, src: tuple[str, int], rnd: int) -> dict[str, bytes]:
        via = "Via: SIP/2.0/UDP h;branch=z9hG4bKv\r\n"
        extra = {
            "unknown": ("OPTIONS", "X-A: b\r\n" * 4000),
            "via": ("OPTIONS", via * 1500),
            "route": ("OPTIONS", "Route: <sip:h;lr>\r\n" * 3000),
            "contact": ("INVITE", "Contact: <sip:c@h>\r\n" * 2500),
            "max-forwards": ("OPTIONS", "Max-Forwards: 70\r\n" * 3000),
        }
        return {
            name: request(method, port, src, extra=lines, call_id=f"bomb-{name}-{rnd}")
            for name, (method, lines) in extra.items()
        }

    def attack(stop: threading.Event) -> dict[str, list[int]]:
        got: dict[str, list[int]] = {}
        deadline = time.monotonic() + 20
        for rnd in range(5):
            if stop.is_set() or time.monotonic() > deadline:
                break
            peer = UdpAttacker("127.0.0.3", service.port)
            try:
                for data in bombs(service.port, peer.addr, rnd).values():
                    assert len(data) < 65_507, len(data)
                    peer.send(data)
                    time.sleep(0.05)
                for r in peer.replies(quiet=1.0):
                    name, _, n = _key(r).removeprefix("bomb-").rpartition("-")
                    if n == "0" and status(r) >= 100:
                        got.setdefault(name, []).append(status(r))
            finally:
                peer.close()
        return got

    got = under_attack(service, attack)
    contact = got.pop("contact", [])
    assert got == {
        "unknown": [200],
        "via": [200],
        "route": [200],
        "max-forwards": [400],  # Multiple Max-Forwards headers
    }
    # 2,500 Contacts: a call like any other; its 200 may come after the second we listen
    # when the machine is loaded, so only what came is checked (the 100 Trying comes only
    # when the 180 takes more than 200 ms)
    assert contact[:1] in ([100], [180], [200]), contact
    assert set(contact) <= {100, 180, 200}


def test_invite_flood_from_one_source_gets_503_retry_after(service: Service) -> None:
    """600 new INVITEs from one address: at most the burst plus the rate are admitted, the
    rest get 503 with Retry-After, statelessly; the caller on another address is unaffected."""

    def attack(stop: threading.Event) -> tuple[Counter[int], set[str], float]:
        peer = UdpAttacker("127.0.0.4", service.port)
        start = time.monotonic()
        for _ in range(600):
            if stop.is_set():
                break
            peer.send(request("INVITE", service.port, peer.addr, body=SDP, extra=_CT))
        elapsed = time.monotonic() - start
        replies = peer.replies(quiet=1.0, limit=15)
        peer.close()
        finals = {_key(r): status(r) for r in replies if status(r) >= 200}
        retry = {header(r, "Retry-After") or "" for r in replies if status(r) == 503}
        return Counter(finals.values()), retry, elapsed

    # each admitted INVITE is a real call until its ACK timeout: an RTP and an RTCP socket
    codes, retry, elapsed = under_attack(service, attack, fd_allowance=2 * (BURST + 4 * RATE))
    refused = codes[503]
    assert refused >= 600 - BURST - RATE * (elapsed + 1) - 5, codes
    assert sum(codes.values()) - refused <= BURST + RATE * (elapsed + 1), codes
    assert retry
    assert all(r.isdigit() and int(r) >= 1 for r in retry), retry


_CT = "Content-Type: application/sdp\r\n"


def _key(reply: bytes) -> str:
    return header(reply, "Call-ID") or ""


def test_register_and_options_scan_from_many_user_names(service: Service) -> None:
    """A sipvicious-style scan: OPTIONS and REGISTER for 150 user names. Every user gets the
    same answer (so nothing tells existing users apart), REGISTER gets 405 with Allow (this
    UAS is not a registrar), the burst beyond the limit gets 503, no session is created."""
    before = {s.get("call_id") for s in service.cluster.sessions()}

    def attack(stop: threading.Event) -> dict[str, Counter[int]]:
        peer = UdpAttacker("127.0.0.5", service.port)
        answers: dict[str, Counter[int]] = {"OPTIONS": Counter(), "REGISTER": Counter()}
        by_user: dict[tuple[str, str], int] = {}
        deadline = time.monotonic() + 15
        for n in range(150):
            if time.monotonic() > deadline:
                break
            for method in ("OPTIONS", "REGISTER"):
                call_id = f"scan-{method}-{n}"
                peer.send(request(method, service.port, peer.addr, user=f"{n}", call_id=call_id))
            time.sleep(0.02)  # svwar paces itself; stay under the limit for most of the scan
        for r in peer.replies(quiet=1.0):
            cid = _key(r)
            by_user[(cid.split("-")[1], cid)] = status(r)
        peer.close()
        for (method, _), code in by_user.items():
            answers[method][code] += 1
        return answers

    answers = under_attack(service, attack)
    assert set(answers["REGISTER"]) <= {405, 503}, answers
    assert answers["REGISTER"][405] > 0, answers
    assert set(answers["OPTIONS"]) <= {200, 503}, answers
    assert answers["OPTIONS"][200] > 0, answers
    assert sum(answers["REGISTER"].values()) == sum(answers["OPTIONS"].values()) == 150
    after = {s.get("call_id") for s in service.cluster.sessions()}
    assert not {c for c in after - before if c and c.startswith("scan-")}


def test_cancel_and_bye_for_dialogs_that_do_not_exist_get_481(service: Service) -> None:
    """CANCEL for no transaction: 481 from the edge; BYE for no dialog: 481 from the worker."""

    def attack(stop: threading.Event) -> Counter[tuple[str, int]]:
        peer = UdpAttacker("127.0.0.6", service.port)
        for n in range(100):
            if stop.is_set():
                break
            peer.send(request("CANCEL", service.port, peer.addr, call_id=f"c-{n}"))
            peer.send(
                request("BYE", service.port, peer.addr, call_id=f"b-{n}", to_tag="nx", cseq=2)
            )
            time.sleep(0.005)
        finals = {}
        for r in peer.replies(quiet=1.5):
            if status(r) >= 200:
                finals[_key(r)] = status(r)
        peer.close()
        return Counter((cid[0], code) for cid, code in finals.items())

    got = under_attack(service, attack)
    assert got == Counter({("c", 481): 100, ("b", 481): 100}), got


def test_ack_storm(service: Service) -> None:
    """5,000 ACKs for dialogs that do not exist: none is answered (RFC 3261 17.2.1), the
    process stays up and bounded, calls go on."""

    def attack(stop: threading.Event) -> int:
        peer = UdpAttacker("127.0.0.7", service.port)
        deadline = time.monotonic() + 10
        sent = 0
        for n in range(5000):
            if stop.is_set() and n >= 2000 or time.monotonic() > deadline:
                break
            peer.send(request("ACK", service.port, peer.addr, call_id=f"a-{n}", to_tag="nx"))
            sent += 1
            if n % 200 == 0:
                time.sleep(0.01)
        answered = len(peer.replies(quiet=1.0))
        peer.close()
        assert sent >= 2000
        return answered

    assert under_attack(service, attack) == 0
