"""RTCP packets (RFC 3550 section 6.4-6.6) and the report interval (section 6.3, A.7).

A compound packet is parsed into SR, RR, SDES and BYE objects; any other packet type (APP,
RTPFB, PSFB, XR...) becomes :class:`RtcpUnknown` with its body kept, so nothing is silently lost
and everything re-serialises.
"""

from __future__ import annotations

import math
import random
import struct
from dataclasses import dataclass

from sessiond.media.errors import RtpError

SR, RR, SDES, BYE = 200, 201, 202, 203
SDES_CNAME = 1
NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900-01-01 to 1970-01-01
_BLOCK = struct.Struct("!IB3sIIII")


def ntp_timestamp(unix_time: float) -> int:
    """64-bit NTP timestamp (RFC 3550 section 4) for a Unix time in seconds."""
    return round((unix_time + NTP_EPOCH_OFFSET) * (1 << 32)) & 0xFFFFFFFFFFFFFFFF


def ntp_middle(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp, as used in LSR (RFC 3550 section 6.4.1)."""
    return (ntp >> 16) & 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """One reception report block (RFC 3550 section 6.4.1), 24 octets.

    ``cumulative_lost`` is a signed 24-bit count (duplicates can make it negative); ``lsr`` and
    ``dlsr`` are in NTP middle-32-bit form and 1/65536 s units.
    """

    ssrc: int
    fraction_lost: int
    cumulative_lost: int
    highest_sequence: int
    jitter: int
    lsr: int = 0
    dlsr: int = 0

    @classmethod
    def parse(cls, data: bytes, offset: int) -> ReportBlock:
        """Parse the block at ``offset``."""
        ssrc, fraction, lost, high, jitter, lsr, dlsr = _BLOCK.unpack_from(data, offset)
        cumulative = int.from_bytes(lost, "big", signed=True)
        return cls(ssrc, fraction, cumulative, high, jitter, lsr, dlsr)

    def __bytes__(self) -> bytes:
        lost = max(-(1 << 23), min(self.cumulative_lost, (1 << 23) - 1))
        return _BLOCK.pack(
            self.ssrc,
            self.fraction_lost,
            lost.to_bytes(3, "big", signed=True),
            self.highest_sequence,
            self.jitter,
            self.lsr,
            self.dlsr,
        )


def _header(count: int, packet_type: int, body: bytes) -> bytes:
    # RFC 3550 section 6.4.1: "length: The length of this RTCP packet in 32-bit words minus one,
    # including the header and any padding." Bodies here are always word-aligned.
    return struct.pack("!BBH", 0x80 | count, packet_type, len(body) // 4) + body


@dataclass(frozen=True, slots=True)
class SenderReport:
    """SR: PT=200 (RFC 3550 section 6.4.1)."""

    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()

    def __bytes__(self) -> bytes:
        body = struct.pack(
            "!IQIII",
            self.ssrc,
            self.ntp_timestamp,
            self.rtp_timestamp,
            self.packet_count,
            self.octet_count,
        )
        return _header(len(self.reports), SR, body + b"".join(map(bytes, self.reports)))


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    """RR: PT=201 (RFC 3550 section 6.4.2)."""

    ssrc: int
    reports: tuple[ReportBlock, ...] = ()

    def __bytes__(self) -> bytes:
        body = struct.pack("!I", self.ssrc) + b"".join(map(bytes, self.reports))
        return _header(len(self.reports), RR, body)


@dataclass(frozen=True, slots=True)
class SourceDescription:
    """SDES: PT=202 (RFC 3550 section 6.5); ``chunks`` are (ssrc, ((item type, text), ...))."""

    chunks: tuple[tuple[int, tuple[tuple[int, bytes], ...]], ...]

    def __bytes__(self) -> bytes:
        body = b""
        for ssrc, items in self.chunks:
            chunk = struct.pack("!I", ssrc)
            for item_type, text in items:
                chunk += bytes((item_type, len(text))) + text
            # Each chunk ends with at least one null octet and is padded to 32 bits.
            chunk += bytes(4 - len(chunk) % 4)
            body += chunk
        return _header(len(self.chunks), SDES, body)


@dataclass(frozen=True, slots=True)
class Bye:
    """BYE: PT=203 (RFC 3550 section 6.6)."""

    sources: tuple[int, ...]
    reason: bytes = b""

    def __bytes__(self) -> bytes:
        body = struct.pack(f"!{len(self.sources)}I", *self.sources)
        if self.reason:
            reason = bytes((len(self.reason),)) + self.reason
            body += reason + bytes(-len(reason) % 4)
        return _header(len(self.sources), BYE, body)


@dataclass(frozen=True, slots=True)
class RtcpUnknown:
    """Any other RTCP packet (APP, feedback, XR...), kept verbatim."""

    packet_type: int
    count: int
    body: bytes

    def __bytes__(self) -> bytes:
        return _header(self.count, self.packet_type, self.body)


RtcpPacket = SenderReport | ReceiverReport | SourceDescription | Bye | RtcpUnknown


def parse_compound(data: bytes) -> list[RtcpPacket]:
    """Split and parse a compound RTCP packet (RFC 3550 section 6.1, validity checks A.2).

    Every packet must have V=2 and a length that fits; padding (P bit) is only allowed on the
    last packet. Unknown packet types are kept as :class:`RtcpUnknown`.
    """
    packets: list[RtcpPacket] = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < 4:
            raise RtpError("truncated RTCP header")
        first, packet_type, words = struct.unpack_from("!BBH", data, offset)
        end = offset + 4 * (words + 1)
        if first >> 6 != 2 or end > len(data):
            raise RtpError("RTCP packet with bad version or length")
        body_end = end
        if first & 0x20:
            if end != len(data) or data[end - 1] == 0 or data[end - 1] > 4 * words:
                raise RtpError("RTCP padding only allowed, and valid, on the last packet")
            body_end -= data[end - 1]
        packets.append(_parse_one(first & 0x1F, packet_type, bytes(data[offset + 4 : body_end])))
        offset = end
    if not packets:
        raise RtpError("empty RTCP packet")
    return packets


def _parse_one(count: int, packet_type: int, body: bytes) -> RtcpPacket:
    try:
        if packet_type == SR:
            ssrc, ntp, rtp_ts, packets, octets = struct.unpack_from("!IQIII", body)
            return SenderReport(ssrc, ntp, rtp_ts, packets, octets, _blocks(body, 24, count))
        if packet_type == RR:
            (ssrc,) = struct.unpack_from("!I", body)
            return ReceiverReport(ssrc, _blocks(body, 4, count))
        if packet_type == SDES:
            return SourceDescription(_sdes_chunks(body, count))
        if packet_type == BYE:
            sources = struct.unpack_from(f"!{count}I", body)
            rest = body[4 * count :]
            reason = rest[1 : 1 + rest[0]] if rest else b""
            return Bye(sources, reason)
    except (struct.error, IndexError) as exc:
        raise RtpError(f"truncated RTCP packet type {packet_type}") from exc
    return RtcpUnknown(packet_type, count, body)


def _blocks(body: bytes, offset: int, count: int) -> tuple[ReportBlock, ...]:
    return tuple(ReportBlock.parse(body, offset + 24 * i) for i in range(count))


def _sdes_chunks(body: bytes, count: int) -> tuple[tuple[int, tuple[tuple[int, bytes], ...]], ...]:
    chunks = []
    offset = 0
    for _ in range(count):
        (ssrc,) = struct.unpack_from("!I", body, offset)
        offset += 4
        items = []
        while body[offset] != 0:
            length = body[offset + 1]
            items.append((body[offset], body[offset + 2 : offset + 2 + length]))
            offset += 2 + length
        offset = (offset + 4) & ~3  # skip the terminating null and pad to a word
        chunks.append((ssrc, tuple(items)))
    return tuple(chunks)


class RtcpInterval:
    """When to send the next RTCP report (RFC 3550 section 6.3.1, 6.2 and appendix A.7).

    For a two-party call the bandwidth-derived interval is always below the 5 s minimum, so
    the deterministic interval is the nominal ``minimum`` (halved before the first report,
    section 6.2), randomised uniformly in [0.5, 1.5] and divided by ``e - 3/2`` to compensate
    for timer reconsideration (section 6.3.1). The RNG is injected for reproducible tests.
    """

    COMPENSATION = math.e - 1.5

    def __init__(self, now: float, rng: random.Random, minimum: float = 5.0) -> None:
        self._rng = rng
        self.minimum = minimum
        self.next_time = now + self._interval(initial=True)

    def _interval(self, initial: bool) -> float:
        deterministic = self.minimum / 2 if initial else self.minimum
        return deterministic * self._rng.uniform(0.5, 1.5) / self.COMPENSATION

    def due(self, now: float) -> bool:
        """True when a report should be sent now."""
        return now >= self.next_time

    def sent(self, now: float) -> None:
        """Record that a report went out at ``now`` and schedule the next one."""
        self.next_time = now + self._interval(initial=False)
