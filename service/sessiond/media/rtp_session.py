"""One RTP session (RFC 3550) for one call leg, sans-I/O.

Theory of operation: the media process owns the UDP socket(s) and a clock. It calls
:meth:`RtpSession.receive` with each datagram, its source address and ``now``;
:meth:`RtpSession.send` to turn a payload into RTP bytes; and :meth:`RtpSession.handle_timer`
whenever ``now`` passes :meth:`RtpSession.get_timer`. Each returns events; :class:`Transmit`
events are datagrams to send. Nothing here sleeps or touches a socket.

Symmetric RTP (RFC 4961) and NAT: the SDP address is only a first guess. The session *latches*
to the source address RTP actually arrives from and sends there. It re-latches to a new source
only after ``relatch_after`` consecutive packets from it, so a single stray or spoofed packet
cannot steal the stream; packets from unlatched sources are dropped meanwhile.

Inactivity: when no RTP arrives for ``inactivity_timeout`` seconds an :class:`RtpTimeout` is
emitted once; the next RTP packet re-arms it. Set the timeout to None while the peer holds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import NamedTuple

from sessiond.media.errors import RtpError
from sessiond.media.rtcp import (
    SDES_CNAME,
    Bye,
    ReceiverReport,
    ReportBlock,
    RtcpInterval,
    RtcpPacket,
    SenderReport,
    SourceDescription,
    ntp_middle,
    ntp_timestamp,
    parse_compound,
)
from sessiond.media.rtp import HEADER, RtpPacket, is_rtcp
from sessiond.media.rtp_stats import ReceptionStats

Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class RtpReceived:
    """A valid RTP packet from the latched source."""

    packet: RtpPacket
    source: Address
    arrival: float


@dataclass(frozen=True, slots=True)
class RtcpReceived:
    """A compound RTCP packet from the peer."""

    packets: tuple[RtcpPacket, ...]
    source: Address


@dataclass(frozen=True, slots=True)
class SourceLatched:
    """We now send RTP (and, with rtcp-mux, RTCP) to ``address``."""

    address: Address
    previous: Address | None


@dataclass(frozen=True, slots=True)
class RtpTimeout:
    """No RTP arrived for the inactivity timeout (emitted once per silence)."""

    last_rtp: float


class Transmit(NamedTuple):
    """A datagram the media process must send (a named tuple: one is made per packet sent,
    and a frozen dataclass took twice as long to build)."""

    data: bytes
    address: Address


@dataclass(frozen=True, slots=True)
class Dropped:
    """A datagram we did not accept (malformed, or from an unlatched source)."""

    source: Address
    reason: str


RtpEvent = RtpReceived | RtcpReceived | SourceLatched | RtpTimeout | Transmit | Dropped


class RtpSession:
    """RTP/RTCP state of one stream: sender counters, receiver stats, latching, timers."""

    def __init__(
        self,
        *,
        clock_rate: int,
        remote_rtp: Address,
        remote_rtcp: Address | None,
        now: float,
        rng: random.Random,
        cname: str = "sessiond",
        wall_clock_offset: float = 0.0,
        inactivity_timeout: float | None = 30.0,
        relatch_after: int = 5,
    ) -> None:
        self.clock_rate = clock_rate
        self.ssrc = rng.getrandbits(32)
        self.cname = cname.encode()
        # RFC 3550 section 5.1: initial sequence number and timestamp SHOULD be random.
        self._seq = rng.getrandbits(16)
        self._ts = rng.getrandbits(32)
        self.packets_sent = 0
        self.octets_sent = 0
        self._last_sent_ts: int | None = None
        self._last_sent_time = now
        self.remote_rtp = remote_rtp
        self.remote_rtcp = remote_rtcp  # None means rtcp-mux: RTCP goes to remote_rtp
        self.latched: Address | None = None
        self._candidate: Address | None = None
        self._candidate_count = 0
        self.relatch_after = relatch_after
        self.stats: ReceptionStats | None = None
        self._last_sr: tuple[int, float] | None = None  # (LSR, arrival time)
        self.inactivity_timeout = inactivity_timeout
        self._last_rtp = now
        self._timed_out = False
        self._wall_offset = wall_clock_offset
        self._interval = RtcpInterval(now, rng)

    # -- sending ------------------------------------------------------------------------------

    def send(
        self,
        payload: bytes,
        *,
        payload_type: int,
        samples: int,
        now: float,
        marker: bool = False,
        timestamp: int | None = None,
    ) -> Transmit:
        """Packetise ``payload`` and advance the RTP timestamp by ``samples`` clock ticks.

        ``timestamp`` overrides the stream clock (RFC 4733 events reuse their start time).
        """
        ts = (self._ts if timestamp is None else timestamp) & 0xFFFFFFFF
        # bytes(RtpPacket(...)) without building the packet: V=2, no padding, extension or CSRC
        second = payload_type | 0x80 if marker else payload_type
        data = HEADER.pack(0x80, second, self._seq, ts, self.ssrc) + payload
        self._seq = (self._seq + 1) & 0xFFFF
        if timestamp is None:
            self._ts = (self._ts + samples) & 0xFFFFFFFF
        self.packets_sent += 1
        self.octets_sent += len(payload)
        self._last_sent_ts = ts
        self._last_sent_time = now
        return Transmit(data, self.latched or self.remote_rtp)

    def advance(self, samples: int) -> None:
        """Move the stream clock without sending (silence suppression, hold)."""
        self._ts = (self._ts + samples) & 0xFFFFFFFF

    @property
    def next_timestamp(self) -> int:
        """The RTP timestamp the next :meth:`send` will use."""
        return self._ts

    # -- receiving ----------------------------------------------------------------------------

    def receive(self, data: bytes, source: Address, now: float) -> list[RtpEvent]:
        """Handle one datagram (RTP, or RTCP when multiplexed or on the RTCP port)."""
        try:
            if is_rtcp(data):
                return self._receive_rtcp(data, source, now)
            packet = RtpPacket.parse(data)
        except RtpError as exc:
            return [Dropped(source, str(exc))]
        events: list[RtpEvent] = []
        if source != self.latched:
            latch = self._latch(source)
            if latch is None:
                return [Dropped(source, "not the latched source")]
            events.append(latch)
        if self.stats is None or self.stats.ssrc != packet.ssrc:
            self.stats = ReceptionStats(packet.ssrc, self.clock_rate)
        self.stats.update(packet.sequence_number, packet.timestamp, now)
        self._last_rtp = now
        self._timed_out = False
        events.append(RtpReceived(packet, source, now))
        return events

    def _latch(self, source: Address) -> SourceLatched | None:
        if self.latched is not None:
            if source != self._candidate:
                self._candidate, self._candidate_count = source, 0
            self._candidate_count += 1
            if self._candidate_count < self.relatch_after:
                return None
        previous, self.latched = self.latched, source
        self._candidate, self._candidate_count = None, 0
        return SourceLatched(source, previous)

    def _receive_rtcp(self, data: bytes, source: Address, now: float) -> list[RtpEvent]:
        packets = tuple(parse_compound(data))
        for packet in packets:
            if isinstance(packet, SenderReport):
                self._last_sr = (ntp_middle(packet.ntp_timestamp), now)
        return [RtcpReceived(packets, source)]

    # -- timers -------------------------------------------------------------------------------

    def get_timer(self) -> float:
        """The next time :meth:`handle_timer` must be called."""
        due = self._interval.next_time
        timeout = self.inactivity_timeout
        if timeout is not None and not self._timed_out:
            silent = self._last_rtp + timeout
            if silent < due:
                return silent
        return due

    def handle_timer(self, now: float) -> list[RtpEvent]:
        """Emit due RTCP reports and the inactivity event."""
        events: list[RtpEvent] = []
        timeout = self.inactivity_timeout
        if timeout is not None and not self._timed_out and now >= self._last_rtp + timeout:
            self._timed_out = True
            events.append(RtpTimeout(self._last_rtp))
        if self._interval.due(now):
            self._interval.sent(now)
            events.append(Transmit(self.build_report(now), self._rtcp_address()))
        return events

    def _rtcp_address(self) -> Address:
        if self.remote_rtcp is None:
            return self.latched or self.remote_rtp
        return self.remote_rtcp

    def build_report(self, now: float, bye: bool = False) -> bytes:
        """A compound RTCP packet: SR (if we sent since the last report) or RR, then SDES CNAME.

        RFC 3550 section 6.1: every compound packet starts with SR or RR and includes SDES
        CNAME; a BYE, when leaving, goes last.
        """
        blocks: tuple[ReportBlock, ...] = ()
        if self.stats is not None and self.stats.received:
            lsr, dlsr = 0, 0
            if self._last_sr is not None:
                lsr = self._last_sr[0]
                dlsr = int((now - self._last_sr[1]) * 65536)
            blocks = (self.stats.report_block(lsr, dlsr),)
        report: SenderReport | ReceiverReport
        if self._last_sent_ts is not None:
            elapsed = int((now - self._last_sent_time) * self.clock_rate)
            report = SenderReport(
                self.ssrc,
                ntp_timestamp(now + self._wall_offset),
                (self._last_sent_ts + elapsed) & 0xFFFFFFFF,
                self.packets_sent & 0xFFFFFFFF,
                self.octets_sent & 0xFFFFFFFF,
                blocks,
            )
        else:
            report = ReceiverReport(self.ssrc, blocks)
        sdes = SourceDescription(((self.ssrc, ((SDES_CNAME, self.cname),)),))
        parts = [bytes(report), bytes(sdes)]
        if bye:
            parts.append(bytes(Bye((self.ssrc,))))
        return b"".join(parts)

    def close(self, now: float) -> Transmit:
        """The final RTCP report with BYE (RFC 3550 section 6.6)."""
        return Transmit(self.build_report(now, bye=True), self._rtcp_address())
