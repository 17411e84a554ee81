"""One RTP leg of the media node: a negotiated :class:`MediaStream` bound to a UDP port pair.

The leg is the thin I/O adapter around the sans-I/O core. It feeds datagrams from its two
sockets (RTP, RTCP) into the stream as they arrive, and the node calls :meth:`Leg.tick` every
20 ms for every leg with audio work (with ``--idle-rtp send``, for every leg). On a tick the
leg chooses the frame to send (the player's, the bridged peer's last decoded frame, or silence
so latching peers and NATs see our RTP), lets the stream packetise it, sends the datagrams,
feeds the recorder and runs the stream's timers (RTCP, inactivity). Under ``--idle-rtp
keepalive`` a bridge relays only what its peer received: a tick with nothing (the peer's
playout gave the shared SILENCE) sends no RTP but the keepalive, the RTP clock runs on and
the next audio packet is marked. A leg with nothing to do
sleeps under ``--idle-rtp keepalive`` (:meth:`Leg.sleep`, :meth:`Leg.idle_tick`: a keepalive
packet now and then, RTCP, the inactivity timer; :mod:`sessiond.media.ticker`) until
:meth:`Leg.wake` (a play, bridge, room, tap, recording, digits, a new negotiation).
Media-caused events (digits, RTP timeout, end of a play) go out through the
``emit`` callback the node gave it.

SRTP (when offer/answer agreed keys, :attr:`NegotiatedStream.crypto`) sits on the wire side
of the stream: every datagram received is unprotected (SRTP or SRTCP, told apart by the
packet type) before the stream sees it, every datagram sent is protected after the stream
made it. A packet libsrtp refuses (authentication, replay, malformed) is counted
(``sessiond_media_srtp_errors_total``) and dropped; the stream, its latching included, only
ever sees authenticated packets.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from sessiond.core.messages import LegEvent
from sessiond.core.types import Event
from sessiond.media import node_metrics as metrics
from sessiond.media.codecs import SILENCE, AudioCodec, G711Codec
from sessiond.media.dtmf import DtmfDigit
from sessiond.media.errors import MediaError, SrtpError
from sessiond.media.offer_answer import RNG, MediaNegotiator, NegotiatedStream
from sessiond.media.playback import Player, Recorder, inband_dtmf
from sessiond.media.ports import PortPair
from sessiond.media.rtp import is_rtcp
from sessiond.media.rtp_session import Address, RtpTimeout, SourceLatched, Transmit
from sessiond.media.srtp import SrtpSession
from sessiond.media.stream import MediaStream
from sessiond.media.ticker import TICK

log = logging.getLogger("sessiond.media")
Emit = Callable[[Event], None]


class _Receiver(asyncio.DatagramProtocol):
    """Hands every datagram of one socket to its leg, with the arrival time."""

    def __init__(self, leg: Leg) -> None:
        self.leg = leg

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.leg.receive(data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable for what we sent: the peer is not listening (yet).
        self.leg.send_errors += 1


class _SilenceCache:
    """A stateless codec (G.711) that encodes the shared SILENCE frame once, not every tick.

    Most legs send silence most of the time; encoding it was a quarter of a leg's tick.
    """

    _encoded: dict[str, bytes] = {}  # codec name -> SILENCE encoded (same for every leg)

    def __init__(self, codec: AudioCodec) -> None:
        self.codec = codec
        self.name = codec.name
        self.clock_rate = codec.clock_rate
        self.payload_type = codec.payload_type
        self.samples_per_frame = codec.samples_per_frame
        silence = self._encoded.get(codec.name)
        if silence is None:
            silence = self._encoded[codec.name] = codec.encode(SILENCE)
        self._silence = silence

    def encode(self, pcm: bytes) -> bytes:
        return self._silence if pcm is SILENCE else self.codec.encode(pcm)

    def decode(self, payload: bytes) -> bytes:
        return self.codec.decode(payload)


class AudioTap:
    """In-process audio for one leg (SimplePeer): 20 ms PCM16 8 kHz mono frames (320 bytes).

    Each tick the leg sends the next frame of ``source`` (when there is no play; silence when
    the queue is empty) and puts the frame it played out (decoded from the far end, silence
    when nothing arrived) into ``sink``, dropping the oldest frame when ``sink`` is full.
    """

    def __init__(self, maxsize: int = 50) -> None:
        self.source: asyncio.Queue[bytes] = asyncio.Queue(maxsize)
        self.sink: asyncio.Queue[bytes] = asyncio.Queue(maxsize)

    def next_frame(self) -> bytes | None:
        """The next frame to send, or None when the application has queued none."""
        try:
            return self.source.get_nowait()
        except asyncio.QueueEmpty:
            return None

    def deliver(self, frame: bytes) -> None:
        """Hand a played-out frame to the application (the oldest is dropped when full)."""
        if self.sink.full():
            self.sink.get_nowait()
        self.sink.put_nowait(frame)


class Leg:
    """A call leg's media: negotiator, stream, sockets, player, recorder, bridge peer."""

    def __init__(
        self,
        media_id: str,
        sid: str,
        negotiator: MediaNegotiator,
        ports: PortPair,
        emit: Emit,
        clock: Callable[[], float],
        *,
        inactivity_timeout: float | None,
        cname: str,
        origin: str,
        latch_private: bool = False,
    ) -> None:
        self.media_id = media_id
        #: called when something gives the leg audio work (a play, a bridge, a room...):
        #: the node's :class:`~sessiond.media.ticker.LegSchedule` ticks it every 20 ms again
        self.on_busy: Callable[[Leg], None] | None = None
        self.closed = False
        #: while the schedule lets the leg sleep: the time its RTP clock was last moved to
        self.idle_from: float | None = None
        self.sleep_token = 0  # which of the schedule's wake-up entries is this leg's
        #: the ``--idle-rtp keepalive`` period (0: ``send``, set by the schedule); a bridged
        #: leg whose peer heard nothing sends nothing but a packet per period
        self.keepalive = 0.0
        self._keepalive_at = 0.0  # (keepalive) when a packet is next due if nothing is sent
        self._marker = False  # the next audio packet follows frames not sent
        self._quiet = False
        self._room_frame: bytes | None = None
        self.latch_private = latch_private  # see MediaStream
        # Media-caused event ids start with the id of the create command: unique per leg even
        # when a session re-creates media under the same media id (the worker would refuse a
        # repeated id as a duplicate), and still deterministic.
        self.origin = origin
        self.sid = sid
        self.negotiator = negotiator
        self.ports = ports
        self.emit = emit
        self.clock = clock
        self.inactivity_timeout = inactivity_timeout
        self.cname = cname
        self.stream: MediaStream | None = None
        self.awaiting_answer = False
        # An answerer's leg sends nothing until its answer has gone out in a 200 or 183
        # (RFC 3264 6): RTP during ringing would replace the caller's local ringback.
        self.ready: Event | None = None  # the MediaReady published for the last offer/answer
        self.player: Player | None = None
        self.recorder: Recorder | None = None
        self.peer: Leg | None = None
        self.tap: AudioTap | None = None
        self.heard = SILENCE  # last frame decoded from the peer (what a bridge relays)
        self.received = 0
        self.sent = 0
        self.send_errors = 0
        self.srtp: SrtpSession | None = None  # None: plain RTP
        self.srtp_errors = 0  # packets refused by libsrtp (dropped)
        self._rtp: asyncio.DatagramTransport | None = None
        self._rtcp: asyncio.DatagramTransport | None = None
        self._digits = 0
        self._timeouts = 0

    @property
    def quiet(self) -> bool:
        """Nothing is sent (an answer not out yet, a leg moving to another node)."""
        return self._quiet

    @quiet.setter
    def quiet(self, value: bool) -> None:
        self._quiet = value
        if not value:
            self.wake()  # its first packet goes out at the next tick (latching, NAT)

    @property
    def room_frame(self) -> bytes | None:
        """What a conference room mixed for this leg last tick (None: in no room)."""
        return self._room_frame

    @room_frame.setter
    def room_frame(self, frame: bytes | None) -> None:
        if frame is not None and self._room_frame is None:
            self.wake()
        self._room_frame = frame

    @property
    def busy(self) -> bool:
        """Something gives or takes this leg's audio every 20 ms: a play, the application's
        tap, a bridge peer, a room, a recording, RFC 4733 digits being sent."""
        stream = self.stream
        return (
            self.player is not None
            or self.tap is not None
            or self.peer is not None
            or self._room_frame is not None
            or self.recorder is not None
            or (stream is not None and stream.sending_dtmf)
        )

    def wake(self) -> None:
        """Tell the schedule this leg has audio work (it ticks every 20 ms again)."""
        if self.on_busy is not None and self.idle_from is not None and not self.closed:
            self.on_busy(self)

    @property
    def port(self) -> int:
        """Our RTP port."""
        return self.ports.port

    async def open(self) -> None:
        """Start receiving on both sockets."""
        loop = asyncio.get_running_loop()
        self._rtp, _ = await loop.create_datagram_endpoint(
            lambda: _Receiver(self), sock=self.ports.rtp
        )
        self._rtcp, _ = await loop.create_datagram_endpoint(
            lambda: _Receiver(self), sock=self.ports.rtcp
        )

    def negotiated(self, result: NegotiatedStream) -> None:
        """Start sending/receiving per an offer/answer outcome (first, or a re-negotiation)."""
        crypto = result.crypto
        if crypto is None:
            self.srtp = None
        elif self.srtp is None:
            self.srtp = SrtpSession.from_negotiated(crypto)
        else:
            self.srtp = self.srtp.rekeyed(crypto)
        stream = self.stream
        if stream is not None and stream.negotiated.codec == result.codec:
            stream.update(result)
            self.wake()  # e.g. resumed from hold: tell the peer at once
            return
        self.stream = MediaStream(
            result,
            now=self.clock(),
            rng=RNG,
            cname=self.cname,
            inactivity_timeout=self.inactivity_timeout,
            latch_private=self.latch_private,
        )
        if isinstance(self.stream.codec, G711Codec):
            self.stream.codec = _SilenceCache(self.stream.codec)
        self.wake()  # a new stream sends its first packet at once

    # -- receiving ----------------------------------------------------------------------------

    def receive(self, data: bytes, source: Address) -> None:
        """One datagram from either socket (RTCP is told apart by its payload type)."""
        stream = self.stream
        if stream is None:
            return  # our offer is not answered yet: we do not know what to expect
        self.received += 1
        srtp = self.srtp
        if srtp is not None:
            try:
                data = srtp.unprotect_rtcp(data) if is_rtcp(data) else srtp.unprotect(data)
            except SrtpError as exc:
                self._srtp_failed("in", exc)
                return
        try:
            events = stream.receive(data, source, self.clock())
        except MediaError as exc:  # e.g. a malformed telephone-event payload
            log.debug("%s: dropped datagram from %s: %s", self.media_id, source, exc)
            return
        for event in events:
            if isinstance(event, DtmfDigit):
                self._digits += 1
                self._emit(f"{self.origin}:dtmf:{self._digits}", "DtmfReceived", digit=event.digit)
            elif isinstance(event, SourceLatched):
                log.info("%s: latched to %s", self.media_id, event.address)

    # -- the 20 ms tick -----------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Send one frame, record one frame, run the stream's timers."""
        stream = self.stream
        if stream is None:
            return
        pcm: bytes | None
        if self._quiet:  # nothing goes out; players and queued DTMF wait
            pcm = SILENCE
            self.heard = stream.quiet_tick(now)
        else:
            pcm = self._outgoing()
            if pcm is None:  # a bridge with nothing to relay: no packet, the clock runs on
                self._marker = True  # (the next audio packet starts a talkspurt)
                if now >= self._keepalive_at:  # ... but for the NAT keepalive
                    pcm = SILENCE
            if self._marker and pcm is not None:  # the first frame after frames not sent
                self._marker = False
                self.heard, out = stream.tick(pcm, now, marker=True)
            else:
                self.heard, out = stream.tick(pcm, now)
            if out:
                self._keepalive_at = now + self.keepalive
                for transmit in out:
                    self._send(self._rtp, transmit)
        if self.recorder is not None:
            self.recorder.write(self.heard, SILENCE if pcm is None else pcm)
        if self.tap is not None:
            self.tap.deliver(self.heard)
        if now >= stream.get_timer():
            self._timers(stream, now)

    def _timers(self, stream: MediaStream, now: float) -> None:
        """RTCP reports and the RtpTimeout event, when due."""
        if now >= stream.get_timer():
            for event in stream.handle_timer(now):
                if isinstance(event, Transmit):
                    self._send(self._rtcp if stream.rtp.remote_rtcp else self._rtp, event)
                elif isinstance(event, RtpTimeout):
                    self._timeouts += 1
                    self._emit(f"{self.origin}:timeout:{self._timeouts}", "RtpTimeout")

    # -- idle: what the schedule does for a leg with no audio work ------------------------

    def sleep(self, now: float, keepalive: float) -> float:
        """The leg was ticked at ``now`` and has no audio work: stop decoding what arrives
        and return when :meth:`idle_tick` is next due (its RTCP, its inactivity timer, or
        the next keepalive packet, ``keepalive`` seconds after the last)."""
        self.idle_from = now
        self.heard = SILENCE
        self._keepalive_at = now + keepalive
        stream = self.stream
        if stream is None:
            return self._keepalive_at
        stream.deafen()
        return min(stream.get_timer(), self._keepalive_at)

    def idle_tick(self, now: float, keepalive: float) -> float:
        """A sleeping leg's visit: one silence packet if the keepalive is due (marked, its
        timestamp moved on by the frames not sent), RTCP and the inactivity timer; returns
        the next visit's time."""
        stream = self.stream
        if now >= self._keepalive_at:
            self._keepalive_at = now + keepalive
            if stream is not None:
                self._catch_up(stream, now)
                if self._quiet:
                    stream.rtp.advance(stream.codec.samples_per_frame)
                else:
                    _, out = stream.tick(SILENCE, now, marker=True)
                    for transmit in out:
                        self._send(self._rtp, transmit)
                self.idle_from = now
        if stream is None:
            return self._keepalive_at
        self._timers(stream, now)
        return min(stream.get_timer(), self._keepalive_at)

    def _catch_up(self, stream: MediaStream, now: float) -> None:
        """Move the RTP clock over the frames not sent since ``idle_from`` (the tick that
        follows sends the frame of ``now``)."""
        assert self.idle_from is not None
        skipped = round((now - self.idle_from) / TICK) - 1
        if skipped > 0:
            stream.rtp.advance(skipped * stream.codec.samples_per_frame)

    def resume(self, now: float) -> None:
        """Back on the 20 ms tick (the schedule woke it): the clock moves on to ``now``,
        playout starts afresh, the next audio packet is marked."""
        stream = self.stream
        if self.idle_from is None:
            return
        if stream is not None:
            self._catch_up(stream, now)
            stream.listening = True
        self.idle_from = None
        self._marker = True

    def _outgoing(self) -> bytes | None:
        """The frame to send this tick; None for a bridge that has nothing to relay under
        ``--idle-rtp keepalive`` (the peer's playout gave the shared SILENCE: nothing it
        received is in the frame)."""
        player = self.player
        if player is not None:
            frame = player.next_frame()
            if frame is not None:
                return frame
            self.stop_play("done")
        if self.tap is not None:
            frame = self.tap.next_frame()
            if frame is not None:
                return frame
        if self._room_frame is not None:
            return self._room_frame
        peer = self.peer
        if peer is not None:
            heard = peer.heard
            if heard is SILENCE and self.keepalive:
                return None
            return heard
        return SILENCE

    def _send(self, transport: asyncio.DatagramTransport | None, transmit: Transmit) -> None:
        if transport is None or transport.is_closing() or self._quiet:
            return
        stream = self.stream
        if stream is not None and stream.latch_private and not stream.sendable(transmit):
            return
        data = transmit.data
        srtp = self.srtp
        if srtp is not None:
            try:
                data = srtp.protect_rtcp(data) if is_rtcp(data) else srtp.protect(data)
            except SrtpError as exc:
                self._srtp_failed("out", exc)
                return
        self.sent += 1
        transport.sendto(data, transmit.address)

    def _srtp_failed(self, direction: str, exc: SrtpError) -> None:
        self.srtp_errors += 1
        metrics.SRTP_ERRORS.labels(direction, exc.reason).inc()
        log.debug("%s: dropped an SRTP packet (%s): %s", self.media_id, direction, exc.reason)

    def _emit(self, event_id: str, event_type: str, **data: Any) -> None:
        record = LegEvent(media_id=self.media_id, **data)
        self.emit(Event(event_id, event_type, record.data(), self.sid))

    def attach_audio(self, tap: AudioTap | None) -> None:
        """Exchange audio with this process through ``tap`` (None detaches it)."""
        self.tap = tap
        if tap is not None:
            self.wake()

    # -- play, record, DTMF -------------------------------------------------------------------

    def play(self, player: Player) -> None:
        """Start a play, ending the current one (its PlayFinished says ``stopped``)."""
        self.stop_play("stopped")
        self.player = player
        self.wake()

    def stop_play(self, reason: str) -> None:
        """End the current play, if any, and publish its PlayFinished."""
        player, self.player = self.player, None
        if player is not None and player.event_id is not None:
            self._emit(player.event_id, "PlayFinished", reason=reason)

    def send_dtmf(self, digits: str, duration_ms: int) -> None:
        """RFC 4733 events if the peer accepted telephone-event, else in-band tones."""
        stream = self.stream
        if stream is None:
            raise MediaError("no negotiated stream yet")
        if stream.negotiated.telephone_event is not None:
            stream.send_dtmf(digits, duration_ms)
            self.wake()
        else:
            self.play(Player(None, frames=inband_dtmf(digits, duration_ms)))

    def record(self, recorder: Recorder, command_id: str) -> None:
        """Start recording (a recording in progress is stopped first)."""
        self.stop_record(command_id)
        self.recorder = recorder
        self.wake()

    def stop_record(self, command_id: str) -> None:
        """Close the recording, if any, and publish RecordingStopped."""
        recorder, self.recorder = self.recorder, None
        if recorder is None:
            return
        seconds = recorder.close()
        self._emit(
            f"{command_id}:recorded",
            "RecordingStopped",
            path=recorder.path,
            seconds=seconds,
            reason="stopped",
        )

    # -- bridge and end -----------------------------------------------------------------------

    def bridge(self, other: Leg) -> None:
        """Relay audio both ways between this leg and ``other`` (each side encodes its own)."""
        self.unbridge()
        other.unbridge()
        self.peer, other.peer = other, self
        self.wake()
        other.wake()

    def unbridge(self) -> None:
        """Stop relaying (both directions)."""
        peer, self.peer = self.peer, None
        if peer is not None and peer.peer is self:
            peer.peer = None

    def close(self, command_id: str) -> None:
        """Stop everything: RTCP BYE, recording closed, sockets closed. The port is then free."""
        self.closed = True
        self.unbridge()
        self.stop_play("stopped")
        self.stop_record(command_id)
        stream = self.stream
        if stream is not None:
            bye = stream.close(self.clock())
            self._send(self._rtcp if stream.rtp.remote_rtcp else self._rtp, bye)
        for transport, sock in ((self._rtp, self.ports.rtp), (self._rtcp, self.ports.rtcp)):
            if transport is None:
                sock.close()
            else:
                transport.close()
