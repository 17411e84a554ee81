"""Client against ``sessiond run --answer app`` on the real Redis, with sipp as the far end."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from e2e.harness import finished as sipp_stats
from sessiond import CallEvent, Client, Ended, Established, SessionNotFound
from sessiond.store.client import connect
from sessiond.store.store import delete_namespace

from .helpers import UAC_486, Service, free_udp_port, sipp_command

pytestmark = [
    pytest.mark.redis,
    pytest.mark.timeout(30),
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) missing"),
]


@pytest.fixture
async def namespace(redis_url: str) -> AsyncIterator[str]:
    ns = f"api{uuid.uuid4().hex[:8]}"
    yield ns
    redis = connect(redis_url)
    await delete_namespace(redis, ns)
    await redis.aclose()


@pytest.fixture
def service(redis_url: str, namespace: str, tmp_path: Path) -> Iterator[Service]:
    svc = Service(redis_url, tmp_path, "--answer", "app", namespace=namespace)
    yield svc
    svc.stop()


@pytest.fixture
async def client(redis_url: str, namespace: str) -> AsyncIterator[Client]:
    async with Client(redis_url, namespace=namespace, group="test") as c:
        yield c


async def run_sipp(tmp: Path, *args: str, port: int = 0) -> subprocess.CompletedProcess[str]:
    command = sipp_command(tmp, *args, port=port)
    return await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, timeout=28, cwd=tmp, check=False
    )


async def test_incoming_call_is_seen_and_accepted(
    service: Service, client: Client, tmp_path: Path
) -> None:
    sipp = asyncio.create_task(
        run_sipp(tmp_path, "-sn", "uac", f"127.0.0.1:{service.port}", "-m", "1", "-d", "300")
    )
    async for event in client.incoming_calls():
        assert event.type == "IncomingCall"
        assert "sipp@" in event.remote_uri
        assert (await client.session(event.sid))["state"] == "Ringing"
        await client.accept(event.sid)
        break
    result = await sipp
    assert sipp_stats(result.stdout) == (1, 0), result.stdout[-2000:] + service.log()


async def test_reject_486_fails_the_sipp_call_with_486(
    service: Service, client: Client, tmp_path: Path
) -> None:
    scenario = tmp_path / "uac_486.xml"
    scenario.write_text(UAC_486)
    sipp = asyncio.create_task(
        run_sipp(tmp_path, "-sf", str(scenario), f"127.0.0.1:{service.port}", "-m", "1")
    )
    async for event in client.incoming_calls():
        await client.reject(event.sid, 486)
        break
    result = await sipp
    assert sipp_stats(result.stdout) == (1, 0), result.stdout[-2000:] + service.log()
    session = await client.wait_for_state(event.sid, "Terminated", timeout=5)
    assert session["end_code"] == "486"


async def test_two_instances_share_the_group_and_survive_a_killed_one(
    redis_url: str, namespace: str, service: Service, tmp_path: Path
) -> None:
    calls = 5
    first = Client(redis_url, namespace=namespace, group="shared", consumer="a", claim_idle=1.0)
    second = Client(redis_url, namespace=namespace, group="shared", consumer="b", claim_idle=1.0)
    handled: dict[str, list[str]] = {"a": [], "b": []}
    stuck = asyncio.Event()

    async def instance_a() -> None:
        async for event in first.incoming_calls():
            if handled["a"]:  # the second call: "crash" in the middle of handling it
                stuck.set()
                await asyncio.Event().wait()
            await first.accept(event.sid)
            handled["a"].append(event.sid)

    async def instance_b() -> None:
        async for event in second.incoming_calls():
            await second.accept(event.sid)
            handled["b"].append(event.sid)

    await first.ensure_group()
    a = asyncio.create_task(instance_a())
    sipp = asyncio.create_task(
        run_sipp(tmp_path, "-sn", "uac", f"127.0.0.1:{service.port}", "-m", str(calls), "-d", "300")
    )
    b: asyncio.Task[None] | None = None
    try:
        await asyncio.wait_for(stuck.wait(), 15)
        a.cancel()  # killed: its current entry stays pending, never acknowledged
        with contextlib.suppress(asyncio.CancelledError):
            await a
        b = asyncio.create_task(instance_b())
        result = await sipp
        assert sipp_stats(result.stdout) == (calls, 0), result.stdout[-2000:] + service.log()
    finally:
        for task in (a, b, sipp):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await first.close()
        await second.close()
    assert len(handled["a"]) == 1
    assert not set(handled["a"]) & set(handled["b"])
    assert len(handled["b"]) == len(set(handled["b"])) == calls - 1


async def test_make_call_to_sipp_uas_then_hangup(
    service: Service, client: Client, tmp_path: Path
) -> None:
    uas_port = free_udp_port()
    uas = asyncio.create_task(run_sipp(tmp_path, "-sn", "uas", "-m", "1", port=uas_port))
    try:
        await asyncio.sleep(0.3)  # sipp binds its port
        sid = await client.make_call(f"sip:uas@127.0.0.1:{uas_port}", from_uri="sip:app@x")
        session = await client.wait_for_state(sid, "Established", timeout=10)
        assert session["role"] == "UAC"
        await client.hangup(sid)
        session = await client.wait_for_state(sid, "Terminated", timeout=10)
        assert session["end_reason"] == "local hangup"
        seen: list[CallEvent] = []
        async for event in client.events():
            if event.sid == sid:
                seen.append(event)
            if isinstance(event, Ended):
                break
        assert [type(e) for e in seen if isinstance(e, Established | Ended)] == [Established, Ended]
        result = await asyncio.wait_for(uas, 15)
        assert result.returncode == 0, result.stdout[-2000:]
    finally:
        uas.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await uas


async def test_commands_on_an_unknown_session_raise_session_not_found(client: Client) -> None:
    with pytest.raises(SessionNotFound):
        await client.hangup("0123456789-000000000000")
    with pytest.raises(SessionNotFound):
        await client.session("not-a-sid")


def test_package_exports_match_the_api() -> None:
    """sessiond re-exports the API lazily; the two lists must not drift apart."""
    import sessiond
    import sessiond.api

    assert sessiond.__all__ == sessiond.api.__all__
    assert all(getattr(sessiond, name) is getattr(sessiond.api, name) for name in sessiond.__all__)
