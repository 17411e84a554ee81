"""A fixed-target jitter buffer driven by the playout tick, with concealment.

Theory of operation: the buffer holds packets keyed by their *extended* RTP timestamp (wrap
handled by :func:`~sessiond.media.rtp.unwrap`). Playout is a clock: every :meth:`JitterBuffer.pop`
(one per 20 ms tick) emits exactly one item for the timestamp ``next`` and advances ``next`` by
one frame, whether or not the packet came. So a lost packet never stalls or shifts the stream:
its slot is emitted as :class:`Missing` (the caller conceals it) and playout moves on; a packet
arriving after its slot has been played is dropped as late.

Playout starts ``target`` frames after the first packet arrives. Three rules keep the delay at
the target without lasting growth:

* *trim*: when more than ``target + 1`` frames are buffered for ``trim_after`` consecutive
  ticks (a burst after a delay spike, or a sender clock faster than ours), the oldest frame is
  skipped;
* *resync late*: when packets keep arriving late for ``resync_after`` seconds (the path delay
  grew for good), playout is re-anchored ``target`` frames before the newest late packet;
* *restart*: after ``idle_frames`` consecutive missing frames (silence suppression, hold, or
  a new timestamp base) the buffer re-primes on the next packet; a timestamp jump beyond
  ``idle_frames`` frames does the same.

Packets must carry one frame (``samples_per_frame`` timestamp units) each; :class:`AudioPlayout`
feeds it 10 ms slices of decoded audio, so peers may send any multiple of 10 ms per packet.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, replace

from sessiond.media.codecs import SILENCE, AudioCodec
from sessiond.media.errors import CodecError
from sessiond.media.rtp import RtpPacket, unwrap


@dataclass(frozen=True, slots=True)
class Played:
    """The packet for this tick."""

    packet: RtpPacket


@dataclass(frozen=True, slots=True)
class Missing:
    """No packet for this tick in a running stream: conceal. ``run`` counts 1, 2, 3..."""

    timestamp: int
    run: int


@dataclass(frozen=True, slots=True)
class Idle:
    """Playout has not started (or restarted after a long gap): play silence."""


PlayoutItem = Played | Missing | Idle


class JitterBuffer:
    """Reorders, de-duplicates and times RTP packets of one stream for playout."""

    def __init__(
        self,
        samples_per_frame: int,
        *,
        frame_time: float = 0.02,
        target_frames: int = 3,
        trim_after: int = 10,
        resync_after: float = 0.2,
        idle_frames: int = 50,
    ) -> None:
        self.spf = samples_per_frame
        self.frame_time = frame_time
        self.target = target_frames
        self.trim_after = trim_after
        self.resync_after = resync_after
        self.idle_frames = idle_frames
        self._frames: dict[int, RtpPacket] = {}
        self._next: int | None = None
        self._ref: int | None = None
        self._ssrc: int | None = None
        self._first_arrival = 0.0
        self._late_since: float | None = None
        self._excess_ticks = 0
        self._missing_run = 0
        self.late = 0
        self.duplicates = 0
        self.missing = 0
        self.trimmed = 0
        self.resyncs = 0

    @property
    def depth(self) -> int:
        """Frames from the playout point to the newest buffered packet (0 when empty)."""
        if not self._frames or self._next is None:
            return len(self._frames)
        return (max(self._frames) - self._next) // self.spf + 1

    def push(self, packet: RtpPacket, arrival: float) -> bool:
        """Add a packet that arrived at ``arrival``; False if it was dropped (late/duplicate)."""
        if packet.ssrc != self._ssrc or self._ref is None:
            self._restart(packet)
        assert self._ref is not None
        ext = unwrap(packet.timestamp, self._ref, 32)
        if ext - self._ref > self.idle_frames * self.spf:
            self._restart(packet)  # timestamp discontinuity: new base
            ext = packet.timestamp
        self._ref = max(self._ref, ext)
        if not self._frames and self._next is None:
            self._first_arrival = arrival
        if self._next is not None and ext < self._next:
            return self._late(ext, packet, arrival)
        self._late_since = None
        if ext in self._frames:
            self.duplicates += 1
            return False
        self._frames[ext] = packet
        return True

    def reset(self) -> None:
        """Forget every packet: the next one primes playout again."""
        self._frames.clear()
        self._next = None
        self._ref = None
        self._late_since = None

    def _restart(self, packet: RtpPacket) -> None:
        self._frames.clear()
        self._next = None
        self._ssrc = packet.ssrc
        self._ref = packet.timestamp
        self._late_since = None

    def _late(self, ext: int, packet: RtpPacket, arrival: float) -> bool:
        self.late += 1
        if self._late_since is None:
            self._late_since = arrival
        if arrival - self._late_since < self.resync_after:
            return False
        # The path delay grew for good: play this packet after `target` frames of concealment.
        self.resyncs += 1
        self._late_since = None
        self._next = ext - (self.target - 1) * self.spf
        self._frames = {k: v for k, v in self._frames.items() if k >= self._next}
        self._frames[ext] = packet
        return True

    def pop(self, now: float) -> PlayoutItem:
        """The item for this 20 ms tick; call exactly once per tick."""
        if self._next is None:
            if not self._frames or now - self._first_arrival < self.target * self.frame_time:
                return Idle()
            self._next = min(self._frames)
            self._missing_run = 0
        key = self._next
        self._next += self.spf
        packet = self._frames.pop(key, None)
        self._trim()
        if packet is not None:
            self._missing_run = 0
            return Played(packet)
        self._missing_run += 1
        self.missing += 1
        if self._missing_run >= self.idle_frames and not self._frames:
            self._next = None  # long gap: re-prime on the next packet
        return Missing(key, self._missing_run)

    def _trim(self) -> None:
        if self.depth <= self.target + 1:
            self._excess_ticks = 0
            return
        self._excess_ticks += 1
        if self._excess_ticks >= self.trim_after and self._next is not None:
            self._excess_ticks = 0
            self._frames.pop(self._next, None)
            self._next += self.spf
            self.trimmed += 1


class Concealer:
    """Packet loss concealment on PCM16 frames: repeat the last frame, fading, then silence."""

    def __init__(self, gain: float = 0.5, max_repeats: int = 3, silence: bytes = SILENCE) -> None:
        self.gain = gain
        self.max_repeats = max_repeats
        self._last = silence
        self._repeats = 0

    def good(self, pcm: bytes) -> bytes:
        """Record a correctly decoded frame and return it."""
        self._last = pcm
        self._repeats = 0
        return pcm

    def conceal(self) -> bytes | None:
        """The frame to play in place of a missing one; None once the fade is over (the
        caller plays silence: nothing of what arrived is left in it)."""
        self._repeats += 1
        if self._repeats > self.max_repeats:
            return None
        gain = self.gain**self._repeats
        faded = array("h", (int(s * gain) for s in array("h", self._last)))
        return faded.tobytes()


SLICE_BYTES = len(SILENCE) // 2  # 10 ms of 8 kHz PCM16
_SILENT_SLICE = bytes(SLICE_BYTES)


class AudioPlayout:
    """Jitter buffer + decoder + concealment: push packets, pop one 20 ms PCM frame per tick.

    Packets are decoded when they arrive and cut into 10 ms slices, which the jitter buffer
    orders and times (two per tick). So any packet duration that is a multiple of 10 ms
    (ptime 10, 20, 30, 40, 60...) plays at the right speed, and a frame always holds exactly
    20 ms. ``decoders`` maps payload type to codec (all must share one RTP clock); packets of
    other payload types (telephone-event, comfort noise) are refused by :meth:`push` and should
    be routed elsewhere by the caller.
    """

    def __init__(self, decoders: dict[int, AudioCodec], target_frames: int = 3) -> None:
        spf = {codec.samples_per_frame for codec in decoders.values()}
        if len(spf) != 1:
            raise CodecError("all decoders of one playout must share one frame size")
        self.decoders = decoders
        self._step = spf.pop() // 2  # RTP clock units per 10 ms slice
        self.buffer = JitterBuffer(
            self._step,
            frame_time=0.01,
            target_frames=2 * target_frames,
            trim_after=20,
            idle_frames=100,
        )
        self.concealer = Concealer(silence=_SILENT_SLICE)

    def push(self, packet: RtpPacket, arrival: float) -> bool:
        """Buffer an audio packet; False for a foreign payload type, a packet that does not
        decode (its slots are concealed), or one that is late or a duplicate."""
        codec = self.decoders.get(packet.payload_type)
        if codec is None:
            return False
        try:
            pcm = codec.decode(packet.payload)
        except CodecError:
            return False
        accepted = False
        for i in range(len(pcm) // SLICE_BYTES):
            piece = replace(
                packet,
                timestamp=(packet.timestamp + i * self._step) & 0xFFFFFFFF,
                payload=pcm[i * SLICE_BYTES : (i + 1) * SLICE_BYTES],
            )
            accepted = self.buffer.push(piece, arrival) or accepted
        return accepted

    def reset(self) -> None:
        """Forget what is buffered: playout starts afresh with the next packet."""
        self.buffer.reset()

    def pop(self, now: float) -> bytes:
        """Exactly one 20 ms PCM16 frame: decoded, concealed, or silence. The shared
        :data:`SILENCE` object itself when the frame holds nothing that arrived (playout idle
        or not started yet, or a gap past the concealment's fade): a bridge relays nothing
        then under ``--idle-rtp keepalive`` (:meth:`Leg.tick`)."""
        buffer = self.buffer
        if buffer._next is None and not buffer._frames:
            return SILENCE  # idle, nothing buffered (most ticks of a leg nobody sends to)
        first, second = self._slice(now), self._slice(now)
        if first is None:
            return SILENCE if second is None else _SILENT_SLICE + second
        return first + (_SILENT_SLICE if second is None else second)

    def _slice(self, now: float) -> bytes | None:
        """One 10 ms slice: decoded or concealed; None for silence (nothing arrived)."""
        item = self.buffer.pop(now)
        if isinstance(item, Played):
            return self.concealer.good(item.packet.payload)
        if isinstance(item, Missing):
            return self.concealer.conceal()
        return None
