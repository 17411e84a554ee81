"""Faults injected into a real deployment (edge, two workers, two media nodes, Redis with
AOF, as separate processes) under legitimate sipp load. Each scenario asserts, once the calls
have ended and the sessions settled: no legitimate call failed, no session left
non-terminal, no event (or timer) applied twice, one session per Call-ID, no orphan media
leg on any node, and every process exiting on SIGTERM within its drain timeout.

Scenarios that fail on the base code because of a known defect are strict xfails naming it
(F1-F6); the mark goes when the fix is merged."""

from __future__ import annotations

import math
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from . import observe
from .conftest import Row, record
from .deploy import (
    DRAIN_TIMEOUT,
    MEDIA,
    PROCESSES,
    TCP_MESSAGE_TIMEOUT,
    Caller,
    CpuStarver,
    Deployment,
    Traffic,
    call_ids_read_by,
    caller_scenario,
    cancel_scenario,
    flood_scenario,
    in_thread,
    kind,
    probe_call,
    start_sipp,
    wait_for,
)

HOLD_MS = 3000  # legitimate calls are held this long (then the caller hangs up)
RATE = 15  # legitimate calls per second
SETTLE = 40.0  # after the calls: the longest wait for every session to end (AckTimeout 32 s)
EDGE_RSS_GROWTH_KB = 32 * 1024  # the edge's RSS after the garbage, over its RSS before
ATTACKER = "127.0.0.4"  # the garbage's source


def load(deploy: Deployment, seconds: float) -> Traffic:
    """Legitimate callers from 127.0.0.1 for about ``seconds``: RATE calls/s, HOLD_MS each."""
    calls = int(seconds * RATE)
    return start_sipp(deploy, "load", caller_scenario(HOLD_MS), calls=calls, rate=RATE)


class Recovery:
    """Time from a fault until a fresh call completes again: probes from the fault on."""

    def __init__(self, deploy: Deployment) -> None:
        self.result = math.inf
        self._thread = threading.Thread(target=self._probe, args=(deploy,), daemon=True)
        self._thread.start()

    def _probe(self, deploy: Deployment) -> None:
        self.result = probe_call(deploy)

    def seconds(self) -> float:
        self._thread.join(90)
        return self.result


@dataclass
class Outcome:
    scenario: str
    calls: int = 0
    failed: int = 0
    shed: int = 0
    recovery: float = math.inf
    audit: observe.Audit = field(default_factory=observe.Audit)
    exits: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def conclude(
    deploy: Deployment,
    scenario: str,
    legit: list[Traffic],
    recovery: float,
    *,
    before: Callable[[], None] | None = None,
    allow_shed: bool = False,
    extra: Burst | None = None,
    attacker: str = "",
) -> Outcome:
    """Wait for the callers, let the sessions settle, audit, stop every process with SIGTERM,
    record the summary row, then assert. ``allow_shed``: legitimate calls refused with the
    edge's documented 503 + Retry-After (overload shedding) are counted, not failed."""
    out = Outcome(scenario, recovery=recovery)
    for traffic in legit:
        ok, _ = traffic.result(timeout=180)
        shed = traffic.shed()
        out.calls += traffic.calls
        out.shed += shed
        out.failed += traffic.calls - max(ok, 0) + (0 if allow_shed else shed)
    if extra is not None:
        out.calls += len(extra.callers)
        out.failed += extra.failed()
    for name in PROCESSES:  # a supervisor restarts what died
        if deploy.cluster.procs[name].poll() is not None:
            deploy.start(name)
    r, ns = deploy.redis(), deploy.namespace
    wait_for(lambda: not observe.non_terminal(observe.sessions(r, ns), attacker), SETTLE, 0.5)
    time.sleep(2.5)  # the media nodes' leg gauges are refreshed every second
    if before is not None:
        before()
    in_memory = {m: int(deploy.scrape(m).get("sessiond_media_legs", 0)) for m in MEDIA}
    dropped = {k: v for k, v in deploy.scrape("edge").items() if "dropped" in k and v}
    out.audit = observe.audit(r, ns, MEDIA, in_memory, attacker)
    out.exits = deploy.stop_all()
    a = out.audit
    record(
        Row(
            nodeid=os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0],
            scenario=scenario,
            calls=out.calls,
            failed=out.failed,
            shed=out.shed,
            orphans=len(a.orphans),
            doubles=a.doubles,
            recovery=recovery,
        )
    )
    logs = "".join(t.output[-1500:] for t in legit if out.failed)
    assert out.failed == 0, f"{out.failed} of {out.calls} legitimate calls failed {dropped}\n{logs}"
    assert not a.non_terminal, f"sessions left non-terminal: {a.non_terminal[:10]}"
    assert not a.duplicate_call_ids, f"Call-IDs with several sessions: {a.duplicate_call_ids}"
    assert not a.applied_twice, f"events applied twice: {a.applied_twice}"
    assert not a.timers_twice, f"timers fired twice: {a.timers_twice}"
    assert not a.orphans, f"orphan media legs: {a.orphans}"
    late = {n: t for n, t in out.exits.items() if t > DRAIN_TIMEOUT[kind(n)]}
    assert not late, f"processes not out within their drain timeout after SIGTERM: {late}"
    assert recovery < math.inf, "no call completed after the fault"
    return out


