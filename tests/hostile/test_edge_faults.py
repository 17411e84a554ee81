"""Faults inside a live in-process edge (real UDP/TCP sockets, real Redis): a request whose
headers are not UTF-8 (issue 18, F1: it once killed the loop that handles the requests of the
edge's first 64*T1, so every later request was queued forever), and a failure in each of the
edge's long-lived loops. After each, the edge still answers OPTIONS and publishes INVITE and
BYE events; requests nobody answers end; partial TCP messages close on time. T1 is 50 ms
here (the restart window, 64*T1, lasts 3.2 s), 150 ms where a test must act inside it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from ports import free_port
from sessiond.core import metrics
from sessiond.edge.access import AccessPolicy, Refusal
from sessiond.edge.process import Edge
from sessiond.edge.transport import ListenSpec
from sessiond.sip.message import SipRequest
from sessiond.sip.timers import TimerConfig
from sessiond.store import Keys
from sessiond.store.store import decode_event

from .net import request, status

pytestmark = pytest.mark.redis

T1 = 0.05
WINDOW_T1 = 0.15  # tests that must act inside the window: 9.6 s, room for a slow start
POISON = "poison-"  # Call-IDs our access policy fails on (an injected failure)


class _PoisonedAccess(AccessPolicy):
    """An access policy that raises for Call-IDs starting with ``poison-``: a failure in the
    request path that no validation catches (the shape of F1), injected through the edge's
    own extension point rather than by patching the loop."""

    def check(self, req: SipRequest, source: str, now: float) -> Refusal | None:
        if (req.call_id or "").startswith(POISON):
            raise RuntimeError(f"injected failure for {req.call_id}")
        return super().check(req, source, now)


EdgeFactory = Callable[..., Awaitable[Edge]]


@pytest.fixture
async def make_edge(redis_url: str) -> AsyncIterator[EdgeFactory]:
    from sessiond.store.client import connect
    from sessiond.store.store import delete_namespace

    client = connect(redis_url)
    started: list[tuple[Edge, asyncio.Task[None]]] = []
    keys = Keys(f"faults{time.monotonic_ns() % 10**8}")

    async def make(**kwargs: Any) -> Edge:
        port = free_port()
        listen = [ListenSpec("UDP", "127.0.0.1", port), ListenSpec("TCP", "127.0.0.1", port)]
        kwargs.setdefault("timers", TimerConfig(t1=T1))
        edge = Edge(client, keys, "f1", listen, **kwargs)
        task = asyncio.create_task(edge.run())
        started.append((edge, task))
        for _ in range(500):
            if len(edge.locals) == 2:
                break
            await asyncio.sleep(0.01)
        assert len(edge.locals) == 2
        return edge

    try:
        yield make
    finally:
        for edge, task in started:
            edge.stop()
            await asyncio.wait_for(task, 10)
        await delete_namespace(client, keys.ns)
        await client.aclose()


async def _exchange(port: int, data: bytes, within: float = 3.0) -> list[bytes]:
    """Send one datagram from a fresh socket; every reply until ``within`` s pass, or 0.5 s
    after the first final response."""
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        await loop.sock_sendto(sock, data, ("127.0.0.1", port))
        replies: list[bytes] = []
        deadline = time.monotonic() + within
        while (left := deadline - time.monotonic()) > 0:
            try:
                reply, _ = await asyncio.wait_for(loop.sock_recvfrom(sock, 65535), left)
            except TimeoutError:
                break
            replies.append(reply)
            if status(reply) >= 200:
                deadline = min(deadline, time.monotonic() + 0.5)
        return replies


def _final(replies: list[bytes]) -> list[int]:
    return [status(r) for r in replies if status(r) >= 200]


async def _published(edge: Edge, call_id: str, kind: str, within: float = 5.0) -> bool:
    stream = edge.keys.events(edge.keys.partition_of_call(call_id))
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        events = [decode_event(f) for _, f in await edge.redis.xrange(stream)]
        if any(e.data.get("call_id") == call_id and e.type == kind for e in events):
            return True
        await asyncio.sleep(0.05)
    return False


async def _still_serves(edge: Edge) -> None:
    """OPTIONS gets its 200; an INVITE and a BYE reach the event streams."""
    port = edge.address.port
    src = ("127.0.0.1", 5999)
    assert _final(await _exchange(port, request("OPTIONS", port, src))) == [200]
    call_id = f"ok-{uuid.uuid4().hex}"
    await _exchange(port, request("INVITE", port, src, call_id=call_id), within=0.3)
    assert await _published(edge, call_id, "Invite")
    bye = request("BYE", port, src, call_id=call_id, to_tag="t1", cseq=2)
    await _exchange(port, bye, within=0.3)
    assert await _published(edge, call_id, "Bye")


def _f1_invite(port: int) -> bytes:
    """An INVITE whose Call-ID holds 0xC3, a byte that does not start valid UTF-8 there."""
    marker = f"f1-{uuid.uuid4().hex[:8]}-MARK"
    return request("INVITE", port, ("127.0.0.1", 5998), call_id=marker).replace(b"MARK", b"\xc3")


async def _after_window(edge: Edge) -> None:
    """Wait until the edge's restart window (64*T1 after its start) is over."""
    left = edge.started + edge.timers.timeout + 0.2 - time.monotonic()
    if left > 0:
        await asyncio.sleep(left)


