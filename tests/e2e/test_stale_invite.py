"""A stale INVITE after its call ended (issue 18, F3), with real processes: an edge, two
workers, a media node, sipp as the caller, a real Redis.

1. Worker w0 reads the INVITE and is stopped (SIGSTOP, by its own call handler, so the
   INVITE is in its hands and in its pending list); w1 reclaims the INVITE and the call runs
   to its end; w0 is let go (SIGCONT) and goes on with the INVITE it holds.
2. The INVITE's stream entry is published again after the call ended (a late replay).

Either way: one session for the Call-ID, nothing more reaches the caller (no 180/200 to a
caller who hung up), one IncomingCall, one 180 and one 200 sent for the INVITE."""

from __future__ import annotations

import os
import shutil
import signal
import socket
from pathlib import Path
from typing import Any

import msgpack
import pytest

from sessiond.store import Keys

from .harness import Cluster, free_port, free_rtp_range, sipp, stats, wait_for, wait_listening

pytestmark = [
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) missing"),
]

# The call handler of w0: stops its own process on the first call it decides, the INVITE in
# hand (read, pending, not yet applied); the test lets it go on later.
STOPPING_HANDLER = """
import os, signal
from sessiond.worker.handlers import Accept

class StopOnce:
    stopped = False

    def decide(self, call):
        if not StopOnce.stopped:
            StopOnce.stopped = True
            os.kill(os.getpid(), signal.SIGSTOP)
        return Accept()
"""


def start(cluster: Cluster, w0_args: list[str]) -> int:
    """edge, media m1, workers w0 (``w0_args``) and w1; returns the edge's port once every
    worker holds leases."""
    port = free_port()
    common = cluster.common()
    ns = cluster.namespace
    cluster.observe(f"{ns}:{{edge:edge1}}:commands", f"{ns}:{{app}}:events")  # for sent()
    cluster.start("edge", "edge", *common, "--listen", f"udp:127.0.0.1:{port}", "--name", "edge1")
    cluster.start_media("media", "m1", free_rtp_range(100))
    cluster.start("w0", "worker", *common, "--name", "w0", *w0_args)
    cluster.start("w1", "worker", *common, "--name", "w1", "--answer", "auto")
    wait_listening(port)
    keys = Keys(cluster.namespace)
    assert wait_for(lambda: set(owners(cluster, keys)) == {"w0", "w1"}, 30)
    return port


def owners(cluster: Cluster, keys: Keys) -> list[str]:
    return [o.decode() if o else "" for o in cluster.redis().mget(keys.leases())]


def call_id_read_by(cluster: Cluster, worker: str) -> str:
    """A Call-ID whose partition ``worker`` holds the lease of."""
    keys = Keys(cluster.namespace)
    held = owners(cluster, keys)
    n = next(n for n in range(1000) if held[keys.partition_of_call(f"f3-{n}@test")] == worker)
    return f"f3-{n}@test"


def caller(tmp: Path, port: int, call_id: str, local: int) -> tuple[int, int]:
    """sipp's built-in caller: INVITE, ACK, 1 s of call, BYE. (successful, failed)."""
    args = ["-sn", "uac", f"127.0.0.1:{port}", "-m", "1", "-d", "1000", "-cid_str", call_id]
    args += ["-p", str(local), "-mp", str(free_port()), "-timeout", "40", "-timeout_error"]
    return stats(sipp(tmp, *args, timeout=60))


def sessions(cluster: Cluster, call_id: str) -> list[str]:
    return [s["sid"] for s in cluster.sessions() if s.get("call_id") == call_id]


