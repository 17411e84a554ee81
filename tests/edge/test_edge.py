"""The edge over real UDP sockets and a real Redis: bad input, OPTIONS, retransmissions,
CANCEL, and the commands a state table sends."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import msgpack
import pytest

from sessiond.edge.process import Edge
from sessiond.edge.transport import ListenSpec
from sessiond.store import Keys
from sessiond.store.store import decode_event

pytestmark = pytest.mark.redis


class Peer:
    """A far end made of one UDP socket."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]

    async def send(self, data: bytes, port: int) -> None:
        self.sock.sendto(data, ("127.0.0.1", port))

    async def recv(self, timeout: float = 2.0) -> str:
        loop = asyncio.get_running_loop()
        data = await asyncio.wait_for(loop.sock_recv(self.sock, 65535), timeout)
        return data.decode()

    async def expect(self, status: str, timeout: float = 2.0) -> str:
        """Skip provisional responses until one whose status line starts with ``status``."""
        while True:
            msg = await self.recv(timeout)
            if msg.startswith(f"SIP/2.0 {status}") or msg.startswith(status):
                return msg


@pytest.fixture
def peer() -> Any:
    far = Peer()
    yield far
    far.sock.close()


def invite(peer: Peer, call_id: str, branch: str = "z9hG4bK-i1", extra: str = "") -> bytes:
    sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    return (
        f"INVITE sip:bob@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{peer.port};branch={branch};rport\r\n"
        f"From: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:bob@127.0.0.1>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
        f"Contact: <sip:alice@127.0.0.1:{peer.port}>\r\n{extra}"
        f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}"
    ).encode()


async def running(e: Edge) -> asyncio.Task[None]:
    """Run ``e`` until the test stops it; returns once it listens."""
    task = asyncio.create_task(e.run())
    for _ in range(100):
        if e.locals:
            break
        await asyncio.sleep(0.01)
    return task


@pytest.fixture
async def edge(backend: tuple[str, Any, Keys]) -> AsyncIterator[Edge]:
    _, client, keys = backend
    e = Edge(client, keys, "e1", [ListenSpec("UDP", "127.0.0.1", 0)], max_message=8192)
    task = await running(e)
    yield e
    e.stop()
    await asyncio.wait_for(task, 5)


async def events(edge: Edge, call_id: str, wait: float = 0.3) -> list[Any]:
    await asyncio.sleep(wait)
    stream = edge.keys.events(edge.keys.partition_of_call(call_id))
    return [decode_event(f) for _, f in await edge.redis.xrange(stream)]


async def command(edge: Edge, kind: str, data: dict[str, Any], cid: str) -> None:
    fields = {"id": cid, "type": kind, "sid": "", "data": msgpack.packb(data)}
    await edge.redis.xadd(edge.keys.edge_commands("e1"), fields)


async def test_garbage_is_dropped_and_bad_requests_get_400(edge: Edge, peer: Peer) -> None:
    port = edge.address.port
    await peer.send(b"\x00\x01garbage", port)
    no_call_id = invite(peer, "x").replace(b"Call-ID: x\r\n", b"")
    await peer.send(no_call_id, port)
    reply = await peer.recv()
    assert reply.startswith("SIP/2.0 400")
    assert "Call-ID" in reply.split("\r\n")[0]


