"""SimplePeers with SRTP over real SIP and RTP on loopback: the keys survive a hold and a
resume (the re-INVITEs offer them again), audio and RFC 4733 digits go through SRTP, and
the policies refuse with 488 what they must."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from array import array
from pathlib import Path

import pytest

from sessiond import CallRejected, DtmfReceived, Ended, SimplePeer
from sessiond.api.call import Call
from sessiond.media.tones import ToneGenerator

from .audio_checks import dominant
from .helpers import free_udp_port, sipp_command

pytestmark = pytest.mark.timeout(40)


async def heard(call: Call, frames: int = 50) -> array[int]:
    """What ``call`` plays out for ``frames`` x 20 ms."""
    out = array("h")
    for _ in range(frames):
        out.frombytes(await call.recv_audio(timeout=2.0))
    return out


async def send_tone(call: Call) -> None:
    gen = ToneGenerator((440.0,))
    while True:
        await call.send_audio(gen.frame())


async def bob_answers(bob: SimplePeer) -> tuple[str, array[int], array[int]]:
    """Bob accepts, listens, gets a digit, listens again after alice's hold and resume."""
    call = await (await bob.incoming_call(timeout=10)).accept()
    await asyncio.sleep(0.5)
    before = await heard(call)
    digit = await call.wait_for(DtmfReceived, timeout=10)
    assert isinstance(digit, DtmfReceived)
    await asyncio.sleep(2.5)  # alice holds and resumes meanwhile
    after = await heard(call)
    await call.wait_ended(timeout=10)
    return digit.digit, before, after


async def test_srtp_call_keeps_its_keys_through_hold_and_resume() -> None:
    async with (
        SimplePeer("alice", free_udp_port(), rtp_ports="21400-21449", srtp="require") as alice,
        SimplePeer("bob", free_udp_port(), rtp_ports="21450-21499", srtp="require") as bob,
    ):
        bob_side = asyncio.create_task(bob_answers(bob))
        call = await alice.call(f"sip:bob@127.0.0.1:{bob.port}", timeout=10)
        leg = alice.leg(call.sid)
        assert leg is not None
        keys = leg.srtp
        assert keys is not None
        sender = asyncio.create_task(send_tone(call))
        try:
            await asyncio.sleep(1.8)
            await call.send_dtmf("5")
            await asyncio.sleep(0.5)
            await call.hold()
            await asyncio.sleep(0.5)
            await call.resume()
            await asyncio.sleep(3.0)
        finally:
            sender.cancel()
        assert leg.srtp is keys  # hold and resume offered the keys the call runs
        assert leg.srtp_errors == 0
        await call.hangup()
        digit, before, after = await asyncio.wait_for(bob_side, 15)
    assert digit == "5"
    for samples in (before, after):
        assert dominant(samples, (300.0, 440.0, 1000.0)) == 440.0
        assert max(samples) > 2000


@pytest.mark.parametrize(("caller", "callee"), [("off", "require"), ("require", "off")])
async def test_policies_refuse_with_488(caller: str, callee: str) -> None:
    """A plain offer to ``require``, an RTP/SAVP offer to ``off``: 488 Not Acceptable Here."""
    async with (
        SimplePeer("carol", free_udp_port(), rtp_ports="21500-21549", srtp=caller) as carol,
        SimplePeer("dave", free_udp_port(), rtp_ports="21550-21599", srtp=callee) as dave,
    ):

        async def answer() -> None:
            with contextlib.suppress(Exception):  # the call fails before it can be accepted
                await (await dave.incoming_call(timeout=10)).accept()

        answering = asyncio.create_task(answer())
        with pytest.raises(CallRejected) as info:
            await carol.call(f"sip:dave@127.0.0.1:{dave.port}", timeout=10)
        assert info.value.code == 488
        answering.cancel()


@pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) missing")
async def test_require_ends_a_call_answered_with_plain_rtp(tmp_path: Path) -> None:
    """sipp's uas answers every offer ``RTP/AVP 0`` (it does not read ours, RTP/SAVP): under
    ``require`` that answer is refused, and the established call is hung up (BYE)."""
    sipp_port = free_udp_port()
    command = sipp_command(tmp_path, "-sn", "uas", "-m", "1", port=sipp_port)
    sipp = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        async with SimplePeer(
            "erin", free_udp_port(), rtp_ports="21600-21649", srtp="require"
        ) as erin:
            call = await erin.call(f"sip:uas@127.0.0.1:{sipp_port}", timeout=10)
            ended = await call.wait_ended(timeout=10)
            assert isinstance(ended, Ended)
            assert ended.reason == "media failed"
            assert ended.code == 488
        out, _ = await asyncio.to_thread(sipp.communicate, timeout=20)
    finally:
        if sipp.poll() is None:
            sipp.kill()
            sipp.communicate()
    assert sipp.returncode == 0, out[-2000:]  # sipp got our BYE: its call completed
