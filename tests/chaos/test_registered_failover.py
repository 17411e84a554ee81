"""A registered phone called while processes die (kill -9): two edges with ``--registrar``,
two workers, a media node, Redis with AOF, all separate processes on loopback. The phone
is a sipp UAS that registered over UDP through edge A; the caller calls alice through
edge B.

1. Edge A dies, then the worker holding the caller's INVITE dies before reading it (the
   INVITE is in flight): the other worker takes the partition over, finds alice's binding
   on a silent edge and calls her phone through edge B (UDP to where her REGISTER came
   from). The call is answered and the caller's BYE reaches the phone. Without the
   fail-over the INVITE waits in dead edge A's command stream and the call never rings.
2. Edge A is restarted (same name and port): the next call goes out through it again; edge
   A and the worker that reads the phone's answer are killed while the phone rings, edge A
   comes back, takes the phone's (retransmitted) 200, and the phone's BYE reaches the
   caller.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sessiond.store.keys import HEARTBEAT_TTL, Keys
from sessiond.store.streams import MAX_BACKOFF
from sipp_scenarios import callee, caller

from .deploy import Caller, Cluster, RedisServer, free_port, wait_for, wait_listening

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.e2e.harness import ENV, background_sipp  # noqa: E402
from tests.e2e.test_registered_calls import PRIVATE, bound, register, to_aor  # noqa: E402
from tests.ports import free_udp_range  # noqa: E402

pytestmark = [pytest.mark.timeout(240)]
EDGES = ("edgeA", "edgeB")
WORKERS = ("w0", "w1")


class UserCaller(Caller):
    """:class:`Caller` dialling ``sip:alice@example.com`` (Request-URI and To)."""

    def _request(self, method: str, cseq: int, body: str = "") -> bytes:
        raw = super()._request(method, cseq, body)
        return raw.replace(f"sip:service@127.0.0.1:{self.port}".encode(), b"sip:alice@example.com")


def answers_after(ring_ms: int, *, hangs_up: bool) -> str:
    """The phone: 180, ``ring_ms`` of ringing, 200 (retransmitted until the ACK), then it
    hangs up (``hangs_up``) or takes the caller's BYE."""
    scenario = callee("hangs_up")
    ok = scenario.index("  <send><![CDATA[\nSIP/2.0 200 OK")
    scenario = (
        scenario[:ok]
        + f'  <pause milliseconds="{ring_ms}"/>\n'
        + scenario[ok:].replace("<send>", '<send retrans="500">', 1)
    )
    if not hangs_up:
        bye = scenario.index('  <pause milliseconds="300"/>')
        taken = '  <recv request="BYE"/>\n' + OK_LAST
        scenario = scenario[:bye] + taken + '  <Reference variables="caller,cseq,contact"/>\n'
        scenario += "</scenario>\n"
    return scenario


OK_LAST = (
    "  <send><![CDATA[\nSIP/2.0 200 OK\n[last_Via:]\n[last_From:]\n[last_To:]\n"
    "[last_Call-ID:]\n[last_CSeq:]\nContent-Length: 0\n\n]]></send>\n"
)


class Bed:
    """The deployment: processes by name, their ports, and the helpers the test needs."""

    def __init__(self, tmp: Path, server: RedisServer) -> None:
        self.cluster = Cluster(server.url, tmp)
        self.keys = Keys(self.cluster.namespace)
        self.ports = {e: free_port() for e in EDGES}
        self.metrics = {w: free_port(socket.SOCK_STREAM) for w in WORKERS}
        self.args: dict[str, list[str]] = {}
        common = self.cluster.common()
        for e in EDGES:
            self.args[e] = ["edge", *common, "--name", e, "--registrar", "example.com"]
            self.args[e] += ["--listen", f"udp:127.0.0.1:{self.ports[e]}"]
        for w in WORKERS:
            self.args[w] = ["worker", *common, "--name", w]
            self.args[w] += ["--metrics-port", str(self.metrics[w])]
        self.args["m1"] = ["media", *common, "--name", "m1", "--address", "127.0.0.1"]
        self.args["m1"] += ["--rtp-ports", free_udp_range(100)]

    def start(self, name: str) -> None:
        self.cluster.start(name, *self.args[name])

    def redis(self) -> Any:
        return self.cluster.redis()

    def kill9(self, name: str) -> None:
        self.cluster.kill(name, signal.SIGKILL)

    def edge_heard(self, edge: str) -> float:
        """Seconds since ``edge``'s last heartbeat (inf: never)."""
        score = self.redis().zscore(self.keys.processes("edge"), edge)
        return float("inf") if score is None else time.time() - float(score)

    def owner(self, call_id: str) -> str:
        raw = self.redis().get(self.keys.leases()[self.keys.partition_of_call(call_id)])
        return (raw or b"").decode()

    def call_id_of(self, worker: str) -> str:
        for n in range(10_000):
            call_id = f"failover-{n}@127.0.0.1"
            if self.owner(call_id) == worker:
                return call_id
        raise AssertionError(f"{worker} holds no partition")

    def ready(self) -> bool:
        leases = {(v or b"").decode() for v in self.redis().mget(self.keys.leases())}
        edges = all(self.edge_heard(e) < 2 for e in EDGES)
        return leases == set(WORKERS) and edges

    def failovers(self, worker: str) -> float:
        import urllib.request

        url = f"http://127.0.0.1:{self.metrics[worker]}/metrics"
        with urllib.request.urlopen(url, timeout=3) as resp:
            text = resp.read().decode()
        for line in text.splitlines():
            if line.startswith('sessiond_location_failover_total{action="moved"}'):
                return float(line.rpartition(" ")[2])
        return 0.0

    def logs(self) -> str:
        return "\n".join(
            f"--- {n}:\n{self.cluster.log(n)[-2500:]}" for n in (*EDGES, *WORKERS, "m1")
        )