async def test_options_answered_by_the_edge(edge: Edge, peer: Peer) -> None:
    options = (
        f"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{peer.port};branch=z9hG4bK-o1"
        f"\r\nFrom: <sip:a@127.0.0.1>;tag=o\r\nTo: <sip:127.0.0.1>\r\nCall-ID: opt1\r\n"
        f"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    await peer.send(options, edge.address.port)
    reply = await peer.recv()
    assert reply.startswith("SIP/2.0 200")
    assert "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS" in reply


async def test_invite_published_once_retransmission_absorbed(edge: Edge, peer: Peer) -> None:
    port = edge.address.port
    await peer.send(invite(peer, "inv1@h"), port)
    assert (await peer.recv()).startswith("SIP/2.0 100")
    await peer.send(invite(peer, "inv1@h"), port)  # retransmission
    assert (await peer.recv()).startswith("SIP/2.0 100")  # last response sent again
    found = await events(edge, "inv1@h")
    assert [(e.type, e.data["call_id"], e.data["from_tag"]) for e in found] == [
        ("Invite", "inv1@h", "a1")
    ]
    txn = found[0].data["txn"]
    assert txn.startswith(f"UDP 127.0.0.1 {peer.port}\n")
    # the table answers through a command; the response goes back with our tag
    await command(edge, "respond", {"code": 180, "txn": txn, "local_tag": "ours"}, "c1")
    ringing = await peer.expect("180")
    assert "tag=ours" in ringing
    # the same command id again (a re-emitted outbox) is not executed twice
    await command(edge, "respond", {"code": 180, "txn": txn, "local_tag": "ours"}, "c1")
    with pytest.raises(asyncio.TimeoutError):
        await peer.recv(0.5)


async def test_cancel_answered_and_published(edge: Edge, peer: Peer) -> None:
    port = edge.address.port
    await peer.send(invite(peer, "can1@h", "z9hG4bK-c1"), port)
    await peer.expect("100")
    cancel = (
        f"CANCEL sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{peer.port};"
        f"branch=z9hG4bK-c1;rport\r\nFrom: <sip:alice@127.0.0.1>;tag=a1\r\n"
        f"To: <sip:bob@127.0.0.1>\r\nCall-ID: can1@h\r\nCSeq: 1 CANCEL\r\nMax-Forwards: 70\r\n"
        f"Content-Length: 0\r\n\r\n"
    ).encode()
    await peer.send(cancel, port)
    ok = await peer.expect("200")
    assert "CSeq: 1 CANCEL" in ok
    found = await events(edge, "can1@h")
    assert [e.type for e in found] == ["Invite", "Cancel"]
    await command(
        edge, "respond", {"code": 487, "txn": found[1].data["txn"], "local_tag": "t"}, "c2"
    )
    terminated = await peer.expect("487")
    assert "CSeq: 1 INVITE" in terminated


async def test_bye_for_unknown_call_is_published_for_the_worker(edge: Edge, peer: Peer) -> None:
    bye = (
        f"BYE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{peer.port};branch=z9hG4bK-b"
        f"\r\nFrom: <sip:a@127.0.0.1>;tag=x\r\nTo: <sip:b@127.0.0.1>;tag=y\r\nCall-ID: bye1@h\r\n"
        f"CSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    await peer.send(bye, edge.address.port)
    found = await events(edge, "bye1@h")
    assert [(e.type, e.data["to_tag"]) for e in found] == [("Bye", "y")]


async def test_uac_invite_retransmitted_then_timeout_event(
    backend: tuple[str, Any, Keys], peer: Peer
) -> None:
    from sessiond.sip.timers import TimerConfig

    _, client, keys = backend
    e = Edge(
        client,
        keys,
        "e1",
        [ListenSpec("UDP", "127.0.0.1", 0)],
        timers=TimerConfig(t1=0.05, t2=0.2, t4=0.25),
    )
    task = await running(e)
    silent = peer  # never answers
    cmd = {
        "call_id": "uac1@h",
        "local_tag": "lt",
        "local_uri": "sip:alice@127.0.0.1",
        "remote_uri": f"sip:bob@127.0.0.1:{silent.port}",
        "remote_target": f"sip:bob@127.0.0.1:{silent.port}",
        "remote_tag": "",  # out of dialog
        "route_set": "",
        "cseq": 1,
        "sdp": "v=0\r\n",
    }
    await command(e, "invite", cmd, "u1")
    first = await silent.recv()
    again = await silent.recv()
    assert first == again
    assert first.startswith(f"INVITE sip:bob@127.0.0.1:{silent.port} SIP/2.0")
    await asyncio.sleep(64 * 0.05 + 0.3)
    found = await events(e, "uac1@h", 0)
    assert [(ev.type, ev.data["from_tag"]) for ev in found] == [("TransactionTimeout", "lt")]
    e.stop()
    await asyncio.wait_for(task, 5)


def request(
    peer: Peer,
    *,
    method: str = "INVITE",
    uri: str = "sip:bob@127.0.0.1",
    version: str = "SIP/2.0",
    extra: str = "",
    body: str = "",
    branch: str = "z9hG4bK-x",
    call_id: str = "bad@h",
) -> bytes:
    return (
        f"{method} {uri} {version}\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{peer.port};branch={branch};rport\r\n"
        f"From: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:bob@127.0.0.1>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\n{extra}"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


@pytest.mark.parametrize(
    ("kwargs", "status", "phrase"),
    [
        ({"version": "SIP/3.0"}, "505", "Version Not Supported"),
        ({"uri": "mailto:bob@127.0.0.1"}, "416", "Unsupported URI Scheme"),
        ({"extra": "Require: foo-bar\r\n"}, "420", "Bad Extension"),
        ({"body": "x" * 9_000}, "513", "Message Too Large"),
        ({"extra": "CSeq: 2 INVITE\r\n"}, "400", "Bad Request"),
    ],
    ids=["505-version", "416-scheme", "420-require", "513-size", "400-two-cseq"],
)
async def test_invalid_requests_answered_statelessly(
    edge: Edge, peer: Peer, kwargs: dict[str, str], status: str, phrase: str
) -> None:
    await peer.send(request(peer, **kwargs), edge.address.port)
    reply = await peer.recv()
    first = reply.split("\r\n")[0]
    assert first.startswith(f"SIP/2.0 {status} {phrase}"), first
    if status == "420":
        assert "Unsupported: foo-bar" in reply
    # nothing reached the workers
    assert await events(edge, "bad@h", 0.1) == []


async def test_loop_detected(edge: Edge, peer: Peer) -> None:
    ours = f"Via: SIP/2.0/UDP 127.0.0.1:{edge.address.port};branch=z9hG4bK-old\r\n"
    await peer.send(request(peer, extra=ours, call_id="loop@h"), edge.address.port)
    assert (await peer.recv()).startswith("SIP/2.0 482")


async def test_invite_flood_from_one_source_gets_503(
    backend: tuple[str, Any, Keys], peer: Peer
) -> None:
    _, client, keys = backend
    e = Edge(client, keys, "e1", [ListenSpec("UDP", "127.0.0.1", 0)], rate_limit=5, rate_burst=5)
    task = await running(e)
    try:
        for n in range(8):
            await peer.send(
                request(peer, branch=f"z9hG4bK-f{n}", call_id=f"flood{n}@h"), e.address.port
            )
        replies = [(await peer.recv()).split("\r\n") for _ in range(8)]
        codes = sorted(r[0].split()[1] for r in replies)
        assert codes.count("100") == 5
        assert codes.count("503") == 3
        busy = next(r for r in replies if r[0].startswith("SIP/2.0 503"))
        assert any(line.startswith("Retry-After: ") for line in busy)
    finally:
        e.stop()
        await asyncio.wait_for(task, 5)


async def test_restarted_edge_answers_a_retransmission_as_before(
    backend: tuple[str, Any, Keys], peer: Peer
) -> None:
    _, client, keys = backend

    async def start() -> tuple[Edge, asyncio.Task[None]]:
        e = Edge(client, keys, "e1", [ListenSpec("UDP", "127.0.0.1", 0)])
        return e, await running(e)

    first, task = await start()
    await peer.send(invite(peer, "rst@h", "z9hG4bK-rst"), first.address.port)
    await peer.expect("100")
    found = await events(first, "rst@h")
    await command(
        first, "respond", {"code": 486, "txn": found[0].data["txn"], "local_tag": "t1"}, "c-rst"
    )
    busy = await peer.expect("486")
    await asyncio.sleep(0.2)  # the record of the answer is flushed to Redis
    first.stop()
    await asyncio.wait_for(task, 5)
    # a new edge process (new transaction layer, nothing in memory) gets the retransmission
    second, task = await start()
    try:
        # handed to the edge in one go, as its socket delivers a burst, so both are looked up
        # in one batch: the old one is answered from Redis, the new one starts a call
        source = ("127.0.0.1", peer.port)
        second.on_message(invite(peer, "rst@h", "z9hG4bK-rst"), "UDP", source)
        second.on_message(invite(peer, "new@h", "z9hG4bK-new"), "UDP", source)
        again = await peer.expect("486")
        assert again.split("\r\n")[:5] == busy.split("\r\n")[:5]
        seen = [(e.data["call_id"], e.type) for e in await events(second, "rst@h")]
        assert seen.count(("rst@h", "Invite")) == 1  # not started a second time
        seen = [(e.data["call_id"], e.type) for e in await events(second, "new@h")]
        assert seen.count(("new@h", "Invite")) == 1
    finally:
        second.stop()
        await asyncio.wait_for(task, 5)


async def test_100_trying_only_when_the_table_is_slower_than_the_delay(
    backend: tuple[str, Any, Keys], peer: Peer
) -> None:
    """RFC 3261 17.2.1: no 100 Trying when the 180 beats ``trying_delay``; a 100 when it
    does not; a 100 at once for an INVITE retransmitted before then."""
    _, client, keys = backend
    e = Edge(client, keys, "e1", [ListenSpec("UDP", "127.0.0.1", 0)], trying_delay=1.5)
    task = await running(e)
    port = e.address.port
    try:
        # answered within the delay: the 180 is the first and only provisional response
        await peer.send(invite(peer, "t1@h", "z9hG4bK-t1"), port)
        found = await events(e, "t1@h")
        txn = found[0].data["txn"]
        await command(e, "respond", {"code": 180, "txn": txn, "local_tag": "x"}, "c-t1")
        assert (await peer.recv()).startswith("SIP/2.0 180")
        with pytest.raises(asyncio.TimeoutError):
            await peer.recv(2.0)
        # not answered: nothing at first, then the 100 when the delay is over
        await peer.send(invite(peer, "t2@h", "z9hG4bK-t2"), port)
        with pytest.raises(asyncio.TimeoutError):
            await peer.recv(0.5)
        assert (await peer.recv(3.0)).startswith("SIP/2.0 100")
        # retransmitted before the delay is over: the 100 at once
        await peer.send(invite(peer, "t3@h", "z9hG4bK-t3"), port)
        await asyncio.sleep(0.1)
        await peer.send(invite(peer, "t3@h", "z9hG4bK-t3"), port)
        assert (await peer.recv(0.5)).startswith("SIP/2.0 100")
        with pytest.raises(asyncio.TimeoutError):
            await peer.recv(2.0)  # and only once
    finally:
        e.stop()
        await asyncio.wait_for(task, 5)


def test_message_metric_labels_are_bounded() -> None:
    """Any method token a peer invents counts as "other": the label set stays bounded."""
    from sessiond.edge.process import _kind
    from sessiond.sip.message import parse_message

    def request(method: str) -> bytes:
        return (
            f"{method} sip:bob@127.0.0.1 SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-m\r\n"
            "From: <sip:alice@127.0.0.1>;tag=a\r\nTo: <sip:bob@127.0.0.1>\r\n"
            f"Call-ID: m@h\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        ).encode()

    assert _kind(parse_message(request("INVITE"))) == "INVITE"
    assert _kind(parse_message(request("XYZZY"))) == "other"


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"], ids=["address", "wildcard"])
async def test_a_queued_response_stops_the_invite_retransmission(
    backend: tuple[str, Any, Keys], peer: Peer, host: str
) -> None:
    """The callee's 200 sits in the edge's socket behind other datagrams when Timer A falls
    due (the edge is busy): the edge reads it before firing the timer, so the INVITE is not
    sent again (RFC 3261 17.1.1.2). Everything the edge sends reaches ``peer`` in order, so
    the OPTIONS answer, sent after whatever the timer did, closes the check."""
    import time

    from sessiond.sip.timers import TimerConfig

    _, client, keys = backend
    e = Edge(client, keys, "e1", [ListenSpec("UDP", host, 0)], timers=TimerConfig())
    task = await running(e)
    port = e.address.port
    cmd = {
        "call_id": "queued1@h",
        "local_tag": "lt",
        "local_uri": "sip:alice@127.0.0.1",
        "remote_uri": f"sip:bob@127.0.0.1:{peer.port}",
        "remote_target": f"sip:bob@127.0.0.1:{peer.port}",
        "remote_tag": "",
        "route_set": "",
        "cseq": 1,
        "sdp": "v=0\r\n",
    }
    await command(e, "invite", cmd, "q1")
    sent = await peer.recv()
    assert sent.startswith("INVITE ")
    headers = dict(
        line.split(": ", 1) for line in sent.split("\r\n\r\n")[0].split("\r\n")[1:] if ": " in line
    )
    ok = (
        f"SIP/2.0 200 OK\r\nVia: {headers['Via']}\r\nFrom: {headers['From']}\r\n"
        f"To: {headers['To']};tag=callee\r\nCall-ID: queued1@h\r\nCSeq: 1 INVITE\r\n"
        f"Contact: <sip:bob@127.0.0.1:{peer.port}>\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    for _ in range(100):  # keepalives ahead of it: more than one wake of the loop reads
        await peer.send(b"\r\n\r\n", port)
    await peer.send(ok, port)
    options = request(peer, method="OPTIONS", call_id="queued-options@h", branch="z9hG4bK-qo")
    await peer.send(options, port)
    time.sleep(0.7)  # the edge is busy past Timer A (T1 = 500 ms), all of it queued
    seen = []
    while not (msg := await peer.recv()).startswith("SIP/2.0 200"):
        seen.append(msg.split("\r\n", 1)[0])
    assert "queued-options@h" in msg
    assert seen == []  # no INVITE went out again
    found = await events(e, "queued1@h")
    assert [ev.type for ev in found] == ["Answered"]
    e.stop()
    await asyncio.wait_for(task, 5)