def _loop_errors(loop: str) -> float:
    return float(metrics.child(metrics.EDGE_LOOP_ERRORS, loop)._value.get())


async def test_f1_non_utf8_call_id_gets_400_and_the_edge_goes_on(make_edge: EdgeFactory) -> None:
    """F1: inside the first 64*T1 after a start and after it, the INVITE gets a stateless
    400 naming the Call-ID, and the edge answers everything after it."""
    edge = await make_edge(timers=TimerConfig(t1=WINDOW_T1))
    port = edge.address.port
    assert time.monotonic() - edge.started < edge.timers.timeout  # inside the window
    replies = await _exchange(port, _f1_invite(port))
    await _still_serves(edge)  # on 3043fbc: the OPTIONS after it was never answered
    assert _final(replies) == [400], replies
    assert replies[-1].startswith(b"SIP/2.0 400 Bad Request - invalid UTF-8 in Call-ID\r\n")
    await _after_window(edge)
    replies = await _exchange(port, _f1_invite(port))
    assert _final(replies) == [400], replies
    await _still_serves(edge)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("From", "<sip:a\udcc3@127.0.0.1>;tag=x"),
        ("To", "<sip:b@127.0.0.1>;tag=\udcff"),
        ("Via", "SIP/2.0/UDP 127.0.0.1:5998;branch=z9hG4bK\udcc3;rport"),
        ("Contact", "<sip:\udcc3@127.0.0.1>"),
    ],
)
async def test_non_utf8_in_mapped_headers_gets_400(
    make_edge: EdgeFactory, name: str, value: str
) -> None:
    edge = await make_edge()
    port = edge.address.port
    lines = request("INVITE", port, ("127.0.0.1", 5998)).split(b"\r\n")
    bad = f"{name}: {value}".encode("utf-8", "surrogateescape")
    lines = [bad if line.startswith(name.encode() + b":") else line for line in lines]
    replies = await _exchange(port, b"\r\n".join(lines))
    if name == "Via":  # the Via the answer goes to is not ours to fix: sent back as it came
        assert _final(replies) == [400], replies
    else:
        assert _final(replies) == [400], replies
        assert f"invalid UTF-8 in {name}".encode() in replies[-1].split(b"\r\n", 1)[0]
    await _still_serves(edge)


async def test_non_utf8_in_other_headers_and_body_is_carried(make_edge: EdgeFactory) -> None:
    """A header no event carries (Subject) and an SDP body may hold other bytes: the request
    is taken, the body reaches the event with U+FFFD for the bytes that are not UTF-8."""
    edge = await make_edge()
    port = edge.address.port
    call_id = f"latin1-{uuid.uuid4().hex}"
    sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=MARK\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    data = request(
        "INVITE",
        port,
        ("127.0.0.1", 5998),
        call_id=call_id,
        extra="Subject: MARK\r\nContent-Type: application/sdp\r\n",
        body=sdp,
    ).replace(b"MARK", b"M\xfcller")
    data = data.replace(b"Content-Length: %d" % len(sdp), b"Content-Length: %d" % (len(sdp) + 2))
    await _exchange(port, data, within=0.3)
    assert await _published(edge, call_id, "Invite")
    stream = edge.keys.events(edge.keys.partition_of_call(call_id))
    events = [decode_event(f) for _, f in await edge.redis.xrange(stream)]
    (invite,) = [e for e in events if e.data.get("call_id") == call_id]
    assert "s=M\ufffdller" in invite.data["sdp"]


