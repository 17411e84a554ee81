"""Parallel forking, end to end: ``sessiond run --registrar example.com`` on real Redis,
sipp phones that register alice's contacts with digest auth and answer on the ports they
registered from, and a sipp caller dialling ``sip:alice@example.com``.

Contacts of equal q ring at once (RFC 3261 16.6): the phones that do not answer have
scenarios that *require* a CANCEL (recv CANCEL, 200, 487, recv ACK), so a test fails when
a branch is not cancelled, or is never called; the caller's scenario takes one 180 at most.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from sessiond.store import Keys
from sipp_scenarios import callee, caller, uac_refused

from .harness import (
    Cluster,
    background_sipp,
    free_port,
    free_rtp_range,
    wait_for,
    wait_listening,
)
from .test_leases import owners
from .test_registered_calls import PRIVATE, call, ctl, phone, register, start, to_aor

pytestmark = [
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.timeout(120),
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) missing"),
]


def registered(cluster: Cluster, port: int, *qs: str) -> list[int]:
    """alice registers one contact per q (each from its own phone port); the ports."""
    ports = [free_port() for _ in qs]
    for n, (phone_port, q) in enumerate(zip(ports, qs, strict=True)):
        register(cluster, port, phone_port, f"sip:alice@{PRIVATE}:{5100 + n}", q=q)
    return ports


@contextlib.contextmanager
def phones(cluster: Cluster, *pairs: tuple[int, str]) -> Iterator[None]:
    """Each (port, scenario) phone runs while the body acts; each must then succeed."""
    with contextlib.ExitStack() as stack:
        procs = [
            stack.enter_context(phone(cluster, port, scenario, f"phone-{port}"))
            for port, scenario in pairs
        ]
        yield
        for proc in procs:
            out, _ = proc.communicate(timeout=40)
            assert proc.returncode == 0, (out[-2000:], cluster.log("run")[-3000:])


def outbound(cluster: Cluster) -> list[dict[str, str]]:
    assert wait_for(lambda: all(s["state"] == "Terminated" for s in cluster.sessions()))
    return [s for s in cluster.sessions() if s["role"] == "UAC"]


def by_port(legs: list[dict[str, str]]) -> dict[int, str]:
    """Each outbound leg's end code by the phone port it went to (a registered phone's
    binding, else the port of its target URI)."""
    return {
        int((s.get("destination") or s["remote_target"]).rpartition(":")[2]): s["end_code"]
        for s in legs
    }


def test_equal_q_ring_at_once_one_answers_the_others_get_cancel(cluster: Cluster) -> None:
    """Three phones register alice with q=0.8: all three ring; the first answers, the other
    two must receive CANCEL; the caller gets one 180 and one 200, then the answering
    phone's BYE."""
    port = start(cluster)
    first, second, third = registered(cluster, port, "0.8", "0.8", "0.8")
    with phones(
        cluster,
        (first, callee("hangs_up")),
        (second, callee("cancelled")),
        (third, callee("cancelled")),
    ):
        result = call(cluster, port, to_aor(caller("hung_up")), "caller")
        assert result.returncode == 0, (result.stdout[-2000:], cluster.log("run")[-3000:])
    assert by_port(outbound(cluster)) == {first: "200", second: "487", third: "487"}


def test_a_6xx_from_one_branch_cancels_the_others_and_reaches_the_caller(
    cluster: Cluster,
) -> None:
    """One phone declines (603) while the two others ring: they must receive CANCEL, and
    the caller gets the 603."""
    port = start(cluster)
    first, second, third = registered(cluster, port, "0.8", "0.8", "0.8")
    with phones(
        cluster,
        (first, callee("rings_refuses", 603, pause=1000)),
        (second, callee("cancelled")),
        (third, callee("cancelled")),
    ):
        result = call(cluster, port, to_aor(uac_refused(603)), "caller")
        assert result.returncode == 0, (result.stdout[-2000:], cluster.log("run")[-3000:])
    assert by_port(outbound(cluster)) == {first: "603", second: "487", third: "487"}


