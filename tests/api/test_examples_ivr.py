"""The IVR example, run as a user runs it: on the real Redis, called by a SimplePeer that
keys digits (RFC 4733 over real RTP); and its one-command ``--demo``."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from sessiond import SimplePeer
from sessiond_run import ENV, ROOT, wait_listening

from .helpers import free_udp_port

pytestmark = [pytest.mark.timeout(45)]


@pytest.mark.redis
async def test_ivr_collects_digits_until_pound(redis_url: str, tmp_path: Path) -> None:
    port = free_udp_port()
    ivr = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "ivr.py"), "--port", str(port)]
        + ["--redis", redis_url, "--digits", "6"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=ENV,
        cwd=tmp_path,
    )
    try:
        await asyncio.to_thread(wait_listening, port)
        async with SimplePeer("keyer", port=free_udp_port(), rtp_ports="21500-21599") as me:
            call = await me.call(f"sip:ivr@127.0.0.1:{port}", timeout=10)
            await asyncio.sleep(0.7)
            await call.send_dtmf("907#")
            ended = await call.wait_ended(15)
        assert ended.type == "Ended"
        out, _ = await asyncio.to_thread(ivr.communicate, timeout=15)
    finally:
        if ivr.poll() is None:
            ivr.kill()
            ivr.wait()
    assert ivr.returncode == 0, out
    assert "digits: 907\n" in out, out


def test_ivr_demo_runs_with_one_command(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "ivr.py"), "--demo"]
        + ["--port", str(free_udp_port())],
        capture_output=True,
        text=True,
        timeout=40,
        env=ENV,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "digits: 42\n" in result.stdout
