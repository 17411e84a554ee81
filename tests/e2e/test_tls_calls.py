"""SIP over TLS and TCP with a live ``sessiond run`` (real Redis, uvloop, the CLI's flags): a
call from a Python ``ssl`` client, keepalive pings, the BYE of a hangup back over the
caller's own connection (its Contact port listens to nothing), and the certificate reloaded
on SIGHUP."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from ports import free_port
from sessiond.sip.framing import StreamFramer
from sessiond_run import ENV, SessiondRun
from tls_certs import Ca, serial_of

from .harness import free_rtp_range

pytestmark = pytest.mark.redis
T = TypeVar("T")

SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
SDP += "m=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"


class Run:
    def __init__(self, sessiond: SessiondRun, tls_port: int, tcp_port: int, ns: str) -> None:
        self.sessiond = sessiond
        self.tls_port = tls_port
        self.tcp_port = tcp_port
        self.namespace = ns


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Ca:
    return Ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def run(
    ca: Ca, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Run, Path, Path]]:
    tmp = tmp_path_factory.mktemp("run")
    issued = ca.issue("server")
    cert, key = tmp / "live.crt", tmp / "live.key"
    shutil.copy(issued.cert, cert)
    shutil.copy(issued.key, key)
    tls_port, tcp_port = free_port(), free_port()
    ns = f"tls{uuid.uuid4().hex[:8]}"
    sessiond = SessiondRun(
        tmp / "run.log",
        "--redis",
        redis_url,
        "--namespace",
        ns,
        "--rtp-ports",
        free_rtp_range(40),
        "--listen",
        f"tls:127.0.0.1:{tls_port}",
        "--listen",
        f"tcp:127.0.0.1:{tcp_port}",
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
    )
    try:
        yield Run(sessiond, tls_port, tcp_port, ns), cert, key
    finally:
        sessiond.stop()


class StreamPeer:
    """A phone on one TCP or TLS connection: it writes requests and reads framed messages."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, name: str):
        self.reader, self.writer, self.transport = reader, writer, name
        self.framer = StreamFramer()
        self.queue: list[bytes] = []
        self.port = writer.get_extra_info("sockname")[1]

    @classmethod
    async def open(cls, port: int, context: ssl.SSLContext | None) -> StreamPeer:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname="localhost" if context else None
        )
        return cls(reader, writer, "TLS" if context else "TCP")

    async def next(self, timeout: float = 10.0) -> str:
        while not self.queue:
            data = await asyncio.wait_for(self.reader.read(65535), timeout)
            if not data:
                raise ConnectionError("closed")
            self.queue += self.framer.feed(data)
        return self.queue.pop(0).decode()

    async def expect(self, start: str, timeout: float = 10.0) -> str:
        while True:
            msg = await self.next(timeout)
            if msg.startswith(start):
                return msg

    def send(self, text: str) -> None:
        self.writer.write(text.encode())

    def request(self, method: str, call_id: str, cseq: int, *, to_tag: str = "") -> str:
        """``method`` for a call to the edge; the Contact names a port nobody listens on."""
        scheme, port = ("sips", self.target_port) if self.transport == "TLS" else ("sip", 0)
        uri = f"{scheme}:bob@127.0.0.1:{port or self.target_port}"
        if self.transport == "TCP":
            uri += ";transport=tcp"
        dead = self.dead_port
        contact = f"<sip:alice@127.0.0.1:{dead};transport={self.transport.lower()}>"
        body = SDP if method == "INVITE" else ""
        to = f"<{uri}>" + (f";tag={to_tag}" if to_tag else "")
        return (
            f"{method} {uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/{self.transport} 127.0.0.1:{self.port};branch=z9hG4bK{uuid.uuid4().hex}"
            f";rport\r\nFrom: <sip:alice@127.0.0.1>;tag=alice1\r\nTo: {to}\r\n"
            f"Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\n"
            f"Contact: {contact}\r\n"
            + ("Content-Type: application/sdp\r\n" if body else "")
            + f"Content-Length: {len(body)}\r\n\r\n{body}"
        )

    target_port = 0
    dead_port = 0

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ssl.SSLError, ConnectionError):
            pass


def client_context(ca: Ca) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca.path))


async def call(peer: StreamPeer, port: int) -> tuple[str, str]:
    """INVITE to the edge, answered 200 and ACKed: (Call-ID, the edge's To tag, the 200)."""
    peer.target_port, peer.dead_port = port, free_port()
    call_id = f"tls-{uuid.uuid4().hex[:10]}"
    peer.send(peer.request("INVITE", call_id, 1))
    ok = await peer.expect("SIP/2.0 200", timeout=15)
    to_tag = ok.split("\r\nTo: ", 1)[1].split("tag=", 1)[1].split("\r\n", 1)[0].split(";")[0]
    peer.send(peer.request("ACK", call_id, 1, to_tag=to_tag))
    return call_id, ok


