"""End to end: real sessiond processes, a real Redis, sipp as the far end (UDP and TCP)."""

from __future__ import annotations

import shutil
import signal
import socket
from pathlib import Path

import pytest

from sessiond.store.history import parse as parse_history

from .harness import (
    Cluster,
    background_sipp,
    finished,
    free_port,
    sipp,
    stats,
    wait_for,
)

pytestmark = [
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) missing"),
]


def test_run_on_embedded_store_answers_sipp(cluster: Cluster, tmp_path: Path) -> None:
    port = cluster.start_run(embedded=True)
    result = sipp(
        tmp_path,
        "-sn",
        "uac",
        f"127.0.0.1:{port}",
        "-m",
        "20",
        "-r",
        "20",
        "-d",
        "500",
        "-mp",
        str(free_port()),
        "-p",
        str(free_port()),
    )
    assert stats(result) == (20, 0), result.stdout[-2000:]
    assert result.returncode == 0


def test_separate_processes_200_calls(cluster: Cluster, tmp_path: Path) -> None:
    port = cluster.start_split("--answer", "auto")
    result = sipp(
        tmp_path,
        "-sn",
        "uac",
        f"127.0.0.1:{port}",
        "-m",
        "200",
        "-r",
        "50",
        "-l",
        "100",
        "-d",
        "200",
        "-mp",
        str(free_port()),
        "-p",
        str(free_port()),
    )
    assert stats(result) == (200, 0), result.stdout[-2000:]
    assert wait_for(lambda: len(cluster.sessions()) == 200)
    assert wait_for(lambda: all(s["state"] == "Terminated" for s in cluster.sessions()))
    session = cluster.sessions()[0]
    # readable with plain HGETALL: no decoder needed
    assert session["role"] == "UAS"
    assert session["end_reason"] == "remote hangup"
    assert session["remote_sdp"].startswith("v=0")
    assert session["media_node"] == "m1"
    r = cluster.redis()
    history_key = f"{cluster.namespace}:{{{session['sid'][:10]}}}:history:{session['sid']}"
    lines = [line.decode() for line in r.lrange(history_key, 0, -1)]  # one line per step
    steps = [(h["from"], h["event"], h["to"]) for h in map(parse_history, lines)]
    assert steps[0] == ("Idle", "Invite", "Ringing")
    assert steps[-2:] == [("Answering", "Ack", "Established"), ("Established", "Bye", "Terminated")]
    assert ("Ringing", "ReadyToAnswer", "Answering") in steps


def test_sessiond_calls_sipp_uas_and_hangs_up(cluster: Cluster, tmp_path: Path) -> None:
    from sessiond.cli.main import main

    cluster.start_run()
    uas_port = free_port()
    with background_sipp(
        tmp_path, "-sn", "uas", "-p", str(uas_port), "-m", "1", "-timeout", "60"
    ) as uas:
        assert main(["ctl", *cluster.common(), "call", f"sip:service@127.0.0.1:{uas_port}"]) == 0
        assert wait_for(lambda: [s["state"] for s in cluster.sessions()] == ["Established"])
        sid = cluster.sessions()[0]["sid"]
        assert main(["ctl", *cluster.common(), "hangup", sid]) == 0
        assert wait_for(lambda: cluster.sessions()[0]["state"] == "Terminated")
        out, _ = uas.communicate(timeout=30)
    assert uas.returncode == 0, out[-2000:]
    assert cluster.sessions()[0]["end_reason"] == "local hangup"


def test_tcp_transport(cluster: Cluster, tmp_path: Path) -> None:
    tcp = free_port(socket.SOCK_STREAM)
    cluster.start_run("--listen", f"tcp:127.0.0.1:{tcp}")
    result = sipp(
        tmp_path,
        "-sn",
        "uac",
        "-t",
        "t1",
        f"127.0.0.1:{tcp}",
        "-m",
        "10",
        "-r",
        "10",
        "-d",
        "200",
        "-mp",
        str(free_port()),
        "-p",
        str(free_port(socket.SOCK_STREAM)),  # sipp binds TCP on it: a UDP-free port may not be
    )
    assert stats(result) == (10, 0), result.stdout[-2000:]


def test_kill_a_worker_mid_call(cluster: Cluster, tmp_path: Path) -> None:
    """Two workers; calls that last 4 s; kill -9 one worker while they are up."""
    port = cluster.start_split("--answer", "auto")
    with background_sipp(
        tmp_path,
        "-sn",
        "uac",
        f"127.0.0.1:{port}",
        "-m",
        "40",
        "-r",
        "20",
        "-d",
        "4000",
        "-p",
        str(free_port()),
    ) as caller:
        assert wait_for(
            lambda: sum(s["state"] == "Established" for s in cluster.sessions()) >= 20, timeout=15
        )
        cluster.kill("w0", signal.SIGKILL)
        out, _ = caller.communicate(timeout=120)
    assert finished(out) == (40, 0), out[-2000:]
    assert wait_for(lambda: all(s["state"] == "Terminated" for s in cluster.sessions()), timeout=15)
    assert len(cluster.sessions()) == 40


def test_sessiond_calls_sipp_uas_over_tcp(cluster: Cluster, tmp_path: Path) -> None:
    from sessiond.cli.main import main

    tcp = free_port(1)
    cluster.start_run("--listen", f"tcp:127.0.0.1:{tcp}")
    uas_port = free_port(1)
    with background_sipp(
        tmp_path, "-sn", "uas", "-t", "t1", "-p", str(uas_port), "-m", "1", "-timeout", "60"
    ) as uas:
        target = f"sip:service@127.0.0.1:{uas_port};transport=tcp"
        assert main(["ctl", *cluster.common(), "call", target]) == 0
        assert wait_for(lambda: [s["state"] for s in cluster.sessions()] == ["Established"])
        assert main(["ctl", *cluster.common(), "hangup", cluster.sessions()[0]["sid"]]) == 0
        assert wait_for(lambda: cluster.sessions()[0]["state"] == "Terminated")
        out, _ = uas.communicate(timeout=30)
    assert uas.returncode == 0, out[-2000:]
