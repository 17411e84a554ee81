"""The B2BUA (state_tables/gateway.yaml) end to end: ``sessiond run`` on real Redis with a
routing file whose rules forward by To user, sipp as the caller and as the callee (one
scenario per flow, tests/sipp_scenarios.py), SimplePeers for the audio.

Each call makes two sessions, the inbound leg (UAS) and the outbound leg (UAC), linked by
``peer``; every step in their Redis history must be a transition the table allows.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sessiond import PlayFinished, SimplePeer
from sessiond.core.resources import gateway_table_path
from sessiond.media.node import available_codecs
from sessiond.store.history import parse as parse_history
from sessiond.table import Table, load_table
from sipp_scenarios import callee, caller, uac_refused

from . import flow_scenarios as sc
from .harness import (
    Cluster,
    background_sipp,
    free_port,
    sipp,
    wait_for,
)
from .media_checks import dominant_tone, read_wav

pytestmark = [
    pytest.mark.redis,
    pytest.mark.timeout(90),
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) missing"),
]

FLOWS = (
    "answer",
    "calleebye",
    "busy",
    "broken",
    "cancel",
    "reinvite",
    "tone-pcmu",
    "tone-pcma",
    "tone-opus",
)


class Gateway:
    """``sessiond run`` forwarding ``sip:<flow>@`` to 127.0.0.1:<a port per flow>."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.targets = {flow: free_port() for flow in FLOWS}
        rules = "".join(
            f'  - match: {{to: "sip:{flow}@*"}}\n'
            f'    do: {{forward: "sip:{flow}-callee@127.0.0.1:{port}"}}\n'
            for flow, port in self.targets.items()
        )
        (cluster.tmp / "routes.yaml").write_text(f"rules:\n{rules}default: {{reject: 404}}\n")
        self.port = cluster.start_run("--routes", "routes.yaml")
        self.table = load_table(gateway_table_path())

    def callee(self, flow: str, scenario: str | None = None) -> Any:
        """sipp answering on the flow's target port (``-sn uas`` when no scenario)."""
        args = ["-p", str(self.targets[flow]), "-m", "1", "-timeout", "30"]
        if scenario is None:
            return background_sipp(self.cluster.tmp, "-sn", "uas", *args)
        path = self.cluster.tmp / f"callee-{flow}.xml"
        path.write_text(scenario)
        return background_sipp(self.cluster.tmp, "-sf", str(path), *args)

    def call(self, flow: str, scenario: str) -> subprocess.CompletedProcess[str]:
        path = self.cluster.tmp / f"caller-{flow}.xml"
        path.write_text(scenario)
        return sipp(
            self.cluster.tmp,
            "-sf",
            str(path),
            "-s",
            flow,
            f"127.0.0.1:{self.port}",
            "-m",
            "1",
            "-timeout",
            "30",
            "-p",
            str(free_port()),
            "-mp",
            str(free_port()),
            timeout=40,
        )

    def legs(self, flow: str) -> tuple[dict[str, str], dict[str, str]]:
        """(inbound, outbound) sessions of the flow's call, once both are Terminated."""

        def found() -> list[dict[str, str]]:
            mine = [s for s in self.cluster.sessions() if f"{flow}-callee@" in s["remote_uri"]]
            mine += [s for s in self.cluster.sessions() if f"sip:{flow}@" in s["local_uri"]]
            return mine

        assert wait_for(
            lambda: len(found()) == 2 and all(s["state"] == "Terminated" for s in found())
        ), (found(), self.cluster.log("run")[-3000:])
        (inbound,) = [s for s in found() if s["role"] == "UAS"]
        (outbound,) = [s for s in found() if s["role"] == "UAC"]
        assert (inbound["peer"], outbound["peer"]) == (outbound["sid"], inbound["sid"])
        assert inbound["table"] == outbound["table"] == "gateway"
        return inbound, outbound

    def history(self, session: dict[str, str]) -> list[tuple[str, str, str]]:
        """(from, event, to) of each step, checked against the table as they are read."""
        sid = session["sid"]
        key = f"{self.cluster.namespace}:{{{sid[:10]}}}:history:{sid}"
        entries = [parse_history(x.decode()) for x in self.cluster.redis().lrange(key, 0, -1)]
        steps = [(h["from"], h["event"], h["to"]) for h in entries]
        for step in steps:
            assert allowed(self.table, session["role"], *step), (step, steps)
        return steps