async def test_a_failing_request_in_the_restart_window_ends_no_loop(
    make_edge: EdgeFactory,
) -> None:
    """A request that fails inside the edge, in the first 64*T1 (the early-request loop)
    and after it (the inbound path): each failure is logged and counted, and the edge keeps
    answering."""
    edge = await make_edge(access=_PoisonedAccess(), timers=TimerConfig(t1=WINDOW_T1))
    port = edge.address.port
    early, inbound = _loop_errors("early"), _loop_errors("inbound")
    src = ("127.0.0.1", 5997)
    assert time.monotonic() - edge.started < edge.timers.timeout  # inside the window
    await _exchange(port, request("INVITE", port, src, call_id=POISON + "1"), within=0.3)
    await _still_serves(edge)
    assert _loop_errors("early") == early + 1
    await _after_window(edge)
    await _exchange(port, request("OPTIONS", port, src, call_id=POISON + "2"), within=0.3)
    await _still_serves(edge)
    assert _loop_errors("inbound") == inbound + 1


async def test_a_poisoned_command_ends_no_command_loop(make_edge: EdgeFactory) -> None:
    """Command entries a worker would never write (no id, no type, data that is not msgpack)
    are counted and acknowledged; the command loop goes on running commands."""
    edge = await make_edge()
    before = _loop_errors("commands")
    stream = edge.keys.edge_commands(edge.name)
    await edge.redis.xadd(stream, {"junk": b"1"})
    await edge.redis.xadd(stream, {"id": b"c1", "type": b"respond", "data": b"\xc1\xc1"})
    # a real command after them: answer an OPTIONS we send through a txn
    await asyncio.sleep(0.5)
    assert _loop_errors("commands") >= before + 1
    await _still_serves(edge)
    pending = await edge.redis.xpending(stream, "edge")
    assert pending["pending"] == 0


async def test_an_event_stream_of_the_wrong_type_ends_no_flusher(
    make_edge: EdgeFactory,
) -> None:
    """A partition stream key that holds a string (WRONGTYPE for XADD, not a Redis outage):
    the flusher counts the failure and drops that batch, and events for other partitions are
    still published."""
    edge = await make_edge()
    await _after_window(edge)
    port = edge.address.port
    keys = edge.keys
    poisoned = "wrongtype-0"
    while keys.partition_of_call(poisoned) == keys.partition_of_call("x"):
        poisoned += "0"
    await edge.redis.set(keys.events(keys.partition_of_call(poisoned)), "not a stream")
    before = _loop_errors("flusher")
    src = ("127.0.0.1", 5996)
    await _exchange(port, request("INVITE", port, src, call_id=poisoned), within=0.3)
    deadline = time.monotonic() + 5
    while _loop_errors("flusher") == before and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert _loop_errors("flusher") > before
    await edge.redis.delete(keys.events(keys.partition_of_call(poisoned)))
    await _still_serves(edge)


async def test_a_failing_duty_ends_no_timer_loop(make_edge: EdgeFactory) -> None:
    """A dialog duty whose retransmission cannot be sent (its data is not bytes): the timer
    loop counts it and goes on firing the transaction timers and the other duties."""
    edge = await make_edge()
    before = _loop_errors("duties")
    unsendable: Any = "not bytes"
    edge.duties.answered(("dead", 1), unsendable, "UDP", ("127.0.0.1", 9), time.monotonic())
    deadline = time.monotonic() + 5
    while _loop_errors("duties") == before and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert _loop_errors("duties") > before
    await _still_serves(edge)


def test_partial_message_timeout_defaults_to_32_s() -> None:
    """RFC 3261 18.3 leaves it to us; docs/security.md documents 32 s (64*T1) everywhere:
    the transports, the edge and the command line."""
    import inspect

    from sessiond.cli.main import build_parser
    from sessiond.edge.transport import Transports

    assert Transports(lambda *_: None).message_timeout == 32.0
    assert inspect.signature(Edge).parameters["tcp_message_timeout"].default == 32.0
    args = build_parser().parse_args(["edge", "--redis", "redis://x"])
    assert args.tcp_message_timeout == 32.0


async def test_partial_messages_close_at_their_own_timeout(make_edge: EdgeFactory) -> None:
    """Connections that began a partial message at different moments are each closed
    ``message_timeout`` after their own start (here 4 s), not at the reaper's next round
    (which once ran every message_timeout/2: by default 45-47 s instead of 32)."""
    timeout = 4.0
    edge = await make_edge(tcp_message_timeout=timeout, tcp_idle_timeout=300.0)
    port = edge.address.port
    partial = request("OPTIONS", port, ("127.0.0.1", 5995), transport="TCP")[:60]

    async def hold(delay: float) -> float:
        await asyncio.sleep(delay)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(partial)
            await writer.drain()
            start = time.monotonic()
            data = await asyncio.wait_for(reader.read(65535), timeout + 10)
            assert data == b""  # closed by the edge, nothing answered
            return time.monotonic() - start
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    # staggered over a whole reaper period: a periodic sweep would close some of them late
    held = await asyncio.gather(*(hold(i * 0.25) for i in range(8)))
    assert all(timeout - 0.1 <= h <= timeout + 1.2 for h in held), held
    await _still_serves(edge)


