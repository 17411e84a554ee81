"""A deployment for the chaos suite, as real processes on loopback: a Redis server of its own
(AOF on, restartable on the same port and directory), one edge (UDP and TCP), two workers,
two media nodes, each with a metrics endpoint; and the sipp traffic that runs against it.

Every process is bounded in time and stopped at the end; every port is chosen at run time."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis as sync_redis

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.e2e import flow_scenarios as fs  # noqa: E402
from tests.e2e.harness import (  # noqa: E402
    Cluster,
    finished,
    free_port,
    wait_for,
    wait_listening,
)

WORKERS = ("w0", "w1")
MEDIA = ("m1", "m2")
PROCESSES = ("edge", *WORKERS, *MEDIA)

# The longest a process may take to exit after SIGTERM, from the code: the edge drains its
# queues for at most 2 s (and unregisters for at most 4 s, none here); a worker waits at
# most 30 s for its readers' batch in hand; a media node waits --drain-timeout for its
# legs. Each plus 5 s for the interpreter to start and finish on a busy 2-core machine.
MEDIA_DRAIN = 5.0
DRAIN_TIMEOUT = {"edge": 6.0 + 5, "worker": 30.0 + 5, "media": MEDIA_DRAIN + 5}
RTP_PORTS_PER_NODE = 400  # 200 legs a node: a flood still reaches its per-source share (134)
TCP_MESSAGE_TIMEOUT = 3.0

ROUTES = """rules:
  - match: {to: "sip:ring@*"}   # rings until the caller cancels (CANCEL scenario)
    do: ring