# --- workers ------------------------------------------------------------------------------


def test_worker_kill9(deploy: Deployment) -> None:
    traffic = load(deploy, 8)
    time.sleep(4)
    deploy.kill9("w0")
    recovery = Recovery(deploy)
    time.sleep(3)
    deploy.start("w0")
    conclude(deploy, "worker kill -9", [traffic], recovery.seconds())


class Burst:
    """Calls of our own (:class:`Caller`) whose INVITEs go out at once, finished in threads."""

    def __init__(self, deploy: Deployment, call_ids: list[str]) -> None:
        self.callers = [Caller(deploy.port, cid) for cid in call_ids]
        for caller in self.callers:
            caller.invite()
        self.threads = [in_thread(caller.finish) for caller in self.callers]

    def failed(self) -> int:
        for thread in self.threads:
            thread.join(90)
        return sum(not c.ok for c in self.callers)


def test_worker_sigstop_10s(deploy: Deployment) -> None:
    """Under load, the worker is stopped and, at that moment, calls start on its partitions:
    the blocked read it left in Redis takes their INVITEs."""
    traffic = load(deploy, 12)
    time.sleep(3)
    call_ids = call_ids_read_by(deploy, "w0", 3)
    with deploy.stopped("w0"):
        burst = Burst(deploy, call_ids)
        recovery = Recovery(deploy)
        time.sleep(10)
    conclude(deploy, "worker SIGSTOP 10 s", [traffic], recovery.seconds(), extra=burst)


# --- media nodes --------------------------------------------------------------------------


def test_media_kill9(deploy: Deployment) -> None:
    traffic = load(deploy, 8)
    time.sleep(4)
    deploy.kill9("m1")
    recovery = Recovery(deploy)
    time.sleep(8)  # the workers notice (heartbeat TTL 5 s) and move its calls to m2
    deploy.start("m1")
    conclude(deploy, "media kill -9", [traffic], recovery.seconds())


def test_media_sigstop_8s(deploy: Deployment) -> None:
    """Under load, the node is stopped and, at that moment, calls start: the blocked read it
    left on the pool takes their create commands."""
    traffic = load(deploy, 10)
    time.sleep(3)
    with deploy.stopped("m1"):
        burst = Burst(deploy, [f"chaos-m-{os.getpid()}-{n}" for n in range(3)])
        recovery = Recovery(deploy)
        time.sleep(8)
    conclude(deploy, "media SIGSTOP 8 s", [traffic], recovery.seconds(), extra=burst)


# --- the edge -----------------------------------------------------------------------------


def test_edge_kill9_and_restart(deploy: Deployment) -> None:
    traffic = load(deploy, 8)
    time.sleep(4)
    deploy.kill9("edge")
    recovery = Recovery(deploy)
    time.sleep(1.5)
    deploy.start("edge")
    conclude(deploy, "edge kill -9, restart 1.5 s", [traffic], recovery.seconds())


# --- SIGTERM ------------------------------------------------------------------------------


