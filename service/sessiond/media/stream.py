"""One negotiated audio stream: the object the media process runs per call leg.

Theory of operation: build a :class:`MediaStream` from the :class:`NegotiatedStream` that offer/
answer produced. The media process then drives it with three calls and nothing else:

* :meth:`MediaStream.receive` for every datagram from the stream's socket(s);
* :meth:`MediaStream.tick` every 20 ms with the app's outgoing frame (or None), getting back the
  frame to play/record and the datagrams to send (audio, or RFC 4733 events while a digit is
  being sent: audio is muted meanwhile and the RTP clock keeps running);
* :meth:`MediaStream.handle_timer` when ``now`` passes :meth:`MediaStream.get_timer` (RTCP,
  inactivity).

Events returned (:class:`DtmfDigit`, :class:`RtpTimeout`, :class:`SourceLatched`,
:class:`Transmit`...) are what the media process publishes or sends. A re-INVITE produces a new
NegotiatedStream; pass it to :meth:`MediaStream.update`.
"""

from __future__ import annotations

import random
from collections import deque

from sessiond.core.addresses import is_private
from sessiond.media.codecs import AudioCodec, create_codec, supported
from sessiond.media.dtmf import DtmfDigit, DtmfReceiver, TelephoneEvent, dtmf_packets
from sessiond.media.jitter import AudioPlayout
from sessiond.media.offer_answer import NegotiatedStream
from sessiond.media.rtp_session import Address, RtpEvent, RtpReceived, RtpSession, Transmit

MediaEvent = RtpEvent | DtmfDigit
INTER_DIGIT_TICKS = 2


