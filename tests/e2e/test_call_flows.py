"""Mid-call flows against sipp, with sessiond as separate processes on a real Redis: hold and
resume by re-INVITE both ways (with a 491 glare retry), UPDATE, DTMF by INFO, blind transfer
both ways, session timers (RFC 4028); kill tests for transfer and session timers. Each test
checks the states the session went through, from its Redis history."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
from contextlib import AbstractContextManager
from pathlib import Path

import msgpack
import pytest

from sessiond.api.client import Client
from sessiond.core.resources import default_table_path
from sipp_scenarios import uac_refused

from . import flow_scenarios as sc
from .harness import Cluster, background_sipp, finished, free_port, wait_for

Sipp = AbstractContextManager[subprocess.Popen[str]]

pytestmark = [
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) missing"),
]


def run_sipp(tmp: Path, name: str, xml: str, port: int, *args: str) -> Sipp:
    (tmp / f"{name}.xml").write_text(xml)
    return background_sipp(
        tmp,
        "-sf",
        f"{name}.xml",
        f"127.0.0.1:{port}",
        "-m",
        "1",
        "-p",
        str(free_port()),
        "-timeout",
        "40",
        "-timeout_error",
        *args,
    )


def sipp_callee(tmp: Path, name: str, xml: str, port: int) -> Sipp:
    """sipp running scenario ``xml`` as the far end of one call sessiond places to ``port``."""
    (tmp / f"{name}.xml").write_text(xml)
    return background_sipp(
        tmp, "-sf", f"{name}.xml", "-p", str(port), "-m", "1", "-timeout", "40", "-timeout_error"
    )


def only_session(cluster: Cluster) -> dict[str, str]:
    assert wait_for(lambda: len(cluster.sessions()) == 1)
    return cluster.sessions()[0]


def client(cluster: Cluster) -> Client:
    return Client(cluster.redis_url, namespace=cluster.namespace)


def edge_requests(cluster: Cluster, method: str) -> list[dict[str, object]]:
    """The ``request`` commands sent to the edge for ``method`` (re-INVITE, REFER...)."""
    entries = cluster.redis().xrange(f"{cluster.namespace}:{{edge:edge1}}:commands")
    out = []
    for _, fields in entries:
        if fields[b"type"] == b"request":
            data = msgpack.unpackb(fields[b"data"])
            if data["method"] == method:
                out.append(data)
    return out


def test_remote_hold_resume_update_and_info(cluster: Cluster, tmp_path: Path) -> None:
    port = cluster.start_split("--answer", "auto")
    with run_sipp(tmp_path, "uac", sc.uac_hold_update_info(), port) as caller:
        out, _ = caller.communicate(timeout=60)
    assert finished(out) == (1, 0), out[-3000:]
    sid = only_session(cluster)["sid"]
    assert wait_for(lambda: only_session(cluster)["state"] == "Terminated")
    seen = cluster.steps(sid)
    hold = [
        ("Established", "ReInvite", "Reanswering"),
        ("Reanswering", "MediaReady", "Reconfirming"),
        ("Reconfirming", "Ack", "Established"),
    ]
    for step in hold:
        assert seen.count(step) == 3, seen  # hold, resume, then a re-INVITE without SDP
    acks = [h for h in cluster.history(sid) if (h["from"], h["event"]) == ("Reconfirming", "Ack")]
    assert "media.update" in acks[-1]["actions"]  # the ACK answered our offer in the 200
    assert ("Established", "Update", "Reanswering") in seen
    assert ("Reanswering", "MediaReady", "Established") in seen
    assert seen.count(("Established", "Info", "Established")) == 2  # a digit, then a 415
    assert seen.count(("Established", "Update", "Established")) == 1  # the session refresh
    assert seen[-1] == ("Established", "Bye", "Terminated")
    app = cluster.redis().xrange(f"{cluster.namespace}:{{app}}:events")
    published = [(f[b"type"].decode(), msgpack.unpackb(f[b"data"])) for _, f in app]
    holds = [d["hold"] if "hold" in d else "" for t, d in published if t == "HoldChanged"]
    assert holds == ["remote", ""]
    assert [d["digit"] for t, d in published if t == "DtmfReceived"] == ["7"]


@pytest.mark.parametrize("first_answer", [200, 491])
def test_sessiond_holds_and_resumes(cluster: Cluster, tmp_path: Path, first_answer: int) -> None:
    cluster.start_split("--answer", "auto")
    uas_port = free_port()
    xml = sc.uas_held(first_answer)
    with sipp_callee(tmp_path, "uas", xml, uas_port) as callee:

        async def drive() -> str:
            async with client(cluster) as app:
                sid = await app.make_call(f"sip:bob@127.0.0.1:{uas_port}")
                await app.wait_for_state(sid, "Established", timeout=10)
                await app.hold(sid)
                assert wait_for(lambda: only_session(cluster).get("hold") == "local", 15)
                await app.resume(sid)
                assert wait_for(lambda: only_session(cluster).get("hold") == "", 15)
                assert only_session(cluster)["state"] == "Established"
                await app.hangup(sid)
                await app.wait_for_state(sid, "Terminated", timeout=10)
                return sid

        sid = asyncio.run(drive())
        out, _ = callee.communicate(timeout=30)
    assert finished(out) == (1, 0), out[-3000:]
    seen = cluster.steps(sid)
    assert seen.count(("Established", "Hold", "Reoffering")) == 1
    assert seen.count(("Reinviting", "Answered", "Established")) == 2
    if first_answer == 491:
        assert ("Reinviting", "Rejected", "Established") in seen
        assert ("Established", "ReinviteRetry", "Reoffering") in seen
        assert len(edge_requests(cluster, "INVITE")) == 3  # hold, its retry, resume
    else:
        assert len(edge_requests(cluster, "INVITE")) == 2


def test_a_failed_transfer_gives_the_transferor_its_call_back(
    cluster: Cluster, tmp_path: Path
) -> None:
    port = cluster.start_split("--answer", "auto")
    with run_sipp(tmp_path, "uac", sc.uac_refer_us(486), port) as caller:
        assert wait_for(lambda: only_session(cluster)["state"] == "Established", 15)
        sid = only_session(cluster)["sid"]

        async def transfer() -> None:
            async with client(cluster) as app:
                await app.blind_transfer(sid, "sip:carol@127.0.0.1:5099")

        asyncio.run(transfer())
        assert wait_for(lambda: ("Established", "Notify", "Established") in cluster.steps(sid))
        out, _ = caller.communicate(timeout=40)
    assert finished(out) == (1, 0), out[-3000:]
    session = only_session(cluster)
    assert (session["state"], session["end_reason"]) == ("Terminated", "remote hangup")
    app = cluster.redis().xrange(f"{cluster.namespace}:{{app}}:events")
    failed = [msgpack.unpackb(f[b"data"]) for _, f in app if f[b"type"] == b"TransferFailed"]
    assert [f["code"] for f in failed] == [486]
    assert cluster.steps(sid)[-1] == ("Established", "Bye", "Terminated")


def test_sessiond_transfers_the_caller(cluster: Cluster, tmp_path: Path) -> None:
    port = cluster.start_split("--answer", "auto")
    with run_sipp(tmp_path, "uac", sc.uac_refer_us(), port) as caller:
        assert wait_for(lambda: only_session(cluster)["state"] == "Established", 15)
        sid = only_session(cluster)["sid"]

        async def transfer() -> None:
            async with client(cluster) as app:
                await app.blind_transfer(sid, "sip:carol@127.0.0.1:5099")

        asyncio.run(transfer())
        out, _ = caller.communicate(timeout=40)
    assert finished(out) == (1, 0), out[-3000:]
    assert wait_for(lambda: only_session(cluster)["state"] == "Terminated")
    session = only_session(cluster)
    assert (session["end_code"], session["end_reason"]) == ("200", "transferred")
    seen = cluster.steps(sid)
    assert ("Established", "Transfer", "Established") in seen
    assert ("Established", "ReferResponse", "Established") in seen
    assert ("Established", "Notify", "Established") in seen  # 100 Trying
    assert ("Established", "Notify", "Terminating") in seen  # 200 OK: we hang up
    assert seen[-1] == ("Terminating", "ByeDone", "Terminated")


@pytest.mark.parametrize("kill", [False, True])
def test_caller_transfers_sessiond(cluster: Cluster, tmp_path: Path, kill: bool) -> None:
    """sessiond is the transferee: it places the new call to the target and reports its
    progress by NOTIFY. With ``kill``, the worker that took the REFER dies while the target
    rings; the other worker finishes the flow."""
    port = cluster.start_split("--answer", "auto")
    target_port = free_port()
    target = f"sip:carol@127.0.0.1:{target_port}"
    with (
        sipp_callee(tmp_path, "target", sc.uas_slow_answer(3000), target_port) as callee,
        run_sipp(tmp_path, "uac", sc.uac_refers_sessiond(target), port) as caller,
    ):
        assert wait_for(lambda: len(cluster.sessions()) == 2, 15)
        original = next(s for s in cluster.sessions() if s["role"] == "UAS")
        placed = next(s for s in cluster.sessions() if s["role"] == "UAC")
        assert placed["peer"] == original["sid"]
        assert original["transfer_sid"] == placed["sid"]
        if kill:
            refer = next(h for h in cluster.history(original["sid"]) if h["event"] == "Refer")
            cluster.kill(refer["worker"], signal.SIGKILL)
        out, _ = caller.communicate(timeout=40)
        assert finished(out) == (1, 0), out[-3000:]
        assert wait_for(
            lambda: (
                {s["sid"]: s["state"] for s in cluster.sessions()}.get(placed["sid"])
                == "Established"
            ),
            10,
        )

        async def hang_up() -> None:
            async with client(cluster) as app:
                await app.hangup(placed["sid"])

        asyncio.run(hang_up())
        out, _ = callee.communicate(timeout=30)
        assert finished(out) == (1, 0), out[-3000:]
    seen = cluster.steps(original["sid"])
    assert ("Established", "Refer", "Established") in seen
    assert ("Established", "TransferProgress", "Established") in seen
    assert seen[-1] == ("Established", "Bye", "Terminated")
    assert [n["headers"][1][1] for n in edge_requests(cluster, "NOTIFY")] == [
        "active;expires=60",
        "terminated;reason=noresource",
    ]
    placed_steps = cluster.steps(placed["sid"])
    assert ("Calling", "Provisional", "Early") in placed_steps
    assert ("Early", "Answered", "Established") in placed_steps


def short_timers_table(tmp_path: Path, min_se: int) -> Path:
    """The default table with a Min-SE of ``min_se`` seconds instead of RFC 4028's 90, so a
    test sees several refreshes in seconds."""
    text = default_table_path().read_text()
    text = text.replace(
        "session_timer.request: {start: false}",
        f"session_timer.request: {{start: false, min_se: {min_se}}}",
    )
    text = text.replace(
        "- session_timer.request\n", f"- session_timer.request: {{min_se: {min_se}}}\n"
    )
    text = text.replace("when: [interval_too_small]", f"when: [{{interval_too_small: {min_se}}}]")
    path = tmp_path / "short_timers.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("kill", [False, True])
def test_session_refreshed_by_sessiond(cluster: Cluster, tmp_path: Path, kill: bool) -> None:
    """The caller makes sessiond the refresher (6 s: a re-INVITE every 3 s). With ``kill``,
    the worker that armed the refresh timer dies before it fires: the refresh still goes
    out, once."""
    table = short_timers_table(tmp_path, 2)
    port = cluster.start_split("--answer", "auto", "--table", str(table))
    with run_sipp(tmp_path, "uac", sc.uac_session_timer_we_refresh(2, 6), port) as caller:
        if kill:
            assert wait_for(lambda: only_session(cluster).get("state") == "Established", 10)
            sid = only_session(cluster)["sid"]
            armed = [h for h in cluster.history(sid) if h["to"] == "Established"][0]
            cluster.kill(armed["worker"], signal.SIGKILL)
        out, _ = caller.communicate(timeout=40)
    assert finished(out) == (1, 0), out[-3000:]
    sid = only_session(cluster)["sid"]
    seen = cluster.steps(sid)
    assert seen.count(("Established", "RefreshDue", "Reoffering")) == 2, seen
    assert len(edge_requests(cluster, "INVITE")) == 2
    refresh = edge_requests(cluster, "INVITE")[0]
    assert ["Session-Expires", "6;refresher=uac"] in refresh["headers"]


def test_session_expires_without_refresh(cluster: Cluster, tmp_path: Path) -> None:
    table = short_timers_table(tmp_path, 2)
    port = cluster.start_split("--answer", "auto", "--table", str(table))
    with run_sipp(tmp_path, "uac", sc.uac_session_timer_never_refresh(6), port) as caller:
        out, _ = caller.communicate(timeout=40)
    assert finished(out) == (1, 0), out[-3000:]
    assert wait_for(lambda: only_session(cluster)["state"] == "Terminated")
    session = only_session(cluster)
    assert session["end_code"] == "408"
    assert ("Established", "SessionExpired", "Terminating") in cluster.steps(session["sid"])


def test_too_small_session_interval_gets_422(cluster: Cluster, tmp_path: Path) -> None:
    port = cluster.start_split("--answer", "auto")
    xml = uac_refused(422, sc._check("Min-SE: 90", "c"))
    xml = xml.replace(
        "Max-Forwards: 70\nContent-Type", "Max-Forwards: 70\nSession-Expires: 30\nContent-Type", 1
    )
    with run_sipp(tmp_path, "uac", xml, port) as caller:
        out, _ = caller.communicate(timeout=40)
    assert finished(out) == (1, 0), out[-3000:]
    session = only_session(cluster)
    assert (session["state"], session["end_code"]) == ("Terminated", "422")


def test_reliable_provisionals_and_early_media_as_uas(cluster: Cluster, tmp_path: Path) -> None:
    port = cluster.start_split("--answer", "app")
    with run_sipp(tmp_path, "uac", sc.uac_requires_100rel(), port) as caller:
        assert wait_for(lambda: only_session(cluster).get("state") == "Ringing", 10)
        sid = only_session(cluster)["sid"]

        async def early_then_answer() -> None:
            async with client(cluster) as app:
                await app.progress(sid)
                await app.play(sid, tone=440, seconds=0.5)
                assert wait_for(lambda: ("Ringing", "Prack", "Ringing") in cluster.steps(sid))
                await asyncio.sleep(0.5)
                await app.accept(sid)

        asyncio.run(early_then_answer())
        out, _ = caller.communicate(timeout=40)
    assert finished(out) == (1, 0), out[-3000:]
    seen = cluster.steps(sid)
    assert seen.count(("Ringing", "Prack", "Ringing")) == 2
    assert ("Ringing", "SendProgress", "Ringing") in seen
    assert ("Ringing", "Play", "Ringing") in seen
    assert seen[-1] == ("Established", "Bye", "Terminated")


def test_reliable_early_media_as_uac(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_split("--answer", "auto")
    uas_port = free_port()
    with sipp_callee(tmp_path, "uas", sc.uas_reliable_183(), uas_port) as callee:

        async def call() -> str:
            async with client(cluster) as app:
                sid = await app.make_call(f"sip:bob@127.0.0.1:{uas_port}")
                await app.wait_for_state(sid, "Established", timeout=10)
                await app.hangup(sid)
                await app.wait_for_state(sid, "Terminated", timeout=10)
                return sid

        sid = asyncio.run(call())
        out, _ = callee.communicate(timeout=30)
    assert finished(out) == (1, 0), out[-3000:]
    entries = cluster.history(sid)
    early = next(h for h in entries if h["event"] == "Provisional")
    assert (early["from"], early["to"]) == ("Calling", "Early")
    assert "sip.prack" in early["actions"]
    answered = next(h for h in entries if h["event"] == "Answered")
    assert "media.update" not in answered["actions"]  # the 183 carried the answer
    assert len(edge_requests(cluster, "PRACK")) == 1


def test_invite_with_replaces_takes_over_a_call(cluster: Cluster, tmp_path: Path) -> None:
    """The transfer target's side of an attended transfer: a new INVITE with Replaces naming
    a call in progress is answered, and the replaced call gets a BYE."""
    port = cluster.start_split("--answer", "app")
    with run_sipp(tmp_path, "first", sc.uac_waits_for_bye(), port) as first:
        assert wait_for(lambda: only_session(cluster).get("state") == "Ringing", 10)
        old = only_session(cluster)

        async def accept() -> None:
            async with client(cluster) as app:
                await app.accept(old["sid"])

        asyncio.run(accept())
        assert wait_for(lambda: only_session(cluster).get("state") == "Established", 10)
        replaces = f"{old['call_id']};to-tag={old['local_tag']};from-tag={old['remote_tag']}"
        with run_sipp(tmp_path, "second", sc.uac_replacing(replaces), port) as second:
            out, _ = second.communicate(timeout=30)
            assert finished(out) == (1, 0), out[-3000:]
        out, _ = first.communicate(timeout=30)
        assert finished(out) == (1, 0), out[-3000:]
    sessions = {s["sid"]: s for s in cluster.sessions()}
    assert sessions[old["sid"]]["end_reason"] == "replaced"
    new = next(s for sid, s in sessions.items() if sid != old["sid"])
    assert new["replaces_sid"] == old["sid"]
    assert ("Established", "Replaced", "Terminating") in cluster.steps(old["sid"])
    assert cluster.steps(new["sid"])[0] == ("Idle", "Invite", "Ringing")


def test_replaces_naming_no_dialog_gets_481(cluster: Cluster, tmp_path: Path) -> None:
    port = cluster.start_split("--answer", "auto")
    xml = uac_refused(481).replace(
        "Max-Forwards: 70\nContent-Type",
        "Max-Forwards: 70\nReplaces: nobody@x;to-tag=1;from-tag=2\nContent-Type",
        1,
    )
    with run_sipp(tmp_path, "uac", xml, port) as caller:
        out, _ = caller.communicate(timeout=30)
    assert finished(out) == (1, 0), out[-3000:]
    assert only_session(cluster)["end_code"] == "481"


def test_attended_transfer_as_transferee(cluster: Cluster, tmp_path: Path) -> None:
    """A REFER whose Refer-To embeds Replaces: sessiond's new call carries the header."""
    port = cluster.start_split("--answer", "auto")
    target_port = free_port()
    replaces = "consult@h;to-tag=abc;from-tag=def"
    expect = "Replaces: consult@h;to-tag=abc;from-tag=def"
    target = f"sip:carol@127.0.0.1:{target_port}"
    with (
        sipp_callee(tmp_path, "target", sc.uas_slow_answer(200, expect), target_port) as callee,
        run_sipp(tmp_path, "uac", sc.uac_refers_sessiond(target, replaces), port) as caller,
    ):
        out, _ = caller.communicate(timeout=40)
        assert finished(out) == (1, 0), out[-3000:]
        placed = next(s for s in cluster.sessions() if s["role"] == "UAC")
        assert placed["replaces"] == replaces

        async def hang_up() -> None:
            async with client(cluster) as app:
                await app.hangup(placed["sid"])

        asyncio.run(hang_up())
        out, _ = callee.communicate(timeout=30)
        assert finished(out) == (1, 0), out[-3000:]