@pytest.mark.timeout(400)  # five drains, restarts and probe calls: a slow probe must fail
def test_sigterm_each_process(deploy: Deployment) -> None:  # on its assertion, with its data
    """Each process in turn is stopped with SIGTERM under load (it must exit within its drain
    timeout) and started again; after each restart a fresh call completes."""
    traffic = load(deploy, 20)
    time.sleep(2)
    took: dict[str, float] = {}
    probes: dict[str, float] = {}  # restart -> first completed call, per process
    for name in ("w0", "m1", "edge", "w1", "m2"):
        took[name] = deploy.sigterm(name)
        start = time.monotonic()
        deploy.start(name)
        deploy.wait_healthy()
        probes[name] = round(probe_call(deploy) + time.monotonic() - start, 2)
    late = {n: t for n, t in took.items() if t > DRAIN_TIMEOUT[kind(n)]}
    conclude(deploy, "SIGTERM each process", [traffic], min(probes.values()))
    assert not late, f"not out within the drain timeout under load: {late}"
    assert all(math.isfinite(t) for t in probes.values()), f"no call after a restart: {probes}"


# --- Redis --------------------------------------------------------------------------------


def _redis_restart(deploy: Deployment, down: float) -> float:
    traffic = load(deploy, 10)
    time.sleep(3)
    # Redis goes down right after m1's heartbeat: the workers' heartbeat loops, which look
    # for lost media nodes, all meet the outage (and so retry, and come back) before m1's
    deploy.just_after_heartbeat("m1")
    recovery = Recovery(deploy)
    deploy.redis_server.restart(down)
    conclude(deploy, f"Redis restart {down:g} s", [traffic], recovery.seconds(), allow_shed=True)
    return down


def test_redis_restart_1s(deploy: Deployment) -> None:
    _redis_restart(deploy, 1)


def test_redis_restart_5s(deploy: Deployment) -> None:
    _redis_restart(deploy, 5)


# --- CPU starvation -----------------------------------------------------------------------


def test_cpu_starvation(deploy: Deployment) -> None:
    """Every sessiond process is stopped 350 ms of each 500 ms (random subsets), 8 s."""
    traffic = load(deploy, 10)
    time.sleep(2)
    start = time.monotonic()
    CpuStarver(deploy, PROCESSES).run(8)
    recovery = probe_call(deploy) + time.monotonic() - start
    conclude(deploy, "CPU starvation 8 s", [traffic], recovery)


# --- hostile traffic ----------------------------------------------------------------------


def test_invite_flood_from_one_source(deploy: Deployment) -> None:
    """127.0.0.2 floods INVITEs (150/s for 4 s, calls held 8 s; 503 is an outcome for it);
    127.0.0.3 places legitimate calls meanwhile."""
    flood = start_sipp(
        deploy, "flood", flood_scenario(8000), calls=600, rate=150, source="127.0.0.2"
    )
    time.sleep(1.5)
    legit = start_sipp(
        deploy, "legit", caller_scenario(HOLD_MS), calls=80, rate=10, source="127.0.0.3"
    )
    flood.result(timeout=180)
    start = time.monotonic()
    recovery = probe_call(deploy) + time.monotonic() - start
    conclude(deploy, "INVITE flood", [legit], recovery, allow_shed=True)


def test_cancel_right_after_180(deploy: Deployment) -> None:
    """Callers who ring (user ``ring``) and cancel as soon as the 180 comes, with the usual
    load alongside."""
    traffic = load(deploy, 6)
    cancels = start_sipp(deploy, "cancel", cancel_scenario(), calls=40, rate=10, service="ring")
    recovery = probe_call(deploy)
    conclude(deploy, "CANCEL right after 180", [traffic, cancels], recovery)