class MediaStream:
    """RTP session + codec + jitter buffer + DTMF for one negotiated audio stream."""

    def __init__(
        self,
        negotiated: NegotiatedStream,
        *,
        now: float,
        rng: random.Random,
        cname: str = "sessiond",
        inactivity_timeout: float | None = 30.0,
        target_frames: int = 3,
        latch_private: bool = False,
    ) -> None:
        self.negotiated = negotiated
        self._sends = negotiated.direction.sends  # (read every tick)
        # a private SDP address (RFC 1918, ULA) is not sent to: the peer is behind NAT, and
        # its media is sent where its RTP comes from once it arrives (the latch)
        self.latch_private = latch_private
        self.inactivity_timeout = inactivity_timeout
        self.codec: AudioCodec = create_codec(negotiated.codec)
        decoders = {self.codec.payload_type: self.codec}
        for other in negotiated.codecs:
            if supported(other) and other.payload_type not in decoders:
                candidate = create_codec(other)
                if candidate.samples_per_frame == self.codec.samples_per_frame:
                    decoders[other.payload_type] = candidate
        self.playout = AudioPlayout(decoders, target_frames=target_frames)
        self.rtp = RtpSession(
            clock_rate=self.codec.clock_rate,
            remote_rtp=self._remote(negotiated),
            remote_rtcp=None if negotiated.rtcp_mux else self._remote_rtcp(negotiated),
            now=now,
            rng=rng,
            cname=cname,
            inactivity_timeout=inactivity_timeout if not negotiated.remote_hold else None,
        )
        event = negotiated.telephone_event
        self.dtmf_receiver = DtmfReceiver(event.payload_type) if event else None
        self._dtmf_queue: deque[tuple[TelephoneEvent, bool] | None] = deque()
        self._dtmf_start: int | None = None
        #: False while nobody consumes what the stream plays out (an idle leg): received
        #: audio is then neither decoded nor buffered (stats, latching and DTMF still are)
        self.listening = True

    def deafen(self) -> None:
        """Stop decoding received audio and drop what is buffered (see ``listening``)."""
        self.listening = False
        self.playout.reset()

    @staticmethod
    def _remote(n: NegotiatedStream) -> Address:
        return (n.remote_address, n.remote_port)

    @staticmethod
    def _remote_rtcp(n: NegotiatedStream) -> Address:
        return (n.remote_address, n.remote_rtcp_port)

    def update(self, negotiated: NegotiatedStream) -> None:
        """Apply a re-negotiation (hold, resume, new address). The codec must stay the same."""
        self.negotiated = negotiated
        self._sends = negotiated.direction.sends
        self.rtp.remote_rtp = self._remote(negotiated)
        self.rtp.remote_rtcp = None if negotiated.rtcp_mux else self._remote_rtcp(negotiated)
        if self._remote(negotiated) != self.rtp.latched and not self._ignores(negotiated):
            self.rtp.latched = None  # the peer moved: latch again to what it sends from
        self.rtp.inactivity_timeout = None if negotiated.remote_hold else self.inactivity_timeout

    def _ignores(self, negotiated: NegotiatedStream) -> bool:
        return self.latch_private and is_private(negotiated.remote_address)

    def sendable(self, transmit: Transmit) -> bool:
        """False for a datagram to a private SDP address while ``latch_private`` holds and
        the peer's RTP has not yet come from it (nothing goes to an address behind NAT;
        RTCP without rtcp-mux goes to the latched host only)."""
        latched = self.rtp.latched
        if latched is not None and transmit.address[0] == latched[0]:
            return True
        return not (self.latch_private and is_private(transmit.address[0]))

    def receive(self, data: bytes, source: Address, now: float) -> list[MediaEvent]:
        """Handle one datagram; audio goes to the jitter buffer, events come back."""
        events: list[MediaEvent] = []
        for event in self.rtp.receive(data, source, now):
            if not isinstance(event, RtpReceived):
                events.append(event)
                continue
            packet = event.packet
            if self.dtmf_receiver and packet.payload_type == self.dtmf_receiver.payload_type:
                digit = self.dtmf_receiver.receive(packet)
                if digit is not None:
                    events.append(digit)
            elif self.listening and self.negotiated.direction.receives:
                self.playout.push(packet, now)
        return events

    def send_dtmf(self, digits: str, duration_ms: int = 100) -> None:
        """Queue RFC 4733 digits; they go out on the following ticks, muting audio."""
        event = self.negotiated.telephone_event
        if event is None:
            raise ValueError("the peer did not accept telephone-event")
        for digit in digits:
            self._dtmf_queue.extend(
                dtmf_packets(digit, duration_ms=duration_ms, clock_rate=event.clock_rate)
            )
            self._dtmf_queue.extend([None] * INTER_DIGIT_TICKS)

    @property
    def sending_dtmf(self) -> bool:
        """True while queued telephone-events are still being sent."""
        return bool(self._dtmf_queue)

    def tick(
        self, pcm: bytes | None, now: float, *, marker: bool = False
    ) -> tuple[bytes, list[Transmit]]:
        """One 20 ms step: the frame to play, and what to send (audio or a DTMF packet).
        ``marker``: the audio packet starts a talkspurt (after frames not sent, RFC 3551 4.1)."""
        played = self.playout.pop(now)
        spf = self.codec.samples_per_frame
        out: list[Transmit] = []
        if self._dtmf_queue:
            item = self._dtmf_queue.popleft()
            if item is None:
                self._dtmf_start = None
            else:
                event, marker = item
                if self._dtmf_start is None:
                    self._dtmf_start = self.rtp.next_timestamp
                assert self.negotiated.telephone_event is not None
                pt = self.negotiated.telephone_event.payload_type
                out.append(
                    self.rtp.send(
                        bytes(event),
                        payload_type=pt,
                        samples=spf,
                        now=now,
                        marker=marker,
                        timestamp=self._dtmf_start,
                    )
                )
            self.rtp.advance(spf)
        elif pcm is not None and self._sends:
            payload = self.codec.encode(pcm)
            pt = self.codec.payload_type
            out.append(self.rtp.send(payload, payload_type=pt, samples=spf, now=now, marker=marker))
        else:
            self.rtp.advance(spf)
        return played, out

    def quiet_tick(self, now: float) -> bytes:
        """One 20 ms step that sends nothing (the answer is not out yet): the frame to play.
        Queued DTMF waits for a sending step; the RTP timestamp moves on."""
        self.rtp.advance(self.codec.samples_per_frame)
        return self.playout.pop(now)

    def get_timer(self) -> float:
        """When :meth:`handle_timer` is next due."""
        return self.rtp.get_timer()

    def handle_timer(self, now: float) -> list[RtpEvent]:
        """RTCP reports and the inactivity event."""
        return self.rtp.handle_timer(now)

    def close(self, now: float) -> Transmit:
        """The RTCP BYE to send when the call ends."""
        return self.rtp.close(now)
