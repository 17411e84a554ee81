"""Failure tests with real processes: a timer whose owner died, Redis restarting mid-call,
a worker drained under load, sessiond hanging up after a worker was killed."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import msgpack
import pytest

from sessiond.core.resources import default_table_path
from sipp_scenarios import uac_refused

from .harness import Cluster, background_sipp, finished, free_port, wait_for

pytestmark = [
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) missing"),
]


def test_timer_of_a_killed_worker_fires_exactly_once(cluster: Cluster, tmp_path: Path) -> None:
    table = tmp_path / "short_ring.yaml"
    text = default_table_path().read_text()
    table.write_text(
        text.replace("{after: 180, event: RingTimeout}", "{after: 3, event: RingTimeout}")
    )
    cluster.observe(f"{cluster.namespace}:{{edge:edge1}}:commands")  # counted below
    port = cluster.start_split("--answer", "app", "--table", str(table))
    (tmp_path / "uac_480.xml").write_text(uac_refused(480))
    with background_sipp(
        tmp_path,
        "-sf",
        "uac_480.xml",
        f"127.0.0.1:{port}",
        "-m",
        "1",
        "-p",
        str(free_port()),
        "-timeout",
        "30",
    ) as caller:
        assert wait_for(lambda: [s.get("state") for s in cluster.sessions()] == ["Ringing"])
        sid = cluster.sessions()[0]["sid"]
        owner = cluster.history(sid)[0]["worker"]
        cluster.kill(owner, signal.SIGKILL)  # the worker that armed the timer dies
        out, _ = caller.communicate(timeout=40)
    assert caller.returncode == 0, out[-2000:]
    session = cluster.sessions()[0]
    assert (session["state"], session["end_code"]) == ("Terminated", "480")
    fired = [h for h in cluster.history(sid) if h["event"] == "RingTimeout"]
    assert len(fired) == 1
    assert fired[0]["worker"] != owner
    commands = cluster.redis().xrange(f"{cluster.namespace}:{{edge:edge1}}:commands")
    assert [msgpack.unpackb(f[b"data"])["code"] for _, f in commands].count(480) == 1


def test_redis_restart_mid_call(tmp_path: Path) -> None:
    """A Redis of our own with AOF on: shut it down while calls are up, start it again."""
    import redis as sync_redis

    rport = free_port(kind=1)  # SOCK_STREAM
    data = tmp_path / "redis"
    data.mkdir()
    server = [
        "redis-server",
        "--port",
        str(rport),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--dir",
        str(data),
    ]
    redis_proc = subprocess.Popen(server, stdout=subprocess.DEVNULL)
    cluster = Cluster(f"redis://127.0.0.1:{rport}/0", tmp_path)
    probe = sync_redis.Redis(port=rport)
    try:
        assert wait_for(lambda: _pings(probe))
        port = cluster.start_split("--answer", "auto", workers=1)
        with background_sipp(
            tmp_path,
            "-sn",
            "uac",
            f"127.0.0.1:{port}",
            "-m",
            "10",
            "-r",
            "10",
            "-d",
            "6000",
            "-p",
            str(free_port()),
        ) as caller:
            assert wait_for(
                lambda: sum(s["state"] == "Established" for s in cluster.sessions()) == 10,
                timeout=15,
            )
            probe.shutdown(nosave=False)  # AOF is fsynced on every write
            cluster._redis = None
            time.sleep(1.0)
            redis_proc.wait(timeout=10)
            redis_proc = subprocess.Popen(server, stdout=subprocess.DEVNULL)
            assert wait_for(lambda: _pings(probe))
            out, _ = caller.communicate(timeout=60)
        assert finished(out) == (10, 0), out[-2000:]
        assert wait_for(
            lambda: all(s["state"] == "Terminated" for s in cluster.sessions()), timeout=15
        )
        assert len(cluster.sessions()) == 10
    finally:
        probe.close()
        cluster.stop_all()
        redis_proc.terminate()
        redis_proc.wait(timeout=10)


def _pings(client: object) -> bool:
    try:
        return bool(client.ping())  # type: ignore[attr-defined]
    except Exception:
        return False


def test_sigterm_drains_a_worker_under_load(cluster: Cluster, tmp_path: Path) -> None:
    port = cluster.start_split("--answer", "auto")
    with background_sipp(
        tmp_path,
        "-sn",
        "uac",
        f"127.0.0.1:{port}",
        "-m",
        "100",
        "-r",
        "25",
        "-d",
        "1000",
        "-p",
        str(free_port()),
    ) as caller:
        assert wait_for(lambda: len(cluster.sessions()) >= 30, timeout=15)
        cluster.procs["w0"].send_signal(signal.SIGTERM)
        assert cluster.procs["w0"].wait(timeout=30) == 0
        out, _ = caller.communicate(timeout=90)
    assert finished(out) == (100, 0), out[-2000:]
    assert wait_for(lambda: all(s["state"] == "Terminated" for s in cluster.sessions()))
    r = cluster.redis()
    for p in range(16):
        stream = f"{cluster.namespace}:{{p{p}}}:events"
        for consumer in r.xinfo_consumers(stream, "workers"):
            if consumer["name"] == b"w0":
                assert consumer["pending"] == 0  # the drained worker left nothing behind


def test_sessiond_hangs_up_after_a_worker_was_killed(cluster: Cluster, tmp_path: Path) -> None:
    from sessiond.cli.main import main

    cluster.start_split("--answer", "auto")
    uas_port = free_port()
    with background_sipp(
        tmp_path, "-sn", "uas", "-p", str(uas_port), "-m", "10", "-timeout", "60"
    ) as uas:
        for _ in range(10):
            target = f"sip:service@127.0.0.1:{uas_port}"
            assert main(["ctl", *cluster.common(), "call", target]) == 0
        assert wait_for(
            lambda: [s["state"] for s in cluster.sessions()].count("Established") == 10, timeout=20
        )
        cluster.kill("w1", signal.SIGKILL)
        for session in cluster.sessions():
            assert main(["ctl", *cluster.common(), "hangup", session["sid"]]) == 0
        assert wait_for(
            lambda: all(s["state"] == "Terminated" for s in cluster.sessions()), timeout=20
        )
        out, _ = uas.communicate(timeout=30)
    assert uas.returncode == 0, out[-2000:]
    assert {s["end_reason"] for s in cluster.sessions()} == {"local hangup"}