"""


def kind(name: str) -> str:
    return "edge" if name == "edge" else "worker" if name in WORKERS else "media"


class RedisServer:
    """``redis-server`` on a free port with the append-only file on: restarts keep the data."""

    def __init__(self, tmp: Path, *extra: str) -> None:
        self.port = free_port(socket.SOCK_STREAM)
        self.dir = tmp / "redis"
        self.dir.mkdir(exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.extra = extra  # more redis-server options (--appendfsync always...)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--appendonly", "yes"]
        args += ["--dir", str(self.dir), "--save", "", "--logfile", "redis.log", *self.extra]
        self.proc = subprocess.Popen(["redis-server", *args], cwd=self.dir)
        client = sync_redis.Redis(port=self.port, socket_timeout=1)
        try:
            assert wait_for(self._ping(client), 15, 0.05), "redis-server did not start"
            assert wait_for(lambda: not client.info("persistence")["loading"], 15, 0.05)
        finally:
            client.close()

    @staticmethod
    def _ping(client: Any) -> Any:
        def ping() -> bool:
            try:
                return bool(client.ping())
            except sync_redis.RedisError:
                return False

        return ping

    def stop(self) -> None:
        """SIGTERM: Redis writes the AOF out and exits."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill9(self) -> None:
        """SIGKILL: whatever the AOF holds by then is what comes back."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self, down: float) -> None:
        self.stop()
        time.sleep(down)
        self.start()


@dataclass
class Deployment:
    """The processes of one deployment; ``start_all`` waits until they all work together."""

    cluster: Cluster
    redis_server: RedisServer
    port: int = field(default_factory=free_port)
    metrics: dict[str, int] = field(default_factory=dict)
    args: dict[str, list[str]] = field(default_factory=dict)
    started: dict[str, float] = field(default_factory=dict)
    edge_ready: float = 0.0  # when the edge first answered: its restart window began before

    @property
    def tmp(self) -> Path:
        return self.cluster.tmp

    @property
    def namespace(self) -> str:
        return self.cluster.namespace

    def redis(self) -> Any:
        return self.cluster.redis()

    def pid(self, name: str) -> int:
        return self.cluster.procs[name].pid

    def start_all(self) -> None:
        (self.tmp / "routes.yaml").write_text(ROUTES)
        base = random.Random(os.getpid() ^ self.port).randrange(10000, 30000, 2)
        common = self.cluster.common()
        listen = [f"udp:127.0.0.1:{self.port}", f"tcp:127.0.0.1:{self.port}"]
        for name in PROCESSES:
            self.metrics[name] = free_port(socket.SOCK_STREAM)
        self.args["edge"] = ["edge", *common, "--name", "edge1"]
        for where in listen:
            self.args["edge"] += ["--listen", where]
        self.args["edge"] += ["--tcp-message-timeout", str(TCP_MESSAGE_TIMEOUT)]
        for w in WORKERS:
            self.args[w] = ["worker", *common, "--name", w, "--answer", "auto"]
            self.args[w] += ["--routes", str(self.tmp / "routes.yaml")]
        for n, m in enumerate(MEDIA):
            first = base + n * (RTP_PORTS_PER_NODE + 2)
            ports = f"{first}-{first + RTP_PORTS_PER_NODE - 1}"
            self.args[m] = ["media", *common, "--name", m, "--rtp-ports", ports]
            self.args[m] += ["--address", "127.0.0.1", "--drain-timeout", str(MEDIA_DRAIN)]
        for name in PROCESSES:
            self.start(name)
        wait_listening(self.port, 30)
        self.edge_ready = time.monotonic()
        self.wait_healthy()

    def start(self, name: str) -> None:
        args = [*self.args[name], "--metrics-port", str(self.metrics[name])]
        self.cluster.start(name, *args)
        self.started[name] = time.monotonic()

    def wait_healthy(self, timeout: float = 30) -> None:
        """Both workers hold leases, both media nodes heartbeat, the edge answers."""
        r, ns = self.redis(), self.namespace

        def ready() -> bool:
            leases = r.mget([f"{ns}:{{leases}}:p{n}" for n in range(16)])
            nodes = [r.exists(f"{ns}:process:media:{m}") for m in MEDIA]
            return all(leases) and len({x for x in leases if x}) == 2 and all(nodes)

        assert wait_for(ready, timeout, 0.2), "deployment did not come up"

    def just_after_heartbeat(self, node: str, timeout: float = 5) -> None:
        """Return right after media node ``node`` wrote its heartbeat (5 s TTL, each second):
        a fault then starts a whole second before its next one, as late as it can be."""
        key = f"{self.namespace}:process:media:{node}"
        r = self.redis()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if r.pttl(key) > 4950:
                return
            time.sleep(0.005)
        raise AssertionError(f"no heartbeat from {node}")

    def signal(self, name: str, sig: int) -> None:
        self.cluster.procs[name].send_signal(sig)

    def kill9(self, name: str) -> None:
        self.cluster.kill(name, signal.SIGKILL)

    @contextlib.contextmanager
    def stopped(self, name: str) -> Iterator[None]:
        """SIGSTOP for the duration of the block, SIGCONT after (even on failure)."""
        self.signal(name, signal.SIGSTOP)
        try:
            yield
        finally:
            self.signal(name, signal.SIGCONT)

    def sigterm(self, name: str) -> float:
        """SIGTERM one process; seconds it took to exit (inf: it did not, within its drain
        timeout, and was killed)."""
        proc = self.cluster.procs[name]
        if proc.poll() is not None:
            return 0.0
        start = time.monotonic()
        proc.send_signal(signal.SIGCONT)  # a stopped process cannot act on SIGTERM
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=DRAIN_TIMEOUT[kind(name)])
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return float("inf")
        return time.monotonic() - start

    def stop_all(self) -> dict[str, float]:
        """SIGTERM every process at once; seconds each took to exit."""
        live = {n: p for n, p in self.cluster.procs.items() if p.poll() is None}
        start = time.monotonic()
        for p in live.values():
            p.send_signal(signal.SIGCONT)
            p.send_signal(signal.SIGTERM)
        took: dict[str, float] = {}
        for name, p in live.items():
            left = DRAIN_TIMEOUT[kind(name)] - (time.monotonic() - start)
            try:
                p.wait(timeout=max(0.1, left))
                took[name] = time.monotonic() - start
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                took[name] = float("inf")
        return took

    def scrape(self, name: str) -> dict[str, float]:
        """The process's Prometheus metrics: sample name with labels -> value ({} if down)."""
        url = f"http://127.0.0.1:{self.metrics[name]}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:
                text = resp.read().decode()
        except OSError:
            return {}
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                with contextlib.suppress(ValueError):
                    out[key] = float(value)
        return out


