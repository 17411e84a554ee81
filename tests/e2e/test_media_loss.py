"""Media node loss, end to end: edge, two workers and two media nodes as separate processes
on a real Redis, sipp as the far end. The media node serving the call is killed (SIGKILL);
a worker notices its heartbeat expired, the session gets MediaLost, a new leg is made on the
other node and offered by re-INVITE (same o= session, higher version), and the call goes on
until the far end (or the application) hangs up. The states come from the Redis history."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import msgpack
import pytest

from sessiond.media.sdp import SessionDescription

from . import flow_scenarios as sc
from .harness import Cluster, background_sipp, finished, free_port, free_rtp_range, wait_for
from .test_call_flows import client, edge_requests, only_session, run_sipp

pytestmark = [
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) missing"),
]

MOVED = [
    ("Established", "MediaLost", "Established"),
    ("Established", "MediaGone", "Reoffering"),
    ("Reoffering", "MediaReady", "Reinviting"),
    ("Reinviting", "Answered", "Established"),
]


def start_two_media(cluster: Cluster, *worker_args: str) -> tuple[int, dict[str, str]]:
    """start_split (edge, w0, w1, media m1) plus media m2 on its own port range; returns the
    edge port and node name -> process name, once both nodes heartbeat."""
    port = cluster.start_split(*worker_args)
    last = int(free_rtp_range(600).split("-")[1])
    cluster.start_media("media2", "m2", f"{last + 2}-{last + 302}")
    zset = f"{cluster.namespace}:processes:media"
    assert wait_for(lambda: len(cluster.redis().zrange(zset, 0, -1)) == 2, 15)
    return port, {"m1": "media", "m2": "media2"}


def app_events(cluster: Cluster, sid: str) -> list[str]:
    entries = cluster.redis().xrange(f"{cluster.namespace}:{{app}}:events")
    return [
        f[b"type"].decode() for _, f in entries if msgpack.unpackb(f[b"data"]).get("sid") == sid
    ]


def check_the_move(cluster: Cluster, first_sdp: str, survivor: str, sid: str) -> None:
    """The re-INVITE offered the new node's SDP as a new version of the same session."""
    (reinvite,) = edge_requests(cluster, "INVITE")
    old = SessionDescription.parse(first_sdp)
    new = SessionDescription.parse(str(reinvite["sdp"]))
    assert (new.origin.username, new.origin.session_id) == (
        old.origin.username,
        old.origin.session_id,
    )
    assert new.origin.version == old.origin.version + 1
    assert new.media[0].port != old.media[0].port  # m2 has its own port range
    session = only_session(cluster)
    assert session["media_node"] == survivor
    assert session["reoffer"] == ""
    assert "MediaMoved" in app_events(cluster, sid)
    lost_node = {"m1": "m2", "m2": "m1"}[survivor]
    r = cluster.redis()
    assert not r.exists(f"{cluster.namespace}:{{media:{lost_node}}}:legs")
    assert r.zscore(f"{cluster.namespace}:processes:media", lost_node) is None


@pytest.mark.parametrize("kill_worker", [False, True])
def test_caller_keeps_the_call_when_its_media_node_dies(
    cluster: Cluster, tmp_path: Path, kill_worker: bool
) -> None:
    """sessiond answers (UAS); its media node dies; the call moves to the other node. With
    ``kill_worker`` a worker is killed at the same time: the other one does everything."""
    port, procs = start_two_media(cluster, "--answer", "auto")
    with run_sipp(tmp_path, "uac", sc.uac_media_moved(), port, "-trace_err") as caller:
        assert wait_for(lambda: only_session(cluster)["state"] == "Established", 15)
        session = only_session(cluster)
        lost = session["media_node"]
        survivor = {"m1": "m2", "m2": "m1"}[lost]
        cluster.kill(procs[lost])
        if kill_worker:
            cluster.kill("w0")
        out, _ = caller.communicate(timeout=60)
    assert finished(out) == (1, 0), out[-3000:] + cluster.log("w1")[-3000:]
    sid = session["sid"]
    assert wait_for(lambda: only_session(cluster)["state"] == "Terminated")
    seen = cluster.steps(sid)
    start = seen.index(("Answering", "Ack", "Established"))
    assert seen[start + 1 :] == [*MOVED, ("Established", "Bye", "Terminated")], seen
    check_the_move(cluster, session["local_sdp"], survivor, sid)


def test_callee_keeps_the_call_when_its_media_node_dies(cluster: Cluster, tmp_path: Path) -> None:
    """sessiond places the call (UAC) to sipp; its media node dies; the call moves; the
    application hangs up afterwards."""
    _, procs = start_two_media(cluster)
    uas_port = free_port()
    (tmp_path / "uas.xml").write_text(sc.uas_media_moved())
    args = ["-sf", "uas.xml", "-p", str(uas_port), "-m", "1", "-timeout", "60", "-timeout_error"]
    with background_sipp(tmp_path, *args) as callee:

        async def drive() -> tuple[str, dict[str, str]]:
            async with client(cluster) as app:
                sid = await app.make_call(f"sip:bob@127.0.0.1:{uas_port}")
                await app.wait_for_state(sid, "Established", timeout=15)
                session = only_session(cluster)
                cluster.kill(procs[session["media_node"]])
                deadline = time.monotonic() + 40
                while not _moved(cluster, session["media_node"]):
                    assert time.monotonic() < deadline, cluster.steps(sid)
                    await asyncio.sleep(0.1)
                await app.hangup(sid)
                await app.wait_for_state(sid, "Terminated", timeout=15)
                return sid, session

        sid, session = asyncio.run(drive())
        out, _ = callee.communicate(timeout=30)
    assert finished(out) == (1, 0), out[-3000:]
    seen = cluster.steps(sid)
    start = next(i for i, step in enumerate(seen) if step[1:] == ("Answered", "Established"))
    assert seen[start + 1 : start + 1 + len(MOVED)] == MOVED, seen
    assert seen[start + 1 + len(MOVED) :] == [
        ("Established", "Hangup", "Terminating"),
        ("Terminating", "ByeDone", "Terminated"),
    ]
    survivor = {"m1": "m2", "m2": "m1"}[session["media_node"]]
    check_the_move(cluster, session["local_sdp"], survivor, sid)


def _moved(cluster: Cluster, lost: str) -> bool:
    session = only_session(cluster)
    return session["state"] == "Established" and session["media_node"] not in ("", lost)
