"""Every media command reaches the node that owns the leg, or is refused (issue 18, F2 and
F4): real processes (an edge, a worker, media nodes m1 and m2) on a real Redis, sipp as the
caller. Each test ends with no orphan leg (:func:`sessiond.media.audit.orphan_legs`), no leg
left at all once the calls ended, and every process leaving promptly on SIGTERM (the media
nodes keep the default 300 s drain timeout: a node holding a leaked leg would wait it out)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from sessiond.media.audit import OrphanLeg, orphan_legs
from sessiond.store import Keys
from sipp_scenarios import caller

from . import flow_scenarios as sc
from .harness import Cluster, background_sipp, finished, free_port, free_rtp_range, wait_for

pytestmark = [
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.timeout(60),
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) missing"),
]

NODES = ("m1", "m2")


def start_edge_and_worker(cluster: Cluster, *worker_args: str) -> int:
    port = free_port()
    listen = f"udp:127.0.0.1:{port}"
    cluster.start("edge", "edge", *cluster.common(), "--listen", listen, "--name", "edge1")
    cluster.start("w0", "worker", *cluster.common(), "--name", "w0", *worker_args)
    return port


def start_media(cluster: Cluster, name: str) -> None:
    first = int(free_rtp_range().split("-")[0]) + (0 if name == "m1" else 400)
    cluster.start_media(name, name, f"{first}-{first + 300}")


def live_nodes(cluster: Cluster) -> int:
    return len(cluster.redis().zrange(f"{cluster.namespace}:processes:media", 0, -1))


def sipp_calls(
    tmp: Path, xml: str, port: int, calls: int
) -> AbstractContextManager[subprocess.Popen[str]]:
    """sipp placing ``calls`` calls (10 per second) of scenario ``xml`` to the edge."""
    (tmp / "calls.xml").write_text(xml)
    args = ["-sf", "calls.xml", f"127.0.0.1:{port}", "-m", str(calls), "-r", "10", "-l", "50"]
    args += ["-p", str(free_port()), "-timeout", "45", "-timeout_error", "-trace_err"]
    return background_sipp(tmp, *args)


def orphans(cluster: Cluster) -> list[OrphanLeg]:
    return orphan_legs(cluster.redis(), Keys(cluster.namespace))


def legs(cluster: Cluster) -> dict[str, int]:
    """Legs each node lists (its legs hash, without @incarnation)."""
    r = cluster.redis()
    out = {}
    for node in NODES:
        held = r.hkeys(f"{cluster.namespace}:{{media:{node}}}:legs")
        out[node] = len([k for k in held if k != b"@incarnation"])
    return out


def states(cluster: Cluster) -> list[str]:
    return [s.get("state", "") for s in cluster.sessions()]


def all_ended(cluster: Cluster, calls: int) -> bool:
    seen = states(cluster)
    return len(seen) == calls and all(s == "Terminated" for s in seen)


def no_leg_left(cluster: Cluster) -> None:
    """No orphan, and no leg at all once every call ended; nothing closed by the nodes'
    safety net (the commands reached the owners)."""
    assert wait_for(lambda: not orphans(cluster) and sum(legs(cluster).values()) == 0, 20), (
        orphans(cluster),
        legs(cluster),
    )
    for node in NODES:
        assert "closing leg " not in cluster.log(node), cluster.log(node)[-3000:]


def stops_on_sigterm(cluster: Cluster) -> None:
    """SIGTERM to every process: each exits by itself, far inside the drain timeout."""
    for proc in cluster.procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 20
    for name, proc in cluster.procs.items():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pytest.fail(f"{name} still running 20 s after SIGTERM: {cluster.log(name)[-2000:]}")


def test_calls_cancelled_right_after_180_leave_no_leg(cluster: Cluster, tmp_path: Path) -> None:
    """F2: the caller CANCELs as soon as the 180 comes, before the leg's MediaReady reached
    the session, so the session's destroy goes to the pool stream; with two nodes, half of
    them used to reach the node without the leg, which did nothing: leaked legs, and a node
    that waited its whole drain timeout on SIGTERM."""
    port = start_edge_and_worker(cluster)  # the application decides: the call rings
    for node in NODES:
        start_media(cluster, node)
    assert wait_for(lambda: live_nodes(cluster) == 2, 15)
    calls = 20
    with sipp_calls(tmp_path, caller("cancels"), port, calls) as proc:
        out, _ = proc.communicate(timeout=50)
    assert finished(out) == (calls, 0), out[-3000:]
    assert wait_for(lambda: all_ended(cluster, calls), 15), states(cluster)
    no_leg_left(cluster)
    stops_on_sigterm(cluster)


def uac_moved_once() -> str:
    """A caller whose call is moved to another media node once: answers the re-INVITE, then
    stays long enough for a second move to show, and hangs up."""
    return sc.scenario(
        "uac, media moved once",
        *sc._setup(),
        sc.recv_request("INVITE"),
        sc.answer(200, sc.SDP.format(version=2, direction="sendrecv"), "application/sdp"),
        sc.recv_request("ACK"),
        sc.pause(6000),
        sc.uac_request("BYE", 2),
        sc.recv(200),
    )


def moves(cluster: Cluster, sid: str) -> int:
    return cluster.steps(sid).count(("Established", "MediaGone", "Reoffering"))


@pytest.mark.parametrize("resume_after", [0.0, 2.0])
def test_a_stalled_node_gives_its_calls_up_once(
    cluster: Cluster, tmp_path: Path, resume_after: float
) -> None:
    """F4: m1, serving every call, stalls (SIGSTOP) until the workers declare it lost and
    move its calls, then resumes: at once (the relocations' creates are on their way, and m1
    may read them before its heartbeat tells it it was declared lost) or 2 s later (the
    calls have moved). It closes its copies and starts afresh; the MediaLost it announces
    again are refused as duplicates, and the commands the worker re-sends for them (the
    relocation's create, to the pool) make no second leg on either node. Each call is moved
    exactly once and nothing is left behind."""
    port = start_edge_and_worker(cluster, "--answer", "auto")
    start_media(cluster, "m1")
    assert wait_for(lambda: live_nodes(cluster) == 1, 15)
    calls = 6
    with sipp_calls(tmp_path, uac_moved_once(), port, calls) as proc:
        established = lambda: states(cluster).count("Established") == calls  # noqa: E731
        assert wait_for(established, 20), states(cluster)
        start_media(cluster, "m2")  # every call is on m1
        assert wait_for(lambda: live_nodes(cluster) == 2, 15)
        cluster.procs["m1"].send_signal(signal.SIGSTOP)
        try:
            zset = f"{cluster.namespace}:processes:media"
            assert wait_for(lambda: cluster.redis().zscore(zset, "m1") is None, 15)
            time.sleep(resume_after)
        finally:
            cluster.procs["m1"].send_signal(signal.SIGCONT)
        out, _ = proc.communicate(timeout=40)
    assert finished(out) == (calls, 0), out[-3000:] + cluster.log("w0")[-3000:]
    assert wait_for(lambda: all_ended(cluster, calls), 15), states(cluster)
    assert [moves(cluster, s["sid"]) for s in cluster.sessions()] == [1] * calls
    assert "was declared lost" in cluster.log("m1")
    no_leg_left(cluster)
    stops_on_sigterm(cluster)


def uac_stays(ms: int) -> str:
    """A caller that stays ``ms`` in the call, then hangs up."""
    parts = [*sc._setup(), sc.pause(ms), sc.uac_request("BYE", 2), sc.recv(200)]
    return sc.scenario("uac stays", *parts)


def creates(cluster: Cluster) -> int:
    """The creates in the pool stream (the harness's observer group keeps them)."""
    pool = f"{cluster.namespace}:{{media}}:commands"
    return sum(1 for _, f in cluster.redis().xrange(pool) if f[b"type"] == b"create")


def events_settled(cluster: Cluster) -> bool:
    """The workers took and acked every event of every partition."""
    r = cluster.redis()
    for p in range(Keys(cluster.namespace).partitions):
        stream = f"{cluster.namespace}:{{p{p}}}:events"
        group = next((g for g in r.xinfo_groups(stream) if g["name"] == b"workers"), None)
        if group is None or group["pending"] or group["lag"]:
            return False
    return True


def pool_settled(cluster: Cluster, wanted: int) -> bool:
    """The pool stream holds ``wanted`` creates and the media group took and acked all."""
    r = cluster.redis()
    pool = f"{cluster.namespace}:{{media}}:commands"
    if creates(cluster) < wanted:
        return False
    group = next(g for g in r.xinfo_groups(pool) if g["name"] == b"media")
    return bool(group["pending"] == 0 and group["lag"] == 0)


def test_re_sent_creates_make_no_second_leg(cluster: Cluster, tmp_path: Path) -> None:
    """F4: a duplicate event must not make a second leg. Every call's INVITE event is
    published again (as an edge restarting does). The worker refuses each as a duplicate and,
    since its outbox was sent and deleted (docs/architecture.md, crash windows), re-sends
    nothing: no create goes to the pool again, and each call keeps one leg on one node.
    (Before outboxes were deleted once sent, the creates came back and the nodes refused
    them; tests/media/test_leg_owner.py covers that refusal.)"""
    port = start_edge_and_worker(cluster, "--answer", "auto")
    for node in NODES:
        start_media(cluster, node)
    assert wait_for(lambda: live_nodes(cluster) == 2, 15)
    calls = 10
    with sipp_calls(tmp_path, uac_stays(12000), port, calls) as proc:
        established = lambda: states(cluster).count("Established") == calls  # noqa: E731
        assert wait_for(established, 20), states(cluster)
        r = cluster.redis()
        invites = 0
        for p in range(Keys(cluster.namespace).partitions):
            stream = f"{cluster.namespace}:{{p{p}}}:events"
            for _, fields in r.xrange(stream):
                if fields[b"type"] == b"Invite":
                    r.xadd(stream, fields)
                    invites += 1
        assert invites == calls
        assert wait_for(lambda: events_settled(cluster), 15)
        assert pool_settled(cluster, calls)
        assert creates(cluster) == calls  # nothing re-sent
        time.sleep(1)  # the nodes list what they made with their next round
        assert orphans(cluster) == []
        assert sum(legs(cluster).values()) == calls, legs(cluster)
        assert all(s["media_node"] in NODES for s in cluster.sessions())
        out, _ = proc.communicate(timeout=40)
    assert finished(out) == (calls, 0), out[-3000:]
    assert wait_for(lambda: all_ended(cluster, calls), 15), states(cluster)
    no_leg_left(cluster)
    stops_on_sigterm(cluster)
