"""Ports for the processes under test.

Listening ports come from below the kernel's ephemeral range (32768-60999 on Linux): a port
the kernel hands out as free from that range can be taken a moment later as the source port
of any outgoing connection (a Redis client's), and the process under test then fails to bind
it. 10000-19999 stays clear of it and of the RTP ports the tests use: ``sessiond run``'s
default 20000-20999, the fixed ranges of 21000-21999 and the per-process ones from 22000.
"""

from __future__ import annotations

import random
import socket

LISTEN_PORTS = range(10000, 20000)
BLOCKS = range(LISTEN_PORTS.start, LISTEN_PORTS.stop, 4)


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    """A port on 127.0.0.1 free for both UDP and TCP right now, outside the ephemeral range.
    ``kind`` is accepted for callers that name the protocol they need; both are checked."""
    del kind
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports as :func:`free_port` gives them. Each is a multiple of 4 whose
    block of four (the port and the next three) is free: sipp's ``-mp PORT`` binds PORT+2
    for video too, and a port given out later can never fall in an earlier port's block."""
    ports: list[int] = []
    for _ in range(200 * n):
        port = random.choice(BLOCKS)
        if port in ports:
            continue
        try:
            for offset in range(4):
                for proto in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                    with socket.socket(socket.AF_INET, proto) as s:
                        s.bind(("127.0.0.1", port + offset))
        except OSError:
            continue
        ports.append(port)
        if len(ports) == n:
            return ports
    raise RuntimeError("no free port left in 10000-19999 on 127.0.0.1")


RTP_PORTS = range(22000, 32000)


def free_udp_range(size: int) -> str:
    """``FIRST-LAST``: ``size`` consecutive UDP ports on 127.0.0.1, all free right now, from
    22000-31999 (the RTP ports; below the ephemeral range), at a random even start: for a
    media node's ``--rtp-ports`` where the per-process ranges of ``free_rtp_range`` (by pid)
    may be another run's on a shared machine."""
    for _ in range(200):
        first = random.randrange(RTP_PORTS.start, RTP_PORTS.stop - size, 2)
        try:
            for port in range(first, first + size):
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return f"{first}-{first + size - 1}"
    raise RuntimeError(f"no {size} free consecutive UDP ports in 22000-31999 on 127.0.0.1")
