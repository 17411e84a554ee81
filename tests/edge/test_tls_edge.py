"""The edge's TLS client side and keepalives, in process over real sockets and a real Redis:
INVITEs to a ``sips:`` target over one verified, reused connection; a server whose
certificate names another host or comes from a CA we do not trust gets nothing, and the
call's table hears a TransactionTimeout at once; UDP keepalives are dropped unanswered."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sessiond.core import metrics
from sessiond.core.messages import SendInvite
from sessiond.edge.process import Edge
from sessiond.edge.registrar_client import OutboundConfig
from sessiond.edge.tls import TlsConfig, TlsContexts
from sessiond.edge.transport import ListenSpec
from sessiond.sip.framing import StreamFramer
from sessiond.store import Keys
from sessiond.store.store import decode_event
from tls_certs import Ca, Issued

pytestmark = pytest.mark.redis


@pytest.fixture
def ca(tmp_path: Path) -> Ca:
    return Ca(tmp_path)


@pytest.fixture
async def edge(backend: tuple[str, Any, Keys], ca: Ca) -> AsyncIterator[Edge]:
    _, client, keys = backend
    ours = ca.issue("edge")
    tls = TlsContexts(TlsConfig(str(ours.cert), str(ours.key), str(ca.path)))
    listen = [ListenSpec("UDP", "127.0.0.1", 0), ListenSpec("TLS", "127.0.0.1", 0)]
    e = Edge(client, keys, "e1", listen, tls=tls)
    task = asyncio.create_task(e.run())
    for _ in range(200):
        if len(e.locals) == 2:
            break
        await asyncio.sleep(0.01)
    yield e
    e.stop()
    await asyncio.wait_for(task, 5)


class TlsServer:
    """A SIP server on TLS that records what each connection sends (it never answers)."""

    def __init__(self, issued: Issued, *, answer: bool = False) -> None:
        self.answer = answer  # 200 OK to each request
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(issued.cert, issued.key)
        self.connections = 0
        self.closed = 0  # connections the far end (the edge) closed
        self.messages: list[bytes] = []
        self.got = asyncio.Event()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.context)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        framer = StreamFramer()
        try:
            while data := await reader.read(65535):
                for message in framer.feed(data):
                    self.messages.append(message)
                    if self.answer:
                        writer.write(ok(message.decode()))
                self.got.set()
        except (ssl.SSLError, ConnectionError):
            pass
        self.closed += 1
        writer.close()

    async def stop(self) -> None:
        self.server.close()


def ok(request: str) -> bytes:
    """200 OK to ``request`` (with its Contact and an Expires, as a registrar answers)."""
    head = request.split("\r\n\r\n", 1)[0].split("\r\n")[1:]
    keep = ("via", "from", "to", "call-id", "cseq", "contact")
    lines = [line for line in head if line.split(":", 1)[0].strip().lower() in keep]
    lines = [f"{line};tag=srv" if line.lower().startswith("to:") else line for line in lines]
    return (
        "SIP/2.0 200 OK\r\n" + "\r\n".join(lines) + "\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def invite(call_id: str, target: str) -> SendInvite:
    return SendInvite(
        cseq=1,
        sdp="v=0\r\n",
        call_id=call_id,
        local_tag="lt",
        remote_tag="",
        local_uri="sip:alice@127.0.0.1",
        remote_uri=target,
        remote_target=target,
        route_set="",
    )


async def events(edge: Edge, call_id: str) -> list[Any]:
    stream = edge.keys.events(edge.keys.partition_of_call(call_id))
    return [decode_event(f) for _, f in await edge.redis.xrange(stream)]


async def test_invites_to_a_sips_target_share_one_verified_connection(edge: Edge, ca: Ca) -> None:
    server = TlsServer(ca.issue("far", ("localhost",)))
    port = await server.start()
    try:
        await asyncio.gather(
            edge.execute_command("c1", "invite", invite("tls-1", f"sips:bob@localhost:{port}")),
            edge.execute_command("c2", "invite", invite("tls-2", f"sips:bob@localhost:{port}")),
        )
        await edge.execute_command(
            "c3", "invite", invite("tls-3", f"sip:bob@localhost:{port};transport=tls")
        )
        for _ in range(200):
            if len(server.messages) == 3:
                break
            await asyncio.sleep(0.01)
        assert server.connections == 1
        texts = sorted(m.decode() for m in server.messages)
        tls_port = edge.locals["TLS"].port
        assert sorted(t.split("\r\n", 1)[0] for t in texts) == [
            f"INVITE sip:bob@localhost:{port};transport=tls SIP/2.0",
            f"INVITE sips:bob@localhost:{port} SIP/2.0",
            f"INVITE sips:bob@localhost:{port} SIP/2.0",
        ]
        for text in texts:
            assert f"Via: SIP/2.0/TLS 127.0.0.1:{tls_port};" in text
        sips_contact = f"Contact: <sips:sessiond@127.0.0.1:{tls_port}>"
        tls_contact = f"Contact: <sip:sessiond@127.0.0.1:{tls_port};transport=tls>"
        assert sum(sips_contact in t for t in texts) == 2
        assert sum(tls_contact in t for t in texts) == 1
    finally:
        await server.stop()


@pytest.mark.parametrize("problem", ["wrong-name", "untrusted-ca"])
async def test_a_server_that_fails_verification_gets_nothing_and_the_call_times_out(
    edge: Edge, ca: Ca, tmp_path: Path, problem: str, caplog: pytest.LogCaptureFixture
) -> None:
    if problem == "wrong-name":
        issued = ca.issue("far", ("sip.example.com",))
    else:
        stranger = tmp_path / "stranger"
        stranger.mkdir()
        issued = Ca(stranger, "a stranger CA").issue("far", ("localhost",))
    server = TlsServer(issued)
    port = await server.start()
    verify = metrics.child(metrics.SIP_DROPPED, "tls-verify")
    before = verify._value.get()
    try:
        call_id = f"bad-{problem}"
        await edge.execute_command("c1", "invite", invite(call_id, f"sips:bob@localhost:{port}"))
        found: list[Any] = []
        for _ in range(300):
            found = await events(edge, call_id)
            if found:
                break
            await asyncio.sleep(0.02)
        assert [ev.type for ev in found] == ["TransactionTimeout"]
        assert server.messages == []
        assert verify._value.get() == before + 1
        lines = [r.getMessage() for r in caplog.records]
        assert [line for line in lines if "(localhost): certificate not accepted" in line]
    finally:
        await server.stop()


async def test_udp_keepalives_are_dropped_without_an_answer(edge: Edge) -> None:
    port = edge.locals["UDP"].port
    keepalive = metrics.child(metrics.SIP_DROPPED, "keepalive")
    before = keepalive._value.get()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        me = sock.getsockname()[1]
        for data in (b"\r\n\r\n", b"\r\n", b"\x00\x01\x00\x00"):
            sock.sendto(data, ("127.0.0.1", port))
        options = (
            f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{me};branch="
            "z9hG4bK-ka\r\nFrom: <sip:a@127.0.0.1>;tag=a\r\nTo: <sip:127.0.0.1>\r\n"
            "Call-ID: ka\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
        sock.sendto(options.encode(), ("127.0.0.1", port))
        loop = asyncio.get_running_loop()
        first = await asyncio.wait_for(loop.sock_recv(sock, 65535), 2)
        assert first.startswith(b"SIP/2.0 200")  # nothing came before it
        assert keepalive._value.get() == before + 3


async def test_a_registration_to_a_sips_registrar_goes_over_verified_tls(
    backend: tuple[str, Any, Keys], ca: Ca
) -> None:
    _, client, keys = backend
    registrar = TlsServer(ca.issue("registrar", ("localhost",)), answer=True)
    port = await registrar.start()
    ours = ca.issue("edge")
    tls = TlsContexts(TlsConfig(str(ours.cert), str(ours.key), str(ca.path)))
    listen = [ListenSpec("UDP", "127.0.0.1", 0), ListenSpec("TLS", "127.0.0.1", 0)]
    outbound = OutboundConfig(register=(f"sips:alice@localhost:{port}",))
    outbound.check({"UDP", "TLS"})
    e = Edge(client, keys, "e1", listen, tls=tls, outbound=outbound)
    task = asyncio.create_task(e.run())
    try:
        assert e.registrar is not None
        reg = e.registrar.registrations
        for _ in range(300):
            if reg and reg[0].state == "registered":
                break
            await asyncio.sleep(0.02)
        assert reg[0].state == "registered"
        first = registrar.messages[0].decode()
        assert first.startswith(f"REGISTER sips:localhost:{port} SIP/2.0")
        tls_port = e.locals["TLS"].port
        assert f"Via: SIP/2.0/TLS 127.0.0.1:{tls_port};" in first
        assert f"Contact: <sips:alice@127.0.0.1:{tls_port}>" in first
        assert registrar.connections == 1
    finally:
        e.stop()
        await asyncio.wait_for(task, 5)
        await registrar.stop()


async def test_an_idle_outbound_tls_connection_is_closed(
    backend: tuple[str, Any, Keys], ca: Ca
) -> None:
    _, client, keys = backend
    server = TlsServer(ca.issue("far", ("localhost",)))
    port = await server.start()
    ours = ca.issue("edge")
    tls = TlsContexts(TlsConfig(str(ours.cert), str(ours.key), str(ca.path)))
    e = Edge(client, keys, "e1", [ListenSpec("TLS", "127.0.0.1", 0)], tls=tls, tcp_idle_timeout=1.0)
    task = asyncio.create_task(e.run())
    try:
        for _ in range(200):
            if e.locals:
                break
            await asyncio.sleep(0.01)
        await e.execute_command("c1", "invite", invite("idle-1", f"sips:bob@localhost:{port}"))
        await asyncio.wait_for(server.got.wait(), 5)
        assert e.transports.connections == 1
        for _ in range(500):  # the reaper looks every 0.5 s
            if server.closed:
                break
            await asyncio.sleep(0.02)
        assert server.closed == 1
        assert e.transports.connections == 0
    finally:
        e.stop()
        await asyncio.wait_for(task, 5)
        await server.stop()


async def test_tls_without_a_tls_listener_is_a_transport_error(
    backend: tuple[str, Any, Keys], ca: Ca
) -> None:
    _, client, keys = backend
    server = TlsServer(ca.issue("far", ("localhost",)))
    port = await server.start()
    e = Edge(client, keys, "e1", [ListenSpec("UDP", "127.0.0.1", 0)])
    task = asyncio.create_task(e.run())
    try:
        for _ in range(200):
            if e.locals:
                break
            await asyncio.sleep(0.01)
        await e.execute_command("c1", "invite", invite("nolis-1", f"sips:bob@localhost:{port}"))
        found: list[Any] = []
        for _ in range(300):
            found = await events(e, "nolis-1")
            if found:
                break
            await asyncio.sleep(0.02)
        assert [ev.type for ev in found] == ["TransactionTimeout"]
        assert server.connections == 0
    finally:
        e.stop()
        await asyncio.wait_for(task, 5)
        await server.stop()


async def test_a_call_to_the_address_a_phone_connects_from_goes_over_its_connection(
    edge: Edge, ca: Ca
) -> None:
    """A phone behind NAT keeps a TLS connection to us (no certificate of its own, its source
    port taking no connection); a new INVITE to exactly that address reaches it over that
    connection (edge/transport.py: RFC 5923 reuse)."""
    context = ssl.create_default_context(cafile=str(ca.path))
    tls_port = edge.locals["TLS"].port
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", tls_port, ssl=context, server_hostname="localhost"
    )
    try:
        writer.write(b"\r\n\r\n")  # a keepalive ping: once ponged, the edge holds the connection
        assert await asyncio.wait_for(reader.readexactly(2), 5) == b"\r\n"
        host, port = writer.get_extra_info("sockname")[:2]
        target = f"sip:alice@{host}:{port};transport=tls"
        await edge.execute_command("c1", "invite", invite("back-1", target))
        framer = StreamFramer()
        messages: list[bytes] = []
        while not messages:
            messages = framer.feed(await asyncio.wait_for(reader.read(65535), 5))
        text = messages[0].decode()
        assert text.startswith(f"INVITE {target} SIP/2.0\r\n"), text
        assert f"Via: SIP/2.0/TLS 127.0.0.1:{tls_port};" in text
        assert edge.transports.connections == 1
        assert await events(edge, "back-1") == []  # no transport error
    finally:
        writer.close()