def test_the_callers_cancel_cancels_every_branch(cluster: Cluster) -> None:
    """The caller CANCELs once its 180 came: all three ringing phones must receive CANCEL;
    the caller gets 200 to its CANCEL and 487."""
    port = start(cluster)
    ports = registered(cluster, port, "0.8", "0.8", "0.8")
    with phones(cluster, *((p, callee("cancelled")) for p in ports)):
        result = call(cluster, port, to_aor(caller("cancels")), "caller")
        assert result.returncode == 0, (result.stdout[-2000:], cluster.log("run")[-3000:])
    assert sorted(by_port(outbound(cluster)).values()) == ["487", "487", "487"]


def test_a_second_2xx_after_the_winner_gets_ack_then_bye(cluster: Cluster) -> None:
    """The first phone answers; the second answers the INVITE 200 only once our CANCEL came
    (as if its 200 had crossed the CANCEL): it must then get an ACK and a BYE; the third is
    cancelled. The caller sees one 200."""
    port = start(cluster)
    first, second, third = registered(cluster, port, "0.8", "0.8", "0.8")
    with phones(
        cluster,
        (first, callee("hangs_up")),
        (second, callee("answers_cancel")),
        (third, callee("cancelled")),
    ):
        result = call(cluster, port, to_aor(caller("hung_up")), "caller")
        assert result.returncode == 0, (result.stdout[-2000:], cluster.log("run")[-3000:])
    legs = by_port(outbound(cluster))
    assert (legs[first], legs[third]) == ("200", "487")


def test_groups_of_decreasing_q_ring_one_after_the_other(cluster: Cluster) -> None:
    """Two phones at q=0.9 and one at q=0.5: the two ring together (both outbound legs
    ringing at once) and refuse 486 after a while; only then is the q=0.5 phone called,
    which answers. Had it rung with the first two, its answer would have cancelled them,
    and their scenarios (486 after the pause) would fail; the caller gets one 180."""
    port = start(cluster)
    first, second, third = registered(cluster, port, "0.9", "0.9", "0.5")
    with phones(
        cluster,
        (first, callee("rings_refuses", 486, pause=2000)),
        (second, callee("rings_refuses", 486, pause=2000)),
        (third, callee("hangs_up")),
    ):
        path = cluster.tmp / "caller.xml"
        path.write_text(to_aor(caller("hung_up")))
        args = ("-sf", str(path), "-p", str(free_port()), "-i", "127.0.0.1", "-m", "1")
        args += ("-trace_msg", "-message_file", str(cluster.tmp / "caller-messages.log"))
        with _background_caller(cluster, port, args) as caller_:

            def both_ringing() -> bool:
                legs = [s for s in cluster.sessions() if s["role"] == "UAC"]
                return sum(s["state"] == "Early" for s in legs) == 2

            assert wait_for(both_ringing, timeout=20)
            out, _ = caller_.communicate(timeout=60)
            assert caller_.returncode == 0, (out[-2000:], cluster.log("run")[-3000:])
    assert by_port(outbound(cluster)) == {first: "486", second: "486", third: "200"}
    # three phones rang, in two groups: the caller got one 180 (sipp takes a repeated one
    # for a retransmission, so its trace is counted)
    trace = (cluster.tmp / "caller-messages.log").read_text(errors="replace")
    assert trace.count("SIP/2.0 180 ") == 1, trace[-3000:]


@contextlib.contextmanager
def _background_caller(
    cluster: Cluster, port: int, args: tuple[str, ...]
) -> Iterator[subprocess.Popen[str]]:

    with background_sipp(cluster.tmp, f"127.0.0.1:{port}", *args, "-timeout", "40") as proc:
        yield proc


def test_a_ring_all_hunt_group_rings_every_member(cluster: Cluster) -> None:
    """``{hunt: {members: [alice, bob, URI], ring: all}}``: alice's phone, bob's phone and
    the desk URI ring at once; the desk answers, both phones must receive CANCEL. Each
    phone's INVITE is To its own user's AOR."""
    desk = free_port()
    (cluster.tmp / "routes.yaml").write_text(
        'rules:\n  - match: {to: "sip:sales@*"}\n'
        f'    do: {{hunt: {{members: [alice, bob, "sip:desk@127.0.0.1:{desk}"], ring: all}}}}\n'
    )
    port = start(cluster, "--routes", "routes.yaml")
    alice, bob = free_port(), free_port()
    register(cluster, port, alice, f"sip:alice@{PRIVATE}:5201")
    register(cluster, port, bob, f"sip:bob@{PRIVATE}:5202", user="bob")
    with phones(
        cluster,
        (alice, callee("cancelled")),
        (bob, callee("cancelled")),
        (desk, callee("hangs_up")),
    ):
        result = call(cluster, port, to_aor(caller("hung_up"), "sales"), "caller")
        assert result.returncode == 0, (result.stdout[-2000:], cluster.log("run")[-3000:])
    legs = outbound(cluster)
    assert by_port(legs) == {alice: "487", bob: "487", desk: "200"}
    to = {int(s.get("destination", ":0").rpartition(":")[2]): s["remote_uri"] for s in legs}
    assert (to[alice], to[bob]) == ("sip:alice@example.com", "sip:bob@example.com")