def garbage(port: int, count: int, seed: int) -> list[bytes]:
    """Datagrams the edge must survive: random bytes, truncated and mangled requests, and
    INVITEs whose Call-ID holds a byte that is not UTF-8 (0xC3 alone)."""
    rnd = random.Random(seed)
    out: list[bytes] = []
    for n in range(count):
        call_id = f"bad{seed}-{n}".encode()
        invite = (
            f"INVITE sip:service@127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.4:5999;branch=z9hG4bK-g{seed}-{n}\r\n"
            "From: <sip:g@127.0.0.4>;tag=g1\r\nTo: <sip:service@127.0.0.1>\r\n"
            "Call-ID: CALLID\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
            "Contact: <sip:g@127.0.0.4:5999>\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        pick = n % 5
        if pick == 0:
            out.append(invite.replace(b"CALLID", call_id + b"\xc3"))
        elif pick == 1:
            out.append(rnd.randbytes(rnd.randrange(1, 1400)))
        elif pick == 2:
            out.append(invite.replace(b"CALLID", call_id)[: rnd.randrange(10, len(invite))])
        elif pick == 3:
            mangled = bytearray(invite.replace(b"CALLID", call_id))
            for _ in range(8):
                mangled[rnd.randrange(len(mangled))] = rnd.randrange(256)
            out.append(bytes(mangled))
        else:
            out.append(invite.replace(b"CALLID", call_id).replace(b"From:", b"Fr\xc3m:"))
    return out


def send_garbage(port: int, count: int, seed: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((ATTACKER, 5999))
        for n, datagram in enumerate(garbage(port, count, seed)):
            s.sendto(datagram, ("127.0.0.1", port))
            if n % 50 == 49:
                time.sleep(0.01)  # about 5,000/s: a burst, not a benchmark


def _garbage_scenario(deploy: Deployment, scenario: str) -> None:
    pid = deploy.pid("edge")
    rss_before = observe.rss_kb(pid)
    start = time.monotonic()
    send_garbage(deploy.port, 1000, 1)
    traffic = load(deploy, 6)
    send_garbage(deploy.port, 1000, 2)
    recovery = probe_call(deploy, timeout=30) + time.monotonic() - start
    rss: list[int] = []
    conclude(
        deploy,
        scenario,
        [traffic],
        recovery,
        before=lambda: rss.append(observe.rss_kb(pid)),
        attacker=ATTACKER,
    )
    print(f"edge RSS {rss_before} -> {rss[0]} kB")
    assert rss[0] - rss_before < EDGE_RSS_GROWTH_KB, (rss_before, rss[0])


def test_garbage_in_the_restart_window(deploy: Deployment) -> None:
    """Within the edge's first 64*T1 (32 s) after it started."""
    _garbage_scenario(deploy, "garbage, restart window")


def test_garbage_after_the_restart_window(deploy: Deployment) -> None:
    """Past the edge's first 64*T1 (32 s): the same garbage takes the normal path."""
    traffic = load(deploy, 4)  # legitimate calls meanwhile
    traffic.result(timeout=120)
    # the window (64*T1 = 32 s) began before the edge first answered
    time.sleep(max(0.0, 34 - (time.monotonic() - deploy.edge_ready)))
    _garbage_scenario(deploy, "garbage, after the window")


def test_slow_tcp(deploy: Deployment) -> None:
    """20 TCP connections (from 127.0.0.5) each hold a partial INVITE and dribble a byte a
    second; the edge closes each at its message timeout; UDP and TCP calls go on."""
    conns = []
    for n in range(20):
        c = socket.create_connection(("127.0.0.1", deploy.port), source_address=("127.0.0.5", 0))
        c.sendall(f"INVITE sip:service@127.0.0.1 SIP/2.0\r\nCall-ID: slow{n}\r\nVia: ".encode())
        conns.append(c)
    udp = load(deploy, 6)
    tcp = start_sipp(deploy, "tcp", caller_scenario(HOLD_MS), calls=30, rate=5, transport="t1")
    closed: set[int] = set()
    deadline = time.monotonic() + TCP_MESSAGE_TIMEOUT + 10
    while len(closed) < len(conns) and time.monotonic() < deadline:
        for n, c in enumerate(conns):
            if n in closed:
                continue
            try:
                c.sendall(b"x")
            except OSError:
                closed.add(n)
        time.sleep(1)
    for c in conns:
        c.close()
    recovery = probe_call(deploy)
    conclude(deploy, "slow TCP", [udp, tcp], recovery)
    assert len(closed) == len(conns), f"{len(conns) - len(closed)} slow connections still open"
