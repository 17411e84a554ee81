"""CPU cost of relaying G.711 RTP the way a bridge does: no sockets, pure CPU.

:func:`bench_relay` feeds pre-built 20 ms PCMU packets (172 octets) through three pipelines
and reports packets per second for each (one core, one process):

* ``relay_pps``: parse -> new packet with rewritten SSRC, sequence and timestamp -> bytes;
* ``jitter_pps``: parse -> jitter buffer push -> pop one per tick -> rewrite -> bytes;
* ``transcode_pps``: parse -> PCMU decode -> PCMA encode -> rewrite -> bytes.

A 20 ms stream is 50 packets/s per direction, so a two-leg bridge call costs 100 packets/s:
divide by 100 for a rough calls-per-core figure (ignoring socket syscalls, which dominate).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sessiond.media import g711
from sessiond.media.jitter import JitterBuffer, Played
from sessiond.media.rtp import RtpPacket

_SOURCE_PACKETS = 500


def _source() -> list[bytes]:
    payload = g711.ulaw_encode(bytes(range(256)) + bytes(64))
    return [
        bytes(
            RtpPacket(0, (60000 + i) & 0xFFFF, (4_000_000_000 + 160 * i) & 0xFFFFFFFF, 1, payload)
        )
        for i in range(_SOURCE_PACKETS)
    ]


def _run(seconds: float, step: Callable[[int, bytes], bytes | None], packets: list[bytes]) -> float:
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for i, data in enumerate(packets):
            step(done + i, data)
        done += len(packets)
        now = time.perf_counter()
        if now >= deadline:
            return done / (now - start)


def bench_relay(seconds: float = 2.0) -> dict[str, float]:
    """Measure relay throughput; ``seconds`` is split across the three pipelines."""
    packets = _source()
    share = seconds / 3
    out_ssrc = 0x5E55_10D0
    ts_offset = 12345

    def relay(n: int, data: bytes) -> bytes:
        p = RtpPacket.parse(data)
        return bytes(
            RtpPacket(
                p.payload_type,
                n & 0xFFFF,
                (p.timestamp + ts_offset) & 0xFFFFFFFF,
                out_ssrc,
                p.payload,
                p.marker,
            )
        )

    buffer = JitterBuffer(160)

    def jitter(n: int, data: bytes) -> bytes | None:
        p = RtpPacket.parse(data)
        # The source list repeats; give each packet a fresh timeline so nothing is "late".
        p = RtpPacket(p.payload_type, n & 0xFFFF, (n * 160) & 0xFFFFFFFF, p.ssrc, p.payload)
        buffer.push(p, n * 0.02)
        item = buffer.pop(n * 0.02 + 0.01)
        if not isinstance(item, Played):
            return None
        q = item.packet
        return bytes(
            RtpPacket(0, n & 0xFFFF, (q.timestamp + ts_offset) & 0xFFFFFFFF, out_ssrc, q.payload)
        )

    def transcode(n: int, data: bytes) -> bytes:
        p = RtpPacket.parse(data)
        payload = g711.alaw_encode(g711.ulaw_decode(p.payload))
        return bytes(RtpPacket(8, n & 0xFFFF, p.timestamp, out_ssrc, payload))

    results = {
        "relay_pps": _run(share, relay, packets),
        "jitter_pps": _run(share, jitter, packets),
        "transcode_pps": _run(share, transcode, packets),
        "packet_octets": float(len(packets[0])),
    }
    results["jitter_missing"] = float(buffer.missing + buffer.late)
    return results
