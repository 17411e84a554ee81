"""The call-queue example against ``sessiond run --redis --answer app``: one agent and two
callers (SimplePeers over real SIP and RTP). The first caller is bridged to the agent and
they hear each other; the second hears the music until the first hangs up, then is bridged."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import subprocess
import sys
import uuid
from array import array
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sessiond import Call, CallEnded, SimplePeer
from sessiond.store.client import connect
from sessiond.store.store import delete_namespace

from .audio_checks import goertzel
from .helpers import Service, free_udp_port

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "service")}
MUSIC, AGENT, CALLER_1, CALLER_2 = 660.0, 880.0, 440.0, 1200.0
TONES = (MUSIC, AGENT, CALLER_1, CALLER_2)

pytestmark = [pytest.mark.redis, pytest.mark.timeout(45)]


def tone(hz: float) -> list[bytes]:
    """One second of ``hz`` as 20 ms frames (sent in a loop)."""
    step = 2 * math.pi * hz / 8000
    return [
        array("h", (int(8000 * math.sin(step * (k * 160 + i))) for i in range(160))).tobytes()
        for k in range(50)
    ]


async def send_forever(call: Call, hz: float) -> None:
    frames = tone(hz)
    with contextlib.suppress(CallEnded):
        while True:
            for frame in frames:
                await call.send_audio(frame)


async def heard(call: Call, seconds: float = 0.4) -> float | None:
    """The tone ``call`` hears now (None: silence), from ``seconds`` of received audio."""
    samples = array("h")
    for _ in range(int(seconds * 50)):
        samples.frombytes(await call.recv_audio())
    if max(samples, default=0) < 1000:
        return None
    return max(TONES, key=lambda f: goertzel(samples, f))


async def until_heard(call: Call, hz: float, timeout: float = 8.0) -> None:
    """Wait until ``call`` hears ``hz``; AssertionError naming what it heard instead."""
    now: float | None = None
    try:
        async with asyncio.timeout(timeout):
            while (now := await heard(call)) != hz:
                pass
    except TimeoutError:
        raise AssertionError(f"{call.sid} hears {now}, not {hz}") from None


@pytest.fixture
async def service(redis_url: str, tmp_path: Path) -> AsyncIterator[Service]:
    namespace = f"q{uuid.uuid4().hex[:8]}"
    svc = Service(redis_url, tmp_path, "--answer", "app", namespace=namespace)
    yield svc
    svc.stop()
    redis = connect(redis_url)
    await delete_namespace(redis, namespace)
    await redis.aclose()


async def test_call_queue(service: Service, redis_url: str, tmp_path: Path) -> None:
    namespace = service.namespace
    queue = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "call_queue.py"), "--redis", redis_url]
        + ["--namespace", str(namespace)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=ENV,
        cwd=tmp_path,
    )
    senders: list[asyncio.Task[None]] = []
    target = f"127.0.0.1:{service.port}"
    try:
        assert queue.stdout is not None
        line = await asyncio.to_thread(queue.stdout.readline)
        assert "call queue ready" in line, line
        async with (
            SimplePeer("agent", port=free_udp_port(), rtp_ports="21600-21649") as agent_peer,
            SimplePeer("c1", port=free_udp_port(), rtp_ports="21650-21699") as peer_1,
            SimplePeer("c2", port=free_udp_port(), rtp_ports="21700-21749") as peer_2,
        ):
            agent = await agent_peer.call(f"sip:agent1@{target}")
            senders.append(asyncio.create_task(send_forever(agent, AGENT)))
            first = await peer_1.call(f"sip:support@{target}")
            senders.append(asyncio.create_task(send_forever(first, CALLER_1)))
            await until_heard(first, AGENT)  # bridged: the caller hears the agent...
            await until_heard(agent, CALLER_1)  # ...and the agent the caller
            second = await peer_2.call(f"sip:support@{target}")
            senders.append(asyncio.create_task(send_forever(second, CALLER_2)))
            await until_heard(second, MUSIC)  # the agent is busy: music
            await asyncio.sleep(1.0)
            assert await heard(second) == MUSIC  # still waiting while the first talks
            await first.hangup()
            await until_heard(second, AGENT)  # now bridged to the agent
            await until_heard(agent, CALLER_2)
            await second.hangup()
            await agent.hangup()
    finally:
        for task in senders:
            task.cancel()
        queue.terminate()
        out, _ = await asyncio.to_thread(queue.communicate, timeout=10)
    assert out.count("bridged ") == 2, out