def allowed(table: Table, role: str, source: str, event: str, target: str) -> bool:
    """The table has a transition for (role, source, event) that can lead to ``target``."""
    entry = table.lookup(role, source, event)
    if entry is None or entry.ignore is not None:
        return False
    return any((alt.next or source) == target for alt in entry.alternatives)


@pytest.fixture(scope="module")
def gateway(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    cluster = Cluster(redis_url, tmp_path_factory.mktemp("gateway"))
    try:
        yield Gateway(cluster)
    finally:
        cluster.stop_all()
        cluster.cleanup()


def finished_ok(proc: Any) -> str:
    out, _ = proc.communicate(timeout=40)
    assert proc.returncode == 0, out[-2000:]
    return str(out)


ROUTING = [
    ("Routing", "ForwardCall", "Routing"),
    ("Routing", "MediaReady", "Routing"),
    ("Routing", "PlaceCall", "Forwarding"),
]


def test_table_check_is_clean() -> None:
    from sessiond.cli.main import main

    assert main(["table", "check", str(gateway_table_path())]) == 0


def test_answered_call_caller_hangs_up(gateway: Gateway) -> None:
    """180 and 200 relayed; the caller's BYE ends both legs."""
    with gateway.callee("answer") as uas:
        result = gateway.call("answer", caller("hangs_up"))
        assert result.returncode == 0, result.stdout[-2000:] + gateway.cluster.log("run")[-2000:]
        finished_ok(uas)  # the callee got its BYE
    inbound, outbound = gateway.legs("answer")
    steps = gateway.history(inbound)
    assert steps[0] == ("Idle", "Invite", "Routing")
    assert sorted(steps[1:3]) == ROUTING[:2]
    assert steps[3] == ROUTING[2]
    assert steps[4:] == [
        ("Forwarding", "PeerRinging", "Alerting"),
        ("Alerting", "PeerAnswered", "Answering"),
        ("Answering", "Ack", "Established"),
        ("Established", "Bye", "Terminated"),
    ]
    assert gateway.history(outbound) == [
        ("Idle", "MakeCall", "Preparing"),
        ("Preparing", "MediaReady", "Calling"),
        ("Calling", "Provisional", "Early"),
        ("Early", "Answered", "Established"),
        ("Established", "PeerHangup", "Terminating"),
        ("Terminating", "ByeDone", "Terminated"),
    ]
    assert inbound["media_node"] == outbound["media_node"] != ""
    assert (inbound["end_reason"], outbound["end_reason"]) == (
        "remote hangup",
        "the other leg hung up",
    )
    # the outbound INVITE carries the caller's URI in From
    assert outbound["local_uri"].startswith("sip:sipp@127.0.0.1")


def test_callee_hangs_up(gateway: Gateway) -> None:
    with gateway.callee("calleebye", callee("hangs_up")) as uas:
        result = gateway.call("calleebye", caller("hung_up"))
        assert result.returncode == 0, result.stdout[-2000:] + gateway.cluster.log("run")[-2000:]
        finished_ok(uas)
    inbound, outbound = gateway.legs("calleebye")
    assert gateway.history(outbound)[-1] == ("Established", "Bye", "Terminated")
    assert gateway.history(inbound)[-2:] == [
        ("Established", "PeerHangup", "Terminating"),
        ("Terminating", "ByeDone", "Terminated"),
    ]


@pytest.mark.parametrize(("flow", "code", "relayed"), [("busy", 486, 486), ("broken", 503, 502)])
def test_callee_failure_is_mapped_to_the_caller(
    gateway: Gateway, flow: str, code: int, relayed: int
) -> None:
    with gateway.callee(flow, callee("refuses", code)) as uas:
        result = gateway.call(flow, uac_refused(relayed))
        assert result.returncode == 0, result.stdout[-2000:] + gateway.cluster.log("run")[-2000:]
        finished_ok(uas)
    inbound, outbound = gateway.legs(flow)
    assert (inbound["end_code"], outbound["end_code"]) == (str(relayed), str(code))
    assert gateway.history(inbound)[-1] == ("Forwarding", "PeerFailed", "Terminated")
    assert gateway.history(outbound)[-1] == ("Calling", "Rejected", "Terminated")


def test_caller_cancel_is_propagated(gateway: Gateway) -> None:
    """CANCEL while ringing: the callee gets CANCEL (and answers 487), the caller 487."""
    with gateway.callee("cancel", callee("cancelled")) as uas:
        result = gateway.call("cancel", caller("cancels"))
        assert result.returncode == 0, result.stdout[-2000:] + gateway.cluster.log("run")[-2000:]
        finished_ok(uas)
    inbound, outbound = gateway.legs("cancel")
    assert gateway.history(inbound)[-2:] == [
        ("Forwarding", "PeerRinging", "Alerting"),
        ("Alerting", "Cancel", "Terminated"),
    ]
    assert gateway.history(outbound)[-3:] == [
        ("Calling", "Provisional", "Early"),
        ("Early", "PeerCancel", "Cancelling"),
        ("Cancelling", "Rejected", "Terminated"),
    ]
    assert inbound["end_code"] == outbound["end_code"] == "487"


def _codecs() -> list[str]:
    names = {c.name for c in available_codecs()}
    return ["PCMU", "PCMA"] + (["opus"] if "opus" in names else [])


@pytest.mark.parametrize("codec", _codecs())
async def test_media_is_relayed_and_transcoded(
    gateway: Gateway, tmp_path: Path, codec: str
) -> None:
    """Alice (PCMU) plays 440 Hz to the gateway; Bob, who only takes ``codec``, records what
    he hears: 440 Hz, so the legs were bridged (and transcoded when ``codec`` is not PCMU)."""
    wav = tmp_path / "bob_heard.wav"
    async with (
        SimplePeer("alice", free_port(), rtp_ports="21700-21799", codecs=("PCMU",)) as alice,
        SimplePeer(
            f"tone-{codec.lower()}-callee",
            gateway.targets[f"tone-{codec.lower()}"],
            rtp_ports="21800-21899",
            codecs=(codec,),
        ) as bob,
    ):

        async def answer() -> None:
            incoming = await bob.incoming_call(timeout=15)
            call = await incoming.accept()
            await call.record(wav, direction="in")
            await call.wait_ended(timeout=20)

        bob_side = asyncio.create_task(answer())
        call = await alice.call(f"sip:tone-{codec.lower()}@127.0.0.1:{gateway.port}", timeout=15)
        await call.play(tone=440, seconds=2)
        await call.wait_for(PlayFinished, timeout=10)
        await call.hangup()
        await asyncio.wait_for(bob_side, 20)
    inbound, outbound = await asyncio.to_thread(gateway.legs, f"tone-{codec.lower()}")
    assert "RTP/AVP 0" in inbound["local_sdp"]  # the caller's leg is PCMU
    assert f"{codec}/" in outbound["remote_sdp"]
    rate, samples = read_wav(wav)
    tone, powers = dominant_tone(samples, rate, [440.0, 880.0, 1000.0])
    assert tone == 440.0, powers
    loud = sum(1 for k in range(0, len(samples) - 160, 160) if max(samples[k : k + 160]) > 2000)
    assert loud >= 50  # of ~100 frames of tone: at least 1 s of it came through


def test_a_legs_reinvite_and_update_are_answered_on_that_leg(gateway: Gateway) -> None:
    """The caller holds (re-INVITE sendonly, answered recvonly), resumes, refreshes with an
    UPDATE without SDP: each answered by the inbound leg; the outbound leg is untouched."""
    caller_xml = sc.scenario(
        "caller re-INVITEs through the gateway",
        *sc._setup(),
        sc.uac_invite(2, "sendonly", 2),
        sc.recv(100, optional=True),
        sc.recv(200, "a=recvonly", "h1"),
        sc.uac_ack(2),
        sc.uac_invite(3, "sendrecv", 3),
        sc.recv(100, optional=True),
        sc.recv(200, "a=sendrecv", "h2"),
        sc.uac_ack(3),
        sc.uac_request("UPDATE", 4),
        sc.recv(200),
        sc.uac_request("BYE", 5),
        sc.recv(200),
        variables="h1,h2",
    )
    with gateway.callee("reinvite") as uas:
        result = gateway.call("reinvite", caller_xml)
        assert result.returncode == 0, result.stdout[-2000:] + gateway.cluster.log("run")[-2000:]
        finished_ok(uas)
    inbound, outbound = gateway.legs("reinvite")
    steps = gateway.history(inbound)
    assert steps.count(("Established", "ReInvite", "Reanswering")) == 2
    assert steps.count(("Reanswering", "MediaReady", "Reconfirming")) == 2
    assert steps.count(("Reconfirming", "Ack", "Established")) == 2
    assert ("Established", "Update", "Established") in steps
    assert [s for s in gateway.history(outbound) if s[1] in ("ReInvite", "Update")] == []
