"""An edge listening on 0.0.0.0 / [::] answers from the address each request came to (the
kernel alone would pick 127.0.0.1 for every answer on loopback: 127.0.0.2 shows it)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests.edge.test_edge import running

from sessiond.edge.process import Edge
from sessiond.edge.transport import ListenSpec
from sessiond.store import Keys

pytestmark = pytest.mark.redis


def options(port: int, call_id: str, host: str = "127.0.0.1") -> bytes:
    sent_by = f"[{host}]" if ":" in host else host
    return (
        f"OPTIONS sip:{sent_by} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {sent_by}:{port};branch=z9hG4bK-{call_id};rport\r\n"
        f"From: <sip:a@{sent_by}>;tag=o\r\nTo: <sip:{sent_by}>\r\nCall-ID: {call_id}\r\n"
        f"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


async def ask(family: int, local: str, target: tuple[str, int], call_id: str) -> Any:
    """Send an OPTIONS to ``target``; the answer's text and the address it came from."""
    loop = asyncio.get_running_loop()
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind((local, 0))
        sock.setblocking(False)
        sock.sendto(options(sock.getsockname()[1], call_id, local), target)
        data, source = await asyncio.wait_for(loop.sock_recvfrom(sock, 65535), 3)
        return data.decode(), source[:2]


@pytest.fixture
async def wildcard(backend: tuple[str, Any, Keys]) -> AsyncIterator[Edge]:
    _, client, keys = backend
    listen = [ListenSpec("UDP", "0.0.0.0", 0)]
    if socket.has_ipv6:
        listen.append(ListenSpec("UDP", "::", 0))
    e = Edge(client, keys, "w1", listen)
    task = await running(e)
    yield e
    e.stop()
    await asyncio.wait_for(task, 5)


async def test_answers_leave_from_the_address_asked(wildcard: Edge) -> None:
    port = wildcard.transports.specs[0].port
    for n, address in enumerate(("127.0.0.1", "127.0.0.2", "127.0.0.3")):
        reply, source = await ask(socket.AF_INET, "127.0.0.1", (address, port), f"w{n}")
        assert reply.startswith("SIP/2.0 200")
        assert source == (address, port)
    # the Via names a usable address, never the wildcard
    assert wildcard.address.host not in ("0.0.0.0", "::")


async def test_ipv6_wildcard_beside_ipv4(wildcard: Edge) -> None:
    if len(wildcard.transports.specs) < 2:
        pytest.skip("no IPv6 on this machine")
    port = wildcard.transports.specs[1].port
    try:
        reply, source = await ask(socket.AF_INET6, "::1", ("::1", port), "w6")
    except OSError as exc:  # no ::1 (IPv6 disabled in this network namespace)
        pytest.skip(f"no IPv6 loopback: {exc}")
    assert reply.startswith("SIP/2.0 200")
    assert source == ("::1", port)
