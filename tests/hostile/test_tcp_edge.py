"""TCP attacks on an in-process edge (so its limits can be set small and its open files read
from /proc/self/fd): a slow sender holding a partial message open, a header section that
never ends, a connection flood past ``max_connections``; and a body the edge cannot read.
During each, legitimate requests from another connection or over UDP are still answered and
published."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ports import free_port
from sessiond.edge.process import Edge
from sessiond.edge.transport import ListenSpec
from sessiond.store import Keys
from sessiond.store.store import decode_event

from .net import open_fds, request, server_sockets, status

pytestmark = pytest.mark.redis


@pytest.fixture
async def edge(redis_url: str) -> AsyncIterator[Edge]:
    from sessiond.store.client import connect
    from sessiond.store.store import delete_namespace

    client = connect(redis_url)
    keys = Keys(f"hostile{time.monotonic_ns() % 10**8}")
    port = free_port()
    e = Edge(
        client,
        keys,
        "h1",
        [ListenSpec("UDP", "127.0.0.1", port), ListenSpec("TCP", "127.0.0.1", port)],
        tcp_idle_timeout=3.0,
        tcp_message_timeout=1.0,
        max_connections=40,
    )
    task = asyncio.create_task(e.run())
    for _ in range(200):
        if len(e.locals) == 2:
            break
        await asyncio.sleep(0.01)
    try:
        yield e
    finally:
        e.stop()
        await asyncio.wait_for(task, 5)
        await delete_namespace(client, keys.ns)
        await client.aclose()


async def _connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def _closed_by_peer(reader: asyncio.StreamReader, within: float) -> bool:
    try:
        return await asyncio.wait_for(reader.read(65535), within) == b""
    except (TimeoutError, ConnectionResetError):
        return False


async def _tcp_options_answered(port: int) -> bool:
    reader, writer = await _connect(port)
    try:
        writer.write(request("OPTIONS", port, ("127.0.0.1", 5999), transport="TCP"))
        reply = await asyncio.wait_for(reader.read(65535), 2)
        return status(reply) == 200
    finally:
        writer.close()
        await writer.wait_closed()


async def _invite_published(edge: Edge, port: int, call_id: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.sendto(request("INVITE", port, s.getsockname(), call_id=call_id), ("127.0.0.1", port))
        await asyncio.sleep(0.3)
    stream = edge.keys.events(edge.keys.partition_of_call(call_id))
    found = [decode_event(f) for _, f in await edge.redis.xrange(stream)]
    return any(e.data.get("call_id") == call_id for e in found)


async def test_slow_sender_is_cut_off_by_the_message_timeout(edge: Edge) -> None:
    """A sender trickling one byte every 0.2 s never goes idle, but a partial message held
    for longer than the message timeout (1 s here, 32 s by default) closes the connection;
    one that stops sending mid-message is closed too. Meanwhile other clients are served."""
    port = edge.address.port
    slow_reader, slow = await _connect(port)
    stalled_reader, stalled = await _connect(port)
    stalled.write(request("OPTIONS", port, ("127.0.0.1", 5998), transport="TCP")[:40])
    data = request("OPTIONS", port, ("127.0.0.1", 5997), transport="TCP")
    closed_at = None
    start = time.monotonic()
    for i in range(len(data) - 1):  # never completes the message; bounded: at most ~6 s
        if slow.is_closing() or slow_reader.at_eof() or time.monotonic() - start > 6:
            break
        slow.write(data[i : i + 1])
        await asyncio.sleep(0.2)
        if i == 3:
            assert await _tcp_options_answered(port)
            assert await _invite_published(edge, port, "during-slowloris")
        if slow_reader.at_eof() or await _closed_by_peer(slow_reader, 0.01):
            closed_at = time.monotonic() - start
            break
    assert closed_at is not None
    assert closed_at < 3.5, closed_at
    assert await _closed_by_peer(stalled_reader, 1.0) or stalled_reader.at_eof()
    for writer in (slow, stalled):
        writer.close()
        with _nothing():
            await writer.wait_closed()
    await asyncio.sleep(0.2)
    assert edge.transports.connections == 0
    assert server_sockets(port) == 0


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> bool:
        return exc[0] is not None and issubclass(exc[0], ConnectionError)


async def test_endless_header_section_closed_at_the_framer_limit(edge: Edge) -> None:
    """16 kB of header lines without the empty line: the framer refuses it (513) and the
    connection is closed at once, holding no more than the limit."""
    port = edge.address.port
    reader, writer = await _connect(port)
    try:
        writer.write(
            b"OPTIONS sip:a@127.0.0.1 SIP/2.0\r\n" + b"X-Filler: aaaaaaaaaaaaaaaa\r\n" * 700
        )
        assert await _closed_by_peer(reader, 2.0) or reader.at_eof()
    finally:
        writer.close()
        with _nothing():
            await writer.wait_closed()
    assert await _tcp_options_answered(port)


async def test_connection_flood_holds_the_limit(edge: Edge) -> None:
    """200 connections against a limit of 40: the edge keeps at most 40, its open files come
    back to where they were when the flood ends, and UDP callers are served meanwhile."""
    port = edge.address.port
    fds = open_fds()
    socks: list[socket.socket] = []
    try:
        for _ in range(200):
            s = socket.socket()
            s.setblocking(False)
            socks.append(s)
            try:
                s.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
        await asyncio.sleep(0.5)
        assert 0 < edge.transports.connections <= 40
        peak = open_fds()
        assert peak - fds <= 200 + 40 + 8  # our 200 client ends, at most 40 server ends
        assert await _invite_published(edge, port, "during-flood")
    finally:
        for s in socks:
            s.close()
    await asyncio.sleep(0.5)
    assert edge.transports.connections == 0
    assert server_sockets(port) == 0


async def test_invite_with_a_body_we_cannot_read_gets_415(edge: Edge) -> None:
    """RFC 3261 8.2.3 (RFC 4475 3.1.1.13 invut): not an offerless INVITE, but 415 + Accept."""
    port = edge.address.port
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        extra = "Content-Type: application/unknownformat\r\n"
        msg = request("INVITE", port, s.getsockname(), call_id="body415", extra=extra, body="<x/>")
        s.sendto(msg, ("127.0.0.1", port))
        reply = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(s, 65535), 2)
    assert status(reply) == 415
    assert b"\r\nAccept: application/sdp\r\n" in reply
    stream = edge.keys.events(edge.keys.partition_of_call("body415"))
    assert await edge.redis.xrange(stream) == []