# --- sipp traffic -------------------------------------------------------------------------


# The ACK of a final non-2xx response: the INVITE's Via (the response's), so it matches the
# server transaction.
ACK_FINAL = (
    "  <send><![CDATA[\nACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0\n[last_Via:]\n"
    "From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]\n"
    "To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]\nCall-ID: [call_id]\n"
    "CSeq: 1 ACK\nMax-Forwards: 70\nContent-Length: 0\n\n]]></send>\n"
)


def caller_scenario(hold_ms: int) -> str:
    """A legitimate caller: INVITE, takes the 200, ACKs, holds ``hold_ms``, hangs up. While
    it holds it answers any re-INVITE (the call moved to another media node) with 200 and
    its SDP, takes the ACK, and holds again. A 503 with Retry-After (the edge's documented
    shedding) is ACKed and counted apart (:func:`shed`); any other outcome fails the call."""
    return fs.scenario(
        "chaos caller",
        fs.uac_invite(1),
        fs.recv(100, optional=True),
        fs.recv(180, optional=True),
        '  <recv response="503" optional="true" next="9">'
        '<action><ereg regexp="Retry-After: [0-9]+" search_in="msg" check_it="true" '
        'assign_to="ra"/></action></recv>\n',
        '  <recv response="200" rrs="true"/>\n',
        fs.uac_ack(1),
        '  <label id="1"/>\n',
        f'  <recv request="INVITE" timeout="{hold_ms}" ontimeout="2"/>\n',
        fs.answer(200, fs.SDP.format(version=2, direction="sendrecv"), "application/sdp"),
        '  <recv request="ACK" next="1"/>\n',
        '  <label id="2"/>\n',
        fs.uac_request("BYE", 2),
        fs.recv(200),
        '  <nop next="10"/>\n',
        '  <label id="9"/>\n',
        ACK_FINAL,
        '  <label id="10"/>\n',
        variables="ra",
    )


def flood_scenario(hold_ms: int) -> str:
    """The flooder: a caller like the legitimate one (no re-INVITEs), for whom a 503 (the
    edge's rate limit, or shedding) is an outcome, not a failure: it ACKs it and stops."""
    return fs.scenario(
        "chaos flood",
        fs.uac_invite(1),
        fs.recv(100, optional=True),
        fs.recv(180, optional=True),
        '  <recv response="503" optional="true" next="3"/>\n',
        '  <recv response="200" rrs="true"/>\n',
        fs.uac_ack(1),
        f'  <pause milliseconds="{hold_ms}"/>\n',
        fs.uac_request("BYE", 2),
        fs.recv(200),
        '  <nop next="4"/>\n',
        '  <label id="3"/>\n',
        ACK_FINAL,
        '  <label id="4"/>\n',
    )


def cancel_scenario() -> str:
    """A caller who cancels as soon as the 180 comes (the call rings: user ``ring``)."""
    cancel = (
        "  <send><![CDATA[\nCANCEL sip:[service]@[remote_ip]:[remote_port] SIP/2.0\n"
        "[last_Via:]\nFrom: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00"
        "[call_number]\nTo: <sip:[service]@[remote_ip]:[remote_port]>\nCall-ID: [call_id]\n"
        "CSeq: 1 CANCEL\nMax-Forwards: 70\nContent-Length: 0\n\n]]></send>\n"
    )
    return fs.scenario(
        "chaos cancel",
        fs.uac_invite(1),
        fs.recv(100, optional=True),
        fs.recv(180),
        cancel,
        fs.recv(200),
        fs.recv(487),
        ACK_FINAL,
    )