def test_the_worker_of_the_forking_call_killed_while_three_phones_ring(cluster: Cluster) -> None:
    """An edge (the registrar), two workers and a media node as processes. While alice's
    three phones ring, the worker that owns the caller's session is killed (-9): the other
    takes its partitions over and continues the fork from Redis - the first phone answers
    (after a pause), the other two must receive CANCEL, the caller's call completes."""
    for user in ("alice", "bob"):
        assert ctl(cluster, "user", "add", f"{user}@example.com", "s3cret").returncode == 0
    port = free_port()
    cluster.start(
        "edge",
        "edge",
        *cluster.common(),
        *("--listen", f"udp:127.0.0.1:{port}", "--name", "edge1"),
        *("--registrar", "example.com", "--auth-secret", "x" * 16),
    )
    for n in range(2):
        cluster.start(f"w{n}", "worker", *cluster.common(), "--name", f"w{n}")
    cluster.start_media("media", "m1", free_rtp_range(600))
    wait_listening(port)
    keys = Keys(cluster.namespace)
    assert wait_for(lambda: None not in owners(cluster, keys), 30)
    first, second, third = registered(cluster, port, "0.8", "0.8", "0.8")
    with phones(
        cluster,
        (first, callee("rings_answers", pause=4000)),
        (second, callee("cancelled")),
        (third, callee("cancelled")),
    ):
        path = cluster.tmp / "caller.xml"
        path.write_text(to_aor(caller("hung_up")))
        args = ("-sf", str(path), "-p", str(free_port()), "-i", "127.0.0.1", "-m", "1")
        with _background_caller(cluster, port, args) as caller_:

            def all_ringing() -> bool:
                legs = [s for s in cluster.sessions() if s["role"] == "UAC"]
                return sum(s["state"] == "Early" for s in legs) == 3

            assert wait_for(all_ringing, timeout=20), cluster.log("edge")[-2000:]
            (inbound,) = [s for s in cluster.sessions() if s["role"] == "UAS"]
            owner = owners(cluster, keys)[keys.partition_of(inbound["sid"])]
            assert owner in ("w0", "w1")
            cluster.kill(owner)  # SIGKILL: the fork goes on on the other worker
            out, _ = caller_.communicate(timeout=60)
            assert caller_.returncode == 0, (out[-2000:], cluster.log("edge")[-3000:])
    assert by_port(outbound(cluster)) == {first: "200", second: "487", third: "487"}


def test_a_bypassed_call_forks_too(cluster: Cluster) -> None:
    """``media: bypass`` on a route to alice: her three equal-q phones get the caller's
    offer as it is, the first answers and its SDP goes to the caller unchanged, the two
    others must receive CANCEL."""
    (cluster.tmp / "routes.yaml").write_text(
        'media: bypass\nrules:\n  - match: {to: "sip:reception@*"}\n    do: {user: alice}\n'
    )
    port = start(cluster, "--routes", "routes.yaml")
    first, second, third = registered(cluster, port, "0.8", "0.8", "0.8")
    with phones(
        cluster,
        (first, callee("hangs_up")),
        (second, callee("cancelled")),
        (third, callee("cancelled")),
    ):
        result = call(cluster, port, to_aor(caller("hung_up"), "reception"), "caller")
        assert result.returncode == 0, (result.stdout[-2000:], cluster.log("run")[-3000:])
    assert by_port(outbound(cluster)) == {first: "200", second: "487", third: "487"}
    (inbound,) = [s for s in cluster.sessions() if s["role"] == "UAS"]
    assert inbound["media"] == "bypass"
    assert "o=bob " in inbound["local_sdp"]  # the answering phone's SDP, as it sent it