def test_refused_hold_leaves_the_call_as_it_was(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_split("--answer", "auto")
    uas_port = free_port()
    with sipp_callee(tmp_path, "uas", sc.uas_refuses_hold(488), uas_port) as callee:

        async def drive() -> str:
            async with client(cluster) as app:
                sid = await app.make_call(f"sip:bob@127.0.0.1:{uas_port}")
                await app.wait_for_state(sid, "Established", timeout=10)
                await app.hold(sid)
                assert wait_for(
                    lambda: ("Reinviting", "Rejected", "Established") in cluster.steps(sid), 15
                )
                await app.hangup(sid)
                await app.wait_for_state(sid, "Terminated", timeout=10)
                return sid

        sid = asyncio.run(drive())
        out, _ = callee.communicate(timeout=30)
    assert finished(out) == (1, 0), out[-3000:]
    session = only_session(cluster)
    assert (session.get("hold", ""), session["reoffer"]) == ("", "")
    assert session["sid"] == sid
    app = cluster.redis().xrange(f"{cluster.namespace}:{{app}}:events")
    failed = [msgpack.unpackb(f[b"data"]) for _, f in app if f[b"type"] == b"HoldFailed"]
    assert [f["code"] for f in failed] == [488]
    assert not [f for _, f in app if f[b"type"] == b"HoldChanged"]