def ctl(run: Run, redis_url: str, *args: str) -> str:
    cmd = [sys.executable, "-m", "sessiond", "ctl", "--redis", redis_url]
    out = subprocess.run(
        [*cmd, "--namespace", run.namespace, *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=20,
        check=True,
    )
    return out.stdout


def poll(predicate: Callable[[], T], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"no {what} within {timeout} s")


def session_of(run: Run, redis_url: str, call_id: str) -> str:
    for line in ctl(run, redis_url, "list").splitlines()[1:]:
        fields = line.split()
        if fields and call_id in line:
            return fields[0]
    return ""


async def test_a_call_over_tls(run: tuple[Run, Path, Path], ca: Ca) -> None:
    live, _, _ = run
    peer = await StreamPeer.open(live.tls_port, client_context(ca))
    try:
        call_id, ok = await call(peer, live.tls_port)
        assert f"Via: SIP/2.0/TLS 127.0.0.1:{peer.port}" in ok
        # a SIPS Request-URI: our Contact is a SIPS URI of the TLS listener (12.1.1)
        assert f"Contact: <sips:sessiond@127.0.0.1:{live.tls_port}>" in ok
        to_tag = ok.split("\r\nTo: ", 1)[1].split("tag=", 1)[1].split("\r\n", 1)[0]
        peer.send(peer.request("BYE", call_id, 2, to_tag=to_tag))
        bye_ok = await peer.expect("SIP/2.0 200")
        assert "CSeq: 2 BYE" in bye_ok
    finally:
        await peer.close()


@pytest.mark.parametrize("transport", ["TLS", "TCP"])
async def test_a_ping_gets_a_pong_and_a_lone_crlf_nothing(
    run: tuple[Run, Path, Path], ca: Ca, transport: str
) -> None:
    live, _, _ = run
    tls = transport == "TLS"
    port = live.tls_port if tls else live.tcp_port
    peer = await StreamPeer.open(port, client_context(ca) if tls else None)
    try:
        peer.writer.write(b"\r\n\r\n")
        assert await asyncio.wait_for(peer.reader.readexactly(2), 5) == b"\r\n"
        peer.writer.write(b"\r\n")  # a pong: nothing comes back, the stream goes on
        peer.target_port = port
        peer.send(peer.request("OPTIONS", f"ka-{uuid.uuid4().hex[:8]}", 1))
        answer = await peer.next()
        assert answer.startswith("SIP/2.0 200")  # the first bytes after the pong
    finally:
        await peer.close()


@pytest.mark.parametrize("transport", ["TLS", "TCP"])
async def test_our_bye_goes_back_over_the_callers_connection(
    run: tuple[Run, Path, Path], ca: Ca, redis_url: str, transport: str
) -> None:
    live, _, _ = run
    tls = transport == "TLS"
    port = live.tls_port if tls else live.tcp_port
    peer = await StreamPeer.open(port, client_context(ca) if tls else None)
    try:
        call_id, _ = await call(peer, port)
        sid = await asyncio.to_thread(
            poll, lambda: session_of(live, redis_url, call_id), 10, "the session"
        )
        await asyncio.to_thread(ctl, live, redis_url, "hangup", sid)
        bye = await peer.expect("BYE ", timeout=15)
        assert f"BYE sip:alice@127.0.0.1:{peer.dead_port};transport={transport.lower()}" in bye
        assert f"Via: SIP/2.0/{transport} " in bye
        via_branch = bye.split("branch=", 1)[1].split(";")[0].split("\r\n")[0]
        headers = {
            line.split(":", 1)[0].lower(): line.split(":", 1)[1].strip()
            for line in bye.split("\r\n\r\n")[0].split("\r\n")[1:]
        }
        peer.send(
            f"SIP/2.0 200 OK\r\nVia: {headers['via']}\r\nFrom: {headers['from']}\r\n"
            f"To: {headers['to']}\r\nCall-ID: {call_id}\r\nCSeq: {headers['cseq']}\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        assert via_branch.startswith("z9hG4bK")
    finally:
        await peer.close()


async def test_sighup_reloads_the_certificate(run: tuple[Run, Path, Path], ca: Ca) -> None:
    live, cert, key = run

    async def served() -> int:
        peer = await StreamPeer.open(live.tls_port, client_context(ca))
        try:
            return serial_of(peer.writer.get_extra_info("ssl_object").getpeercert(True))
        finally:
            await peer.close()

    before = await served()
    assert before == serial_of_pem(cert)
    bad = ca.issue("unmatched")
    shutil.copy(bad.cert, cert)  # a certificate without its key: refused, the old one stays
    os.kill(live.sessiond.proc.pid, signal.SIGHUP)
    await asyncio.to_thread(
        poll, lambda: "keeping the previous certificate" in live.sessiond.log(), 10, "refusal"
    )
    assert await served() == before
    new = ca.issue("renewed")
    shutil.copy(new.key, key)
    shutil.copy(new.cert, cert)
    os.kill(live.sessiond.proc.pid, signal.SIGHUP)
    await asyncio.to_thread(
        poll, lambda: "TLS certificate reloaded" in live.sessiond.log(), 10, "reload"
    )
    assert await served() == new.serial
    assert live.sessiond.proc.poll() is None  # SIGHUP did not end it


def serial_of_pem(path: Path) -> int:
    return serial_of(ssl.PEM_cert_to_DER_cert(path.read_text()))
