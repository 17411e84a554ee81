"""RFC 4733 telephone-events: the packets a sender emits, and a receiver that yields digits.

Sending (section 2.5.1): all packets of one event carry the event's start timestamp; the first
has the RTP marker bit; updates follow every packet interval with a growing duration; the end
is sent three times with the E bit and the final duration. :func:`dtmf_packets` returns that
plan, one packet per 20 ms tick; the caller sends each with ``RtpSession.send(...,
timestamp=start)`` and keeps advancing the audio clock meanwhile.

Receiving (section 2.5.2): a digit is reported once, when the first packet of its event
(identified by its RTP timestamp) arrives, whichever packet that is; redundant updates and end
packets, reordered or not, do not repeat it. Packets older than the newest event that were never
seen are stale leftovers and are ignored.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from dataclasses import dataclass

from sessiond.media.errors import RtpError
from sessiond.media.rtp import RtpPacket, ts_diff

EVENTS = "0123456789*#ABCD"
FLASH = 16
_PAYLOAD = struct.Struct("!BBH")


def event_code(digit: str) -> int:
    """The RFC 4733 section 3.2 event code of a DTMF digit (``0-9 * # A-D``)."""
    code = EVENTS.find(digit.upper()) if len(digit) == 1 else -1
    if code < 0:
        raise ValueError(f"not a DTMF digit: {digit!r}")
    return code


def event_name(code: int) -> str:
    """The digit for an event code; ``"flash"`` for 16, ``"event-N"`` for others."""
    if code < len(EVENTS):
        return EVENTS[code]
    return "flash" if code == FLASH else f"event-{code}"


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """The 4-octet payload of RFC 4733 section 2.3.

    ``event`` (8 bits) | ``E`` end bit | ``R`` reserved | ``volume`` (6 bits, -dBm0) |
    ``duration`` (16 bits, in RTP timestamp units).
    """

    event: int
    end: bool
    volume: int
    duration: int

    @classmethod
    def parse(cls, payload: bytes) -> TelephoneEvent:
        """Parse a telephone-event payload (extra octets, e.g. redundancy, are ignored)."""
        if len(payload) < 4:
            raise RtpError(f"telephone-event payload needs 4 octets, got {len(payload)}")
        event, flags, duration = _PAYLOAD.unpack_from(payload)
        return cls(event, bool(flags & 0x80), flags & 0x3F, duration)

    def __bytes__(self) -> bytes:
        return _PAYLOAD.pack(self.event, (0x80 if self.end else 0) | self.volume, self.duration)


def dtmf_packets(
    digit: str,
    *,
    duration_ms: int = 100,
    volume: int = 10,
    clock_rate: int = 8000,
    interval_ms: int = 20,
) -> list[tuple[TelephoneEvent, bool]]:
    """The (payload, marker) sequence for one digit, one entry per packet interval.

    Durations grow by one interval per packet up to ``duration_ms``; then three end packets.
    Events longer than the 16-bit duration field allows (about 8 s at 8 kHz) are refused.
    """
    code = event_code(digit)
    step = clock_rate * interval_ms // 1000
    total = clock_rate * duration_ms // 1000
    if not 0 < total <= 0xFFFF or not 0 <= volume <= 63:
        raise ValueError("duration must fit 16 bits of timestamp units; volume 0..63")
    packets: list[tuple[TelephoneEvent, bool]] = []
    elapsed = step
    while elapsed < total:
        packets.append((TelephoneEvent(code, False, volume, elapsed), not packets))
        elapsed += step
    end = TelephoneEvent(code, True, volume, total)
    first_is_end = not packets
    packets.extend((end, first_is_end and i == 0) for i in range(3))
    return packets


@dataclass(frozen=True, slots=True)
class DtmfDigit:
    """A digit received; ``timestamp`` identifies its event."""

    digit: str
    timestamp: int


class DtmfReceiver:
    """Turns telephone-event RTP packets into digits, each exactly once."""

    def __init__(self, payload_type: int, memory: int = 32) -> None:
        self.payload_type = payload_type
        self._seen: OrderedDict[int, TelephoneEvent] = OrderedDict()
        self._memory = memory
        self._newest: int | None = None

    def receive(self, packet: RtpPacket) -> DtmfDigit | None:
        """Account for one packet; return a digit the first time its event is seen."""
        if packet.payload_type != self.payload_type:
            return None
        event = TelephoneEvent.parse(packet.payload)
        ts = packet.timestamp
        if ts in self._seen:
            if event.end:
                self._seen[ts] = event
            return None
        if self._newest is not None and ts_diff(ts, self._newest) < 0:
            return None  # a stale packet of an event we never saw start: too old to report
        self._newest = ts
        self._seen[ts] = event
        while len(self._seen) > self._memory:
            self._seen.popitem(last=False)
        return DtmfDigit(event_name(event.event), ts)

    def duration(self, timestamp: int) -> int | None:
        """The final duration of an ended event (timestamp units), if its end was seen."""
        event = self._seen.get(timestamp)
        return event.duration if event is not None and event.end else None
