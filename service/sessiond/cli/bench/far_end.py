"""What the in-process media benches (media, conference, idle) share: legs answered by the
node's own :class:`~sessiond.media.commands.Executor` on loopback, and a sender process
playing the far end of every leg (50 PCMU packets/s into each, counting what comes back)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import socket
import struct
import time
from array import array
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Any

from sessiond.core.messages import CreateLeg
from sessiond.core.types import Event
from sessiond.media import g711
from sessiond.media.commands import Executor, MediaCommand
from sessiond.media.leg import Leg
from sessiond.media.node import TICK, available_codecs
from sessiond.media.ports import PortAllocator

LOOPBACK = "127.0.0.1"
SILENT = b"\xff" * 160  # PCMU of (near) silence, 20 ms at 8 kHz


def offer(port: int) -> str:
    """A G.711 PCMU 20 ms offer from 127.0.0.1:``port``."""
    return (
        "v=0\r\n"
        f"o=bench 1 1 IN IP4 {LOOPBACK}\r\n"
        "s=-\r\n"
        f"c=IN IP4 {LOOPBACK}\r\n"
        "t=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\n"
        "a=rtpmap:0 PCMU/8000\r\n"
        "a=ptime:20\r\n"
        "a=sendrecv\r\n"
    )


def executor(first: int, last: int, events: list[Event]) -> Executor:
    """The node's executor on loopback, RTP ports ``first``-``last``, no inactivity timeout."""
    return Executor(
        name="bench",
        sdp_address=LOOPBACK,
        ports=PortAllocator(LOOPBACK, first, last),
        codecs=available_codecs(),
        emit=events.append,
        clock=asyncio.get_running_loop().time,
        inactivity_timeout=None,
    )


async def answer(executor: Executor, sid: str, far: int, command: str) -> Leg:
    """A leg of session ``sid`` (media id ``sid.m``) answering :func:`offer` of port ``far``."""
    data = CreateLeg(media_id=f"{sid}.m", mode="answer", remote_sdp=offer(far))
    ready = await executor.execute(MediaCommand(command, "create", sid, data))
    if ready[0].type != "MediaReady":
        raise RuntimeError(f"leg {sid}: {ready[0].type} {ready[0].data}")
    return executor.legs[f"{sid}.m"]


def drain(sock: socket.socket) -> int:
    """Datagrams waiting on a non-blocking ``sock``, read and counted."""
    n = 0
    while True:
        try:
            sock.recv(2048)
        except BlockingIOError:
            return n
        n += 1


def _tone_payloads(hz: float) -> list[bytes]:
    step = 2 * math.pi * hz / 8000
    frames = [
        array("h", (int(6000 * math.sin(step * (k * 160 + i))) for i in range(160))).tobytes()
        for k in range(50)
    ]
    return [g711.ulaw_encode(f) for f in frames]


def _sender(conn: Connection) -> None:
    """The far end of every leg, one socket: per job ``(ports, talking, seconds)``, 50
    packets/s to each port (a 440 Hz tone where ``talking[i]``, else silence); answers
    ``(sent, received, elapsed)``. ``None`` ends it."""
    tone = _tone_payloads(440.0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        sock.bind((LOOPBACK, 0))
        sock.setblocking(False)
        conn.send(sock.getsockname()[1])
        while (job := conn.recv()) is not None:
            ports, talking, seconds = job
            sent = received = 0
            start = time.perf_counter()
            for k in range(int(seconds * 50)):  # 50 packets/s per leg
                for i, port in enumerate(ports):
                    header = struct.pack("!BBHII", 0x80, 0, k & 0xFFFF, (k * 160) & 0xFFFFFFFF, i)
                    payload = tone[k % 50] if talking[i] else SILENT
                    with contextlib.suppress(BlockingIOError):
                        sock.sendto(header + payload, (LOOPBACK, port))
                        sent += 1
                received += drain(sock)
                delay = start + (k + 1) * TICK - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            end = time.perf_counter() + 0.2
            while time.perf_counter() < end:
                received += drain(sock)
                time.sleep(0.01)
            conn.send((sent, received, time.perf_counter() - start))


@contextlib.contextmanager
def sender() -> Iterator[tuple[Connection, int]]:
    """The sender process, running: (its end of the pipe, the UDP port it sends from).
    Stopped on leaving (asked, then killed after 5 s)."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc: Any = ctx.Process(target=_sender, args=(child,), daemon=True)
    proc.start()
    try:
        yield parent, parent.recv()
    finally:
        with contextlib.suppress(OSError):
            parent.send(None)
        proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()
            proc.join()
        parent.close()
        child.close()
