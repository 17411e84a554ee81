"""Overload shedding: new INVITEs get 503 while workers lag or Redis is slow; calls in
progress go on."""

from __future__ import annotations

import asyncio
import socket
import uuid
from typing import Any

import pytest

from sessiond.edge.overload import OverloadGuard
from sessiond.edge.process import Edge
from sessiond.edge.transport import ListenSpec
from sessiond.store import Keys
from sessiond.store.client import connect
from sessiond.store.store import decode_event, delete_namespace


def test_guard_on_a_fake_clock() -> None:
    guard = OverloadGuard(max_lag=100, max_delay=1.0)
    assert guard.reason(0.0) is None
    guard.observe_lag(101)
    assert guard.reason(0.0) == "101 events waiting for workers"
    guard.observe_lag(10)
    guard.queued(5.0)
    assert guard.reason(5.5) is None
    assert guard.reason(6.5) == "events unpublished for 1.5 s"
    guard.published(6.6, pending=False)
    assert guard.reason(10.0) is None
    guard.queued(11.0)
    guard.published(11.2, pending=True)  # more queued meanwhile: the clock restarts
    assert guard.reason(12.0) is None
    assert guard.reason(12.5) is not None


def request(port: int, method: str, call_id: str, to_tag: str = "", branch: str = "b") -> bytes:
    to = "<sip:bob@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    return (
        f"{method} sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};"
        f"branch=z9hG4bK-{branch};rport\r\nFrom: <sip:a@127.0.0.1>;tag=a\r\nTo: {to}\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


@pytest.mark.redis
async def test_edge_sheds_new_calls_while_workers_lag(redis_url: str) -> None:
    client: Any = connect(redis_url)
    keys = Keys(f"ovl{uuid.uuid4().hex[:8]}")
    await delete_namespace(client, keys.ns)
    # the workers' group exists but nobody reads: 60 undelivered events
    stream = keys.events(0)
    await client.xgroup_create(stream, "workers", id="0", mkstream=True)
    for n in range(60):
        await client.xadd(stream, {"id": f"x{n}", "type": "Hangup", "sid": "s"})
    edge = Edge(client, keys, "ov", [ListenSpec("UDP", "127.0.0.1", 0)], shed_lag=50)
    task = asyncio.create_task(edge.run())
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        for _ in range(300):  # the first heartbeat samples the lag
            if edge.overload.lag:
                break
            await asyncio.sleep(0.01)
        port = sock.getsockname()[1]
        sock.sendto(request(port, "INVITE", "new@h"), ("127.0.0.1", edge.address.port))
        reply = (await asyncio.wait_for(loop.sock_recv(sock, 65535), 5)).decode()
        assert reply.startswith("SIP/2.0 503 Service Unavailable - Overloaded (60 events")
        assert "Retry-After: 5" in reply
        # a request inside an existing dialog still goes through to the workers
        bye = request(port, "BYE", "old@h", to_tag="ours", branch="bye")
        sock.sendto(bye, ("127.0.0.1", edge.address.port))
        await asyncio.sleep(0.3)
        published = []
        for p in range(keys.partitions):
            published += [decode_event(f) for _, f in await client.xrange(keys.events(p))]
        types = [e.type for e in published if e.data.get("call_id") in ("new@h", "old@h")]
        assert types == ["Bye"]
    finally:
        sock.close()
        edge.stop()
        await asyncio.wait_for(task, 10)
        await delete_namespace(client, keys.ns)
        await client.aclose()
