"""RTP packets (RFC 3550 section 5) and modular sequence/timestamp arithmetic."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from sessiond.media.errors import RtpError

RTP_VERSION = 2
HEADER = struct.Struct("!BBHII")
SEQ_MOD = 1 << 16


def seq_diff(a: int, b: int) -> int:
    """``a - b`` for 16-bit sequence numbers, in ``[-32768, 32767]`` (serial arithmetic)."""
    return ((a - b + 0x8000) & 0xFFFF) - 0x8000


def ts_diff(a: int, b: int) -> int:
    """``a - b`` for 32-bit RTP timestamps, in ``[-2**31, 2**31 - 1]``."""
    return ((a - b + 0x80000000) & 0xFFFFFFFF) - 0x80000000


def unwrap(value: int, reference: int, bits: int) -> int:
    """Extend a ``bits``-wide counter to the integer nearest an extended ``reference``.

    RFC 3550 appendix A.1 counts wrap-arounds ("cycles"); choosing the nearest candidate is the
    same thing without state, valid while the true distance is under half the range.
    """
    half = 1 << (bits - 1)
    mask = (1 << bits) - 1
    return reference + (((value - reference + half) & mask) - half)


@dataclass(frozen=True, slots=True)
class RtpExtension:
    """The one header extension of RFC 3550 section 5.3.1 (``profile`` and 32-bit-word data)."""

    profile: int
    data: bytes


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP packet; ``parse(bytes(p)) == p`` and golden packets round-trip byte for byte.

    ``padding`` is the number of padding octets (including the count octet itself), or 0.
    """

    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrc: tuple[int, ...] = ()
    extension: RtpExtension | None = None
    padding: int = 0

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """Parse one RTP packet, validating it as RFC 3550 section 5.1 and A.1 describe.

        ``V=2``; ``CC`` CSRC identifiers follow the 12-octet header; with ``X`` a header
        extension of ``4 + 4*length`` octets follows; with ``P`` the last octet counts the
        padding octets, which must fit in the packet.
        """
        if len(data) < 12:
            raise RtpError(f"RTP packet too short: {len(data)} octets")
        first, second, seq, ts, ssrc = HEADER.unpack_from(data)
        if first >> 6 != RTP_VERSION:
            raise RtpError(f"RTP version must be 2, got {first >> 6}")
        offset = 12 + 4 * (first & 0x0F)
        if len(data) < offset:
            raise RtpError("RTP CSRC list longer than the packet")
        csrc = struct.unpack_from(f"!{first & 0x0F}I", data, 12) if first & 0x0F else ()
        extension = None
        if first & 0x10:
            if len(data) < offset + 4:
                raise RtpError("RTP header extension truncated")
            profile, words = struct.unpack_from("!HH", data, offset)
            end = offset + 4 + 4 * words
            extension = RtpExtension(profile, bytes(data[offset + 4 : end]))
            offset = end
        end = len(data)
        padding = 0
        if first & 0x20:
            padding = data[-1]
            end -= padding
        if offset > end or (first & 0x20 and padding == 0):
            raise RtpError("RTP header, extension or padding longer than the packet")
        return cls(
            second & 0x7F,
            seq,
            ts,
            ssrc,
            bytes(data[offset:end]),
            bool(second & 0x80),
            csrc,
            extension,
            padding,
        )

    def __bytes__(self) -> bytes:
        first = RTP_VERSION << 6 | len(self.csrc)
        if self.padding:
            first |= 0x20
        if self.extension is not None:
            first |= 0x10
        second = self.payload_type | (0x80 if self.marker else 0)
        parts = [HEADER.pack(first, second, self.sequence_number, self.timestamp, self.ssrc)]
        if self.csrc:
            parts.append(struct.pack(f"!{len(self.csrc)}I", *self.csrc))
        if self.extension is not None:
            ext = self.extension
            parts.append(struct.pack("!HH", ext.profile, len(ext.data) // 4) + ext.data)
        parts.append(self.payload)
        if self.padding:
            parts.append(bytes(self.padding - 1) + bytes((self.padding,)))
        return b"".join(parts)


def is_rtcp(data: bytes) -> bool:
    """Demultiplex RTP and RTCP on one port (RFC 5761 section 4).

    RTCP packet types 192..223 occupy the second octet where RTP has marker + payload type;
    RTP payload types 64..95 are therefore never used when multiplexing.
    """
    return len(data) >= 2 and 192 <= data[1] <= 223