async def _garbage(port: int, count: int, seed: int = 7) -> None:
    """``count`` garbage datagrams from tests/hostile/garbage.py in a subprocess."""
    script = str(Path(__file__).with_name("garbage.py"))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, script, str(port), str(count), str(seed)
    )
    assert await asyncio.wait_for(proc.wait(), 120) == 0


async def test_requests_nobody_answers_are_not_kept_forever(make_edge: EdgeFactory) -> None:
    """Garbage that parses (BYEs, INFOs, INVITEs... for calls that do not exist) becomes
    events; with no worker to answer them their server transactions were kept for the edge's
    whole life (what made 20 s of garbage grow the edge 43 -> 248 MB, for good). Now the
    edge answers 503 after 64*T1 (an INVITE after 6*64*T1) and every transaction ends."""
    edge = await make_edge()
    await _after_window(edge)
    await _garbage(edge.address.port, 5000)
    # INVITEs wait 6*64*T1 for a worker, then 64*T1 for an ACK to the 503
    deadline = time.monotonic() + 10 * edge.timers.timeout
    while edge.layer.servers and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert not edge.layer.servers, len(edge.layer.servers)
    assert len(edge.unanswered) == 0
    await _still_serves(edge)


async def test_an_unanswered_request_gets_503_after_64_t1(make_edge: EdgeFactory) -> None:
    """A BYE no worker answers (none runs here) gets a 503 with Retry-After once 64*T1
    pass, and its transaction ends; an INVITE waits 6*64*T1 (``Unanswered``)."""
    edge = await make_edge()
    port = edge.address.port
    bye = request("BYE", port, ("127.0.0.1", 5994), to_tag="x")
    replies = await _exchange(port, bye, within=2 * edge.timers.timeout)
    assert _final(replies) == [503], replies
    assert b"Retry-After: 5" in replies[-1]


def test_unanswered_deadlines() -> None:
    from sessiond.edge.unanswered import INVITE_FACTOR, Unanswered

    pending = Unanswered(32.0)
    pending.handed("bye", 0.0)
    pending.handed("invite", 0.0, invite=True)
    pending.handed("info", 10.0)
    pending.handed("answered", 1.0)
    pending.answered("answered")
    assert pending.expired(31.9) == []
    assert pending.expired(32.0) == ["bye"]
    assert pending.expired(42.0) == ["info"]
    assert pending.expired(32.0 * INVITE_FACTOR - 0.1) == []
    assert INVITE_FACTOR * 32.0 > 180.0  # longer than Timer C (RFC 3261 16.6: > 3 minutes)
    assert pending.expired(32.0 * INVITE_FACTOR) == ["invite"]
    assert len(pending) == 0


async def test_a_failing_heartbeat_ends_no_heartbeat_loop(make_edge: EdgeFactory) -> None:
    """A heartbeat step that fails for another reason than a Redis outage (injected into
    the step, not the loop): counted, and the next beats still refresh the edge's key."""
    edge = await make_edge()
    before = _loop_errors("heartbeat")
    beat = edge._beat
    fails = [RuntimeError("injected"), RuntimeError("injected")]

    async def failing_beat() -> None:
        if fails:
            raise fails.pop()
        await beat()

    edge._beat = failing_beat  # type: ignore[method-assign]
    key = edge.keys.heartbeat("edge", edge.name)
    await edge.redis.delete(key)
    deadline = time.monotonic() + 10
    while not await edge.redis.exists(key) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert await edge.redis.exists(key)
    assert _loop_errors("heartbeat") == before + 2
    await _still_serves(edge)


class _PoisonedConnection:
    """What the reaper finds in the connection table: ``last_seen`` is not a time."""

    last_seen: Any = None
    transport = None


async def test_a_failing_reaper_step_ends_no_reaper(make_edge: EdgeFactory) -> None:
    """A connection the reaper cannot read is counted and skipped; an idle connection next
    to it is still closed at the idle timeout (1 s here)."""
    edge = await make_edge(tcp_idle_timeout=1.0)
    before = _loop_errors("reaper")
    poison = _PoisonedConnection()
    edge.transports._open.add(poison)  # type: ignore[arg-type]
    reader, writer = await asyncio.open_connection("127.0.0.1", edge.address.port)
    try:
        assert await asyncio.wait_for(reader.read(1), 10) == b""  # closed by the reaper
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    assert _loop_errors("reaper") > before
    edge.transports._open.discard(poison)  # type: ignore[arg-type]
    await _still_serves(edge)
