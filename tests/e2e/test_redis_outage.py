"""A Redis outage of 5 s fails over no healthy media node (issue 18, F5).

A Redis of its own (AOF on, in the test's directory, on a free port), an edge, a worker and
two media nodes as processes, sipp holding live calls. Redis goes away for 5 s: killed
(SIGKILL) and started again on the same port with the same AOF directory, or stopped
(SIGSTOP) and continued. Every heartbeat lapses meanwhile (with AOF they come back expired).
Afterwards, over longer than the workers' grace period: no media node declared lost, no
MediaLost, no re-INVITE, the calls still up on their nodes; then sipp ends them normally."""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest
import redis

from sessiond.store import Keys
from sessiond.store.liveness import StoreContact

from .harness import (
    Cluster,
    background_sipp,
    finished,
    free_port,
    free_rtp_range,
    wait_for,
    wait_listening,
)

pytestmark = [
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) missing"),
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server missing"),
]

CALLS = 4
OUTAGE = 5.0


class OwnRedis:
    """redis-server on a free port with AOF in ``tmp``; can be killed and started again."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port(socket.SOCK_STREAM)
        self.tmp = tmp
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--appendonly", "yes", "--dir", str(self.tmp), "--save", ""]
        log = open(self.tmp / "redis.log", "ab")  # noqa: SIM115 - the process keeps it
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp)
        log.close()
        client = redis.Redis(port=self.port)
        try:
            assert wait_for(lambda: _pings(client), 15), "redis-server did not start"
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(timeout=10)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def _pings(client: redis.Redis) -> bool:
    with contextlib.suppress(redis.RedisError):
        return bool(client.ping())
    return False


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    server.stop()


def lost_announcements(cluster: Cluster, keys: Keys) -> list[str]:
    """MediaLost events in the partition streams, re-INVITEs sent to the edge."""
    r = cluster.redis()
    found = []
    for p in range(keys.partitions):
        found += [
            f"MediaLost {f[b'id'].decode()}"
            for _, f in r.xrange(keys.events(p))
            if f[b"type"] == b"MediaLost"
        ]
    for _, f in r.xrange(keys.edge_commands("edge1")):
        if f[b"type"] == b"request" and msgpack.unpackb(f[b"data"]).get("method") == "INVITE":
            found.append("re-INVITE")
    return found


def states(cluster: Cluster) -> list[str]:
    return sorted(s.get("state", "") for s in cluster.sessions())


@pytest.mark.parametrize("outage", ["restart", "restart-nodes-last", "sigstop-nodes-last"])
def test_a_redis_outage_fails_over_no_media_node(
    own_redis: OwnRedis, tmp_path: Path, outage: str
) -> None:
    """``restart``: Redis killed and started again after 5 s. Who reconnects first is a race
    (each process retries on its own backoff): the media nodes may or may not write their
    heartbeats before the worker looks. ``-nodes-last`` makes them last, as their backoff
    may (it reaches 5 s): they are stopped with Redis and let go 5 s after it is back."""
    cluster = Cluster(own_redis.url, tmp_path)
    keys = Keys(cluster.namespace)
    try:
        port = free_port()
        common = cluster.common()
        cluster.start(
            "edge", "edge", *common, "--listen", f"udp:127.0.0.1:{port}", "--name", "edge1"
        )
        cluster.start("w0", "worker", *common, "--name", "w0", "--answer", "auto")
        low, high = map(int, free_rtp_range(400).split("-"))
        media = [
            cluster.start_media("media1", "m1", f"{low}-{low + 198}"),
            cluster.start_media("media2", "m2", f"{low + 200}-{high}"),
        ]
        wait_listening(port)
        zset = keys.processes("media")
        assert wait_for(lambda: len(cluster.redis().zrange(zset, 0, -1)) == 2, 15)
        grace = StoreContact.for_heartbeats(5).grace  # the workers' default heartbeat TTL
        hold = OUTAGE + grace + 8  # seconds of each call: past the outage and the grace
        args = ["-sn", "uac", f"127.0.0.1:{port}", "-m", str(CALLS), "-r", str(CALLS)]
        args += ["-d", str(int(hold * 1000)), "-p", str(free_port()), "-timeout", "55"]
        nodes_last = outage.endswith("-nodes-last")
        with background_sipp(tmp_path, *args, "-timeout_error") as caller:
            assert wait_for(lambda: states(cluster) == ["Established"] * CALLS, 15), states(cluster)
            nodes = {s["sid"]: s["media_node"] for s in cluster.sessions()}
            server = own_redis.proc
            assert server is not None
            for node in media if nodes_last else []:
                node.send_signal(signal.SIGSTOP)
            try:
                if outage.startswith("restart"):
                    server.kill()
                    server.wait(timeout=10)
                    time.sleep(OUTAGE)
                    own_redis.start()  # same port, same AOF directory
                else:
                    server.send_signal(signal.SIGSTOP)
                    time.sleep(OUTAGE)
                    server.send_signal(signal.SIGCONT)
                back = time.monotonic()
                if nodes_last:
                    time.sleep(OUTAGE)
            finally:
                for node in media:
                    node.send_signal(signal.SIGCONT)
            # longer than the workers' grace after the store is back: they judge again
            deadline = back + grace + 3
            while time.monotonic() < deadline:
                with contextlib.suppress(redis.RedisError):
                    assert lost_announcements(cluster, keys) == [], cluster.log("w0")[-3000:]
                time.sleep(0.5)
            assert lost_announcements(cluster, keys) == [], cluster.log("w0")[-3000:]
            assert sorted(cluster.redis().zrange(zset, 0, -1)) == [b"m1", b"m2"]
            assert states(cluster) == ["Established"] * CALLS
            assert {s["sid"]: s["media_node"] for s in cluster.sessions()} == nodes
            legs = sum(cluster.redis().hlen(keys.media_legs(n)) - 1 for n in ("m1", "m2"))
            assert legs == CALLS  # every leg still listed by its node
            out, _ = caller.communicate(timeout=60)
        assert finished(out) == (CALLS, 0), out[-3000:]
        assert wait_for(lambda: states(cluster) == ["Terminated"] * CALLS, 15), states(cluster)
        assert lost_announcements(cluster, keys) == []
        assert "declared lost" not in cluster.log("media1") + cluster.log("media2")
    finally:
        cluster.stop_all()