@pytest.fixture
def bed(tmp_path: Path) -> Iterator[Bed]:
    server = RedisServer(tmp_path)
    server.start()
    b = Bed(tmp_path, server)
    try:
        add = [sys.executable, "-m", "sessiond", "ctl", *b.cluster.common()]
        done = subprocess.run(
            [*add, "user", "add", "alice@example.com", "s3cret"],
            env=ENV,
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        for name in (*EDGES, *WORKERS, "m1"):
            b.start(name)
        for e in EDGES:
            wait_listening(b.ports[e], 30)
        assert wait_for(b.ready, 30, 0.2), b.logs()
        # a worker judges heartbeats only after steady contact with Redis for the heartbeat
        # TTL + the longest retry backoff + 1 s (store/liveness.py): a deployment that has
        # been up that long
        time.sleep(HEARTBEAT_TTL + MAX_BACKOFF + 1.5)
        yield b
    finally:
        b.cluster.stop_all()
        if b.cluster._redis is not None:
            b.cluster._redis.close()
        server.stop()


def phone_log(tmp: Path, name: str) -> str:
    return "".join(p.read_text(errors="replace") for p in tmp.glob(f"{name}_*_messages.log"))


def test_a_registered_phone_is_called_while_its_edge_and_a_worker_die(bed: Bed) -> None:
    tmp = bed.cluster.tmp
    phone_port = free_port()
    register(bed.cluster, bed.ports["edgeA"], phone_port, f"sip:alice@{PRIVATE}:5999")
    stored = bed.redis().hgetall(f"{bed.cluster.namespace}:location:alice@example.com")
    assert [b'"edge":"edgeA"' in v for v in stored.values()] == [True]

    # 1. edge A dies; the worker holding the INVITE dies before reading it
    (tmp / "phone1.xml").write_text(answers_after(1000, hangs_up=False))
    phone = ("-sf", "phone1.xml", "-p", str(phone_port), "-i", "127.0.0.1", "-m", "1")
    with background_sipp(tmp, *phone, "-trace_msg", "-timeout", "60") as first:
        assert wait_for(lambda: bound(phone_port)), first.communicate(timeout=5)[0]
        bed.kill9("edgeA")
        assert wait_for(lambda: bed.edge_heard("edgeA") > HEARTBEAT_TTL + 0.5, 15, 0.1)
        call_id = bed.call_id_of("w0")
        bed.cluster.procs["w0"].send_signal(signal.SIGSTOP)
        call = UserCaller(bed.ports["edgeB"], call_id)
        call.invite()
        stream = bed.keys.events(bed.keys.partition_of_call(call_id))
        assert wait_for(lambda: bed.redis().xlen(stream) > 0, 10, 0.05)
        bed.kill9("w0")
        assert call.finish(hold=0.5, timeout=40), bed.logs()
        out, _ = first.communicate(timeout=30)
        assert first.returncode == 0, (out[-2000:], bed.logs())
    invite = phone_log(tmp, "phone1")
    assert f"127.0.0.1:{bed.ports['edgeB']}" in invite  # the INVITE came from edge B
    assert "is silent, calling it through edgeB" in bed.cluster.log("w1")
    assert bed.failovers("w1") == 1

    # 2. edge A back: it carries the next call; it and a worker die while the phone rings
    bed.start("edgeA")
    bed.start("w0")
    wait_listening(bed.ports["edgeA"], 30)
    assert wait_for(bed.ready, 30, 0.2), bed.logs()
    (tmp / "phone2.xml").write_text(answers_after(2500, hangs_up=True))
    phone = ("-sf", "phone2.xml", "-p", str(phone_port), "-i", "127.0.0.1", "-m", "1")
    with background_sipp(tmp, *phone, "-trace_msg", "-timeout", "60") as second:
        assert wait_for(lambda: bound(phone_port)), second.communicate(timeout=5)[0]
        (tmp / "caller2.xml").write_text(to_aor(caller("hung_up")))
        args = ("-sf", "caller2.xml", "-p", str(free_port()), "-i", "127.0.0.1", "-m", "1")
        with background_sipp(
            tmp, f"127.0.0.1:{bed.ports['edgeB']}", *args, "-timeout", "60"
        ) as dialler:
            assert wait_for(lambda: "SIP/2.0 180" in phone_log(tmp, "phone2"), 20, 0.05)
            invite = phone_log(tmp, "phone2")
            assert f"127.0.0.1:{bed.ports['edgeA']}" in invite  # through edge A again
            leg = next(
                line.split(":", 1)[1].strip()
                for line in invite.splitlines()
                if line.lower().startswith("call-id:")
            )
            victim = bed.owner(leg)
            bed.kill9("edgeA")
            bed.kill9(victim)
            bed.start("edgeA")
            out, _ = dialler.communicate(timeout=90)
            assert dialler.returncode == 0, (out[-2000:], bed.logs())
        out, _ = second.communicate(timeout=30)
        assert second.returncode == 0, (out[-2000:], bed.logs())
    sessions = bed.cluster.sessions
    assert wait_for(lambda: all(s["state"] == "Terminated" for s in sessions()), 40, 0.5), [
        (s["role"], s["state"]) for s in sessions()
    ]