@dataclass
class Traffic:
    """One sipp run in the background; ``result()`` waits for it: (successful, failed)."""

    proc: subprocess.Popen[str]
    name: str
    calls: int
    errors: Path
    _out: list[str] = field(default_factory=list)

    def result(self, timeout: float = 120) -> tuple[int, int]:
        if not self._out:
            try:
                out, _ = self.proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                out, _ = self.proc.communicate()
            self._out.append(out)
        return finished(self._out[0])

    @property
    def output(self) -> str:
        return self._out[0] if self._out else ""

    def shed(self) -> int:
        """Calls refused with 503 and Retry-After: the 503 line of sipp's final screen, less
        the 503s without Retry-After (failed calls, in sipp's error file)."""
        self.result()
        refused = 0
        for line in self.output.splitlines():
            if "503 <----------" in line:
                refused = int(line.split("<----------")[1].split()[0])
        text = self.errors.read_text(errors="replace") if self.errors.exists() else ""
        return refused - text.count("with regexp 'Retry-After")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def start_sipp(
    deploy: Deployment,
    name: str,
    xml: str,
    *,
    calls: int,
    rate: float,
    source: str = "127.0.0.1",
    service: str = "service",
    transport: str = "u1",
    extra: tuple[str, ...] = (),
) -> Traffic:
    """sipp as a caller (``xml``) from ``source`` to the edge: ``calls`` at ``rate``/s.
    A call waits at most 32 s for any message (then it fails), the whole run 150 s."""
    tmp = deploy.tmp
    (tmp / f"{name}.xml").write_text(xml)
    args = ["sipp", f"127.0.0.1:{deploy.port}", "-sf", f"{name}.xml", "-s", service]
    local = free_port(socket.SOCK_STREAM if transport.startswith("t") else socket.SOCK_DGRAM)
    args += ["-i", source, "-p", str(local), "-mp", str(free_port()), "-t", transport]
    args += ["-m", str(calls), "-r", str(rate), "-rp", "1000", "-l", "2000"]
    args += ["-recv_timeout", "32000", "-timeout", "150s", "-timeout_error"]
    args += ["-buff_size", "4194304", "-nostdin", "-trace_err", "-error_file", f"{name}.err"]
    proc = subprocess.Popen(
        [*args, *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp
    )
    return Traffic(proc, name, calls, tmp / f"{name}.err")


def probe_call(deploy: Deployment, timeout: float = 60) -> float:
    """Seconds until one fresh call completes (INVITE to BYE); inf if none within timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        t = start_sipp(deploy, "probe", caller_scenario(100), calls=1, rate=1)
        ok, _ = t.result(timeout=45)
        if ok == 1:
            return time.monotonic() - start
        time.sleep(0.2)
    return float("inf")


class CpuStarver:
    """SIGSTOP/SIGCONT cycles over the given processes: each is stopped ``stopped_ms`` out of
    every ``period_ms``, for ``seconds`` (bounded: never starves the machine itself)."""

    def __init__(self, deploy: Deployment, names: tuple[str, ...]) -> None:
        self.deploy, self.names = deploy, names

    def run(self, seconds: float, period_ms: int = 500, stopped_ms: int = 350) -> int:
        cycles = 0
        rnd = random.Random(7)
        end = time.monotonic() + seconds
        try:
            while time.monotonic() < end:
                names = [n for n in self.names if rnd.random() < 0.7] or list(self.names)
                for n in names:
                    self.deploy.signal(n, signal.SIGSTOP)
                time.sleep(stopped_ms / 1000)
                for n in names:
                    self.deploy.signal(n, signal.SIGCONT)
                time.sleep((period_ms - stopped_ms) / 1000)
                cycles += 1
        finally:
            for n in self.names:
                self.deploy.signal(n, signal.SIGCONT)
        return cycles


def in_thread(target: Any) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


# --- a caller of our own, for calls that must land on one partition -----------------------

SDP_OFFER = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


def _header(msg: bytes, name: str) -> str:
    for line in msg.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        key, _, value = line.decode(errors="replace").partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return ""


class Caller:
    """One call over UDP from 127.0.0.1, step by step: :meth:`invite` sends the INVITE at
    once, :meth:`finish` waits for the 200, ACKs, holds, sends BYE and takes its 200."""

    def __init__(self, port: int, call_id: str) -> None:
        self.port, self.call_id = port, call_id
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.local = self.sock.getsockname()[1]
        self.tag = f"c{random.randrange(1 << 30)}"
        self.to_tag = ""
        self.ok = False

    def _request(self, method: str, cseq: int, body: str = "") -> bytes:
        branch = f"z9hG4bK-{method}-{random.randrange(1 << 40)}"
        to = f"<sip:service@127.0.0.1:{self.port}>" + (f";tag={self.to_tag}" if self.to_tag else "")
        ctype = "Content-Type: application/sdp\r\n" if body else ""
        return (
            f"{method} sip:service@127.0.0.1:{self.port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.local};branch={branch};rport\r\n"
            f"From: <sip:caller@127.0.0.1>;tag={self.tag}\r\nTo: {to}\r\n"
            f"Call-ID: {self.call_id}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\n"
            f"Contact: <sip:caller@127.0.0.1:{self.local}>\r\n{ctype}"
            f"Content-Length: {len(body)}\r\n\r\n{body}"
        ).encode()

    def invite(self) -> None:
        self._invite = self._request("INVITE", 1, SDP_OFFER)
        self.sock.sendto(self._invite, ("127.0.0.1", self.port))

    def _wait(self, cseq: str, timeout: float, resend: bytes) -> bytes | None:
        deadline = time.monotonic() + timeout
        self.sock.settimeout(0.5)
        while time.monotonic() < deadline:
            try:
                msg = self.sock.recv(65535)
            except TimeoutError:
                self.sock.sendto(resend, ("127.0.0.1", self.port))
                continue
            status = msg.split(b" ", 2)[1] if msg.startswith(b"SIP/2.0 ") else b""
            if status.isdigit() and int(status) >= 200 and _header(msg, "CSeq") == cseq:
                return msg
        return None

    def finish(self, hold: float = 0.5, timeout: float = 30) -> bool:
        try:
            answer = self._wait("1 INVITE", timeout, self._invite)
            if answer is None or not answer.startswith(b"SIP/2.0 200"):
                return False
            self.to_tag = _header(answer, "To").rsplit("tag=", 1)[-1]
            self.sock.sendto(self._request("ACK", 1), ("127.0.0.1", self.port))
            time.sleep(hold)
            bye = self._request("BYE", 2)
            self.sock.sendto(bye, ("127.0.0.1", self.port))
            done = self._wait("2 BYE", timeout, bye)
            self.ok = done is not None and done.startswith(b"SIP/2.0 200")
            return self.ok
        finally:
            self.sock.close()


def call_ids_read_by(deploy: Deployment, worker: str, count: int) -> list[str]:
    """``count`` Call-IDs whose partitions ``worker`` holds the lease of now."""
    from sessiond.store.keys import Keys

    keys = Keys(deploy.namespace)
    owners = [(o or b"").decode() for o in deploy.redis().mget(keys.leases())]
    out: list[str] = []
    n = 0
    while len(out) < count:
        call_id = f"chaos-{os.getpid()}-{n}@127.0.0.1"
        if owners[keys.partition_of_call(call_id)] == worker:
            out.append(call_id)
        n += 1
    return out