def sent(cluster: Cluster, call_id: str) -> dict[str, int]:
    """What went out for the call: 180 and 200 answers to its INVITE, IncomingCall events."""
    r = cluster.redis()
    out = {"180": 0, "200": 0, "IncomingCall": 0}
    for _, f in r.xrange(f"{cluster.namespace}:{{edge:edge1}}:commands"):
        data: dict[str, Any] = msgpack.unpackb(f[b"data"])
        txn = str(data.get("txn", ""))
        cseq = next((line for line in txn.splitlines() if line.startswith("CSeq:")), "")
        if f[b"type"] == b"respond" and call_id in txn and cseq.endswith(" INVITE"):
            if str(data.get("code")) in out:
                out[str(data["code"])] += 1
    mine = set(sessions(cluster, call_id))
    for _, f in r.xrange(f"{cluster.namespace}:{{app}}:events"):
        if f[b"type"] == b"IncomingCall" and msgpack.unpackb(f[b"data"]).get("sid") in mine:
            out["IncomingCall"] += 1
    return out


def heard(listener: socket.socket, seconds: float) -> list[bytes]:
    """SIP messages reaching the caller's address (sipp has exited) within ``seconds``."""
    listener.settimeout(seconds)
    got = []
    try:
        while True:
            got.append(listener.recv(65536)[:60])
    except TimeoutError:
        return got


def stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] == "T"


def ended(cluster: Cluster, call_id: str) -> bool:
    states = [s["state"] for s in cluster.sessions() if s.get("call_id") == call_id]
    return states == ["Terminated"]


def test_a_stopped_workers_invite_makes_no_ghost_call(cluster: Cluster, tmp_path: Path) -> None:
    (tmp_path / "stopping.py").write_text(STOPPING_HANDLER)
    port = start(cluster, ["--handler", "stopping:StopOnce"])
    call_id = call_id_read_by(cluster, "w0")
    w0 = cluster.procs["w0"]
    local = free_port()
    try:
        # w0 stops itself holding the INVITE; w1 reclaims it and the call is made and ended
        assert caller(tmp_path, port, call_id, local) == (1, 0), cluster.log("w1")[-3000:]
        assert stopped(w0.pid), "w0 never got the INVITE"
        assert wait_for(lambda: ended(cluster, call_id), 15), cluster.sessions()
        assert sent(cluster, call_id) == {"180": 1, "200": 1, "IncomingCall": 1}
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
            listener.bind(("127.0.0.1", local))  # where the caller was
            os.kill(w0.pid, signal.SIGCONT)
            assert wait_for(
                lambda: (
                    "dropped stale Invite" in cluster.log("w0")
                    or len(sessions(cluster, call_id)) > 1
                ),
                20,
            ), cluster.log("w0")[-3000:]
            late = heard(listener, 3.0)
    finally:
        if w0.poll() is None:
            os.kill(w0.pid, signal.SIGCONT)
    assert len(sessions(cluster, call_id)) == 1, cluster.sessions()
    assert late == []
    assert sent(cluster, call_id) == {"180": 1, "200": 1, "IncomingCall": 1}


def test_an_invite_replayed_after_its_call_is_dropped(cluster: Cluster, tmp_path: Path) -> None:
    port = start(cluster, ["--answer", "auto"])
    call_id = call_id_read_by(cluster, "w0")
    local = free_port()
    assert caller(tmp_path, port, call_id, local) == (1, 0)
    assert wait_for(lambda: ended(cluster, call_id), 15), cluster.sessions()
    keys = Keys(cluster.namespace)
    stream = keys.events(keys.partition_of_call(call_id))
    r = cluster.redis()
    (invite,) = [f for _, f in r.xrange(stream) if f[b"type"] == b"Invite"]
    before = sent(cluster, call_id)
    assert before == {"180": 1, "200": 1, "IncomingCall": 1}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind(("127.0.0.1", local))
        r.xadd(stream, invite)  # the same event (same id), late

        def done() -> bool:
            group = next(g for g in r.xinfo_groups(stream) if g["name"] == b"workers")
            return bool(group["lag"] == 0 and group["pending"] == 0)

        assert wait_for(done, 15)
        late = heard(listener, 3.0)
    assert len(sessions(cluster, call_id)) == 1, cluster.sessions()
    assert late == []
    assert sent(cluster, call_id) == before
    logs = cluster.log("w0") + cluster.log("w1")
    assert "dropped stale Invite" in logs
