"""Per-source reception statistics (RFC 3550 appendix A.1, A.3 and A.8).

Theory of operation: :meth:`ReceptionStats.update` is called for every RTP packet from one
SSRC with its arrival time. It validates the sequence number as appendix A.1 does (a source is
"on probation" until ``MIN_SEQUENTIAL`` packets arrive in order; jumps beyond ``MAX_DROPOUT``
or behind by more than ``MAX_MISORDER`` are treated as a restart once confirmed by the next
packet), keeps the extended highest sequence number across wrap-around, and the interarrival
jitter of appendix A.8. :meth:`report_block` turns that into an RTCP report block with the
fraction lost since the previous report (appendix A.3).
"""

from __future__ import annotations

from sessiond.media.rtcp import ReportBlock
from sessiond.media.rtp import SEQ_MOD

MAX_DROPOUT = 3000
MAX_MISORDER = 100
MIN_SEQUENTIAL = 2


class ReceptionStats:
    """Statistics for one remote SSRC, driven by packets and arrival times."""

    def __init__(self, ssrc: int, clock_rate: int) -> None:
        self.ssrc = ssrc
        self.clock_rate = clock_rate
        self.max_seq = 0
        self.cycles = 0
        self.base_seq = 0
        self.bad_seq = SEQ_MOD + 1
        self.probation = MIN_SEQUENTIAL
        self.received = 0
        self.expected_prior = 0
        self.received_prior = 0
        self.jitter = 0.0
        self._transit: float | None = None
        self.started = False

    def _init_seq(self, seq: int) -> None:
        self.base_seq = seq
        self.max_seq = seq
        self.bad_seq = SEQ_MOD + 1
        self.cycles = 0
        self.received = 0
        self.received_prior = 0
        self.expected_prior = 0

    def update(self, seq: int, timestamp: int, arrival: float) -> bool:
        """Account for one packet; False when appendix A.1 says not to use it (yet)."""
        if not self.started:
            self._init_seq(seq)
            self.max_seq = (seq - 1) % SEQ_MOD
            self.started = True
        valid = self._update_seq(seq)
        if valid:
            self._update_jitter(timestamp, arrival)
        return valid

    def _update_seq(self, seq: int) -> bool:
        """RFC 3550 appendix A.1 ``update_seq``, transcribed."""
        udelta = (seq - self.max_seq) % SEQ_MOD
        if self.probation:
            if seq == (self.max_seq + 1) % SEQ_MOD:
                self.probation -= 1
                self.max_seq = seq
                if self.probation == 0:
                    self._init_seq(seq)
                    self.received += 1
                    return True
            else:
                self.probation = MIN_SEQUENTIAL - 1
                self.max_seq = seq
            return False
        if udelta < MAX_DROPOUT:
            if seq < self.max_seq:
                self.cycles += SEQ_MOD  # wrapped around
            self.max_seq = seq
        elif udelta <= SEQ_MOD - MAX_MISORDER:
            if seq == self.bad_seq:
                # Two sequential packets after a big jump: the source restarted.
                self._init_seq(seq)
            else:
                self.bad_seq = (seq + 1) % SEQ_MOD
                return False
        # else: duplicate or reordered packet, counted as received.
        self.received += 1
        return True

    def _update_jitter(self, timestamp: int, arrival: float) -> None:
        """RFC 3550 appendix A.8: J += (|D(i-1, i)| - J) / 16, in timestamp units."""
        transit = arrival * self.clock_rate - timestamp
        if self._transit is not None:
            d = abs(transit - self._transit)
            if d < (1 << 31):  # a timestamp wrap between the two packets is not jitter
                self.jitter += (d - self.jitter) / 16
        self._transit = transit

    @property
    def extended_max(self) -> int:
        """The extended highest sequence number received (cycles + max_seq)."""
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        """Packets expected: extended_max - base_seq + 1 (appendix A.3)."""
        return self.extended_max - self.base_seq + 1

    @property
    def lost(self) -> int:
        """Cumulative number of packets lost (negative when duplicates arrived)."""
        return self.expected - self.received

    def report_block(self, lsr: int = 0, dlsr: int = 0) -> ReportBlock:
        """A report block for this source; resets the "since last report" interval."""
        expected_interval = self.expected - self.expected_prior
        received_interval = self.received - self.received_prior
        self.expected_prior = self.expected
        self.received_prior = self.received
        lost_interval = expected_interval - received_interval
        fraction = 0
        if expected_interval > 0 and lost_interval > 0:
            fraction = (lost_interval << 8) // expected_interval
        return ReportBlock(
            ssrc=self.ssrc,
            fraction_lost=min(fraction, 255),
            cumulative_lost=self.lost,
            highest_sequence=self.extended_max & 0xFFFFFFFF,
            jitter=int(self.jitter),
            lsr=lsr,
            dlsr=dlsr,
        )
