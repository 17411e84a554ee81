"""The offer/answer model (RFC 3264) for one audio stream, sans-I/O.

Theory of operation: a :class:`MediaNegotiator` is one side of one call leg. It owns the local
SDP origin (session id fixed for the leg, version bumped whenever the body we send changes:
RFC 3264 section 8) and produces either an offer (:meth:`create_offer`, then
:meth:`process_answer`) or an answer (:meth:`create_answer`). Either way the result is a
:class:`NegotiatedStream`: the codec to send, the payload types to expect, the remote transport
address, ptime, telephone-event payload type and directions. The media process builds its RTP
session from that and nothing else.

We carry one audio stream. Further audio streams, video and T.38 (``m=image ... udptl t38``)
are answered as rejected streams (port 0), one answer line per offered line, in order (RFC
3264 section 6). An offer whose every audio stream lacks a common codec raises
:class:`~sessiond.media.errors.NoCommonCodec`, which maps to SIP 488.

SRTP (SDES, RFC 4568) follows the leg's :class:`~sessiond.media.sdes_sdp.SrtpPolicy`
(:mod:`sessiond.media.sdes_sdp` says what each policy offers and accepts): the agreed keys
are in :attr:`NegotiatedStream.crypto`. An audio stream whose crypto cannot be agreed is
rejected like one without a common codec (and :class:`~sessiond.media.errors.NoCommonCrypto`
is raised when no stream is left). A re-offer offers the keys the stream runs (or, before
any answer, the lines offered last) again, and a re-answer keeps our key when the suite
stays: the SRTP sender goes on unchanged (RFC 4568 section 7.1.4 allows either).
"""

from __future__ import annotations

import dataclasses
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass

from sessiond.media.errors import NoCommonCodec, NoCommonCrypto, OfferAnswerError
from sessiond.media.hold import peer_direction
from sessiond.media.sdes import CryptoAttribute, KeyParams, NegotiatedCrypto
from sessiond.media.sdes_sdp import SrtpPolicy, accept_section, answer_section, offer_section
from sessiond.media.sdp import (
    Codec,
    Connection,
    Direction,
    Line,
    MediaDescription,
    Origin,
    SessionDescription,
    attribute_line,
)

TELEPHONE_EVENT = "telephone-event"
DEFAULT_PTIME_MS = 20
# Profiles we can carry: plain RTP, AVPF which is AVP plus feedback we may ignore, and their
# SRTP forms (RFC 3711 section 12, RFC 5124), which the SRTP policy then accepts or refuses.
SUPPORTED_PROFILES = frozenset({"RTP/AVP", "RTP/AVPF", "RTP/SAVP", "RTP/SAVPF"})

#: The random source of session ids, SSRCs, initial sequence numbers and timestamps: one per
#: process, seeded from the OS once (seeding a ``random.Random()`` per leg was a noticeable
#: part of creating one), and again in a forked child so parent and child do not repeat.
RNG = random.Random()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=RNG.seed)

DEFAULT_CODECS: tuple[Codec, ...] = (
    Codec(0, "PCMU", 8000),
    Codec(8, "PCMA", 8000),
    Codec(111, "opus", 48000, 2, "useinbandfec=1"),
    Codec(101, TELEPHONE_EVENT, 8000, 1, "0-16"),
)


def is_telephone_event(codec: Codec) -> bool:
    """True for RFC 4733 ``telephone-event`` payload formats."""
    return codec.name.lower() == TELEPHONE_EVENT


def _same_codec(a: Codec, b: Codec) -> bool:
    # RFC 7587 section 7: opus is always "opus/48000/2"; tolerate peers that omit the "/2".
    if a.name.lower() == "opus" and b.name.lower() == "opus":
        return a.clock_rate == b.clock_rate
    # telephone-event runs at the clock of the audio codec it goes with (RFC 4733 section 2.1):
    # we accept it at any rate and keep only rates of accepted audio codecs.
    if is_telephone_event(a) and is_telephone_event(b):
        return True
    return a.same_format(b)


@dataclass(frozen=True, slots=True)
class NegotiatedStream:
    """The outcome of one offer/answer exchange for our audio stream.

    ``codec`` is what we send (with the payload type the peer expects); ``codecs`` are all
    audio formats both sides accepted (the peer may switch among them); ``direction`` is what
    *we* do (sendonly means we send and do not expect media); ``remote_hold`` is True when the
    peer put us on hold (sendonly/inactive, or the RFC 2543 ``c=0.0.0.0`` form).
    """

    index: int
    codec: Codec
    codecs: tuple[Codec, ...]
    telephone_event: Codec | None
    remote_address: str
    remote_port: int
    remote_rtcp_port: int
    rtcp_mux: bool
    ptime_ms: int
    direction: Direction
    remote_hold: bool
    crypto: NegotiatedCrypto | None = None  # SRTP keys agreed (SDES), None for plain RTP

    def codec_for(self, payload_type: int) -> Codec | None:
        """The accepted codec (audio or telephone-event) with this payload type."""
        candidates = self.codecs + ((self.telephone_event,) if self.telephone_event else ())
        return next((c for c in candidates if c.payload_type == payload_type), None)


def _rtcp_port(section: MediaDescription, mux: bool) -> int:
    """``a=rtcp:<port>`` (RFC 3605 section 2.1), else RTP port + 1 (RFC 3550 section 11)."""
    if mux:
        return section.port
    value = section.attribute("rtcp")
    if value is not None and value.split()[0].isdigit():
        return int(value.split()[0])
    return section.port + 1


def _rejected(section: MediaDescription) -> MediaDescription:
    """RFC 3264 section 6: a rejected stream has port 0 and keeps the offered formats."""
    return MediaDescription(section.media, 0, section.proto, section.formats)


class MediaNegotiator:
    """One side of the SDP offer/answer for one call leg (RFC 3264)."""

    def __init__(
        self,
        address: str,
        port: int,
        codecs: Sequence[Codec] = DEFAULT_CODECS,
        *,
        session_id: int | None = None,
        username: str = "sessiond",
        ptime_ms: int = DEFAULT_PTIME_MS,
        rng: random.Random | None = None,
        previous: Origin | None = None,
        srtp: SrtpPolicy = SrtpPolicy.OFF,
    ) -> None:
        self.address = address
        self.srtp = srtp
        #: the SRTP keys the stream runs now, and the a=crypto lines of our last offer
        self.crypto: NegotiatedCrypto | None = None
        self._crypto_offer: tuple[CryptoAttribute, ...] = ()
        self.port = port
        self.codecs = tuple(codecs)
        self.ptime_ms = ptime_ms
        rng = rng or RNG
        sid = session_id if session_id is not None else rng.randrange(1, 2**62)
        self._origin = Origin(username, sid, sid, "IN", _addrtype(address), address)
        self._last_body: str | None = None
        if previous is not None:
            # This leg replaces one the far end knows (its media node was lost): keep that
            # o= username and session id, and make our first SDP a higher version, so the far
            # end sees a changed description of the same session (RFC 3264 section 8).
            self._origin = dataclasses.replace(
                self._origin,
                username=previous.username,
                session_id=previous.session_id,
                version=previous.version,
            )
            self._last_body = ""  # differs from any body: the first SDP bumps the version
        self._pending_offer: SessionDescription | None = None
        self._answered_offer: SessionDescription | None = None
        self.local: SessionDescription | None = None

    @property
    def origin(self) -> Origin:
        """The ``o=`` line of the last SDP we produced (or will produce next)."""
        return self._origin

    # -- offerer ------------------------------------------------------------------------------

    def create_offer(self, direction: Direction = Direction.SENDRECV) -> SessionDescription:
        """An offer (initial, or a re-offer: hold with ``SENDONLY``, resume with ``SENDRECV``).

        The re-offer keeps the session id and increments the version when anything changed.
        """
        section = self._audio_section(self.port, "RTP/AVP", self.codecs, direction, mux=False)
        section, self._crypto_offer = offer_section(section, self.srtp, lines=self._offer_lines())
        offer = self._finish(section_list=[section])
        self._pending_offer = offer
        return offer

    def process_answer(
        self, answer: SessionDescription, *, again: bool = False
    ) -> NegotiatedStream:
        """Apply the answer to our pending offer and return what was agreed. ``again``: a
        second answer to our last offer replaces the first (the 2xx after an unreliable
        183 may carry a different one, RFC 3261 13.2.1)."""
        offer = self._pending_offer or (self._answered_offer if again else None)
        if offer is None:
            raise OfferAnswerError("received an answer but no offer is pending")
        if len(answer.media) != len(offer.media):
            raise OfferAnswerError(
                f"answer has {len(answer.media)} m= lines, offer had {len(offer.media)} "
                "(RFC 3264 section 6)"
            )
        self._pending_offer = None
        self._answered_offer = offer
        offered_dir = offer.media_direction(offer.media[0])
        section = answer.media[0]
        if section.rejected or section.media != "audio":
            raise NoCommonCodec("the answer rejected our audio stream")
        accepted = [c for c in section.codecs() if any(_same_codec(c, o) for o in self.codecs)]
        audio = [c for c in accepted if not is_telephone_event(c)]
        if not audio:
            raise NoCommonCodec("the answer contains none of the codecs we offered")
        remote_dir = peer_direction(answer, section)
        ours = Direction.from_flags(
            sends=offered_dir.sends and remote_dir.receives,
            receives=offered_dir.receives and remote_dir.sends,
        )
        crypto = accept_section(section, self._crypto_offer, self.srtp, self.crypto)
        self.crypto = crypto
        result = self._negotiated(answer, 0, audio, accepted, ours, remote_dir)
        return dataclasses.replace(result, crypto=crypto)

    def _offer_lines(self) -> tuple[CryptoAttribute, ...]:
        """What a re-offer offers: the line the stream runs (our key), else our last lines."""
        crypto = self.crypto
        if crypto is None:
            return self._crypto_offer
        return (CryptoAttribute(crypto.tag, crypto.suite, (KeyParams(crypto.local_key),)),)

    # -- answerer -----------------------------------------------------------------------------

    def create_answer(
        self, offer: SessionDescription, direction: Direction = Direction.SENDRECV
    ) -> tuple[SessionDescription, NegotiatedStream]:
        """Answer an offer: one m= line per offered m= line, our audio in the offerer's order.

        ``direction`` is what we want (SENDONLY to put the peer on hold while answering); the
        answer direction is that intersected with the reverse of the offer's (RFC 3264
        section 6.1: sendonly is answered recvonly, inactive inactive).
        """
        sections: list[MediaDescription] = []
        result: NegotiatedStream | None = None
        refused: NoCommonCrypto | None = None
        for index, offered in enumerate(offer.media):
            accepted = self._acceptable(offered) if result is None else []
            audio = [c for c in accepted if not is_telephone_event(c)]
            if not audio:
                sections.append(_rejected(offered))
                continue
            remote_dir = peer_direction(offer, offered)
            ours = Direction.from_flags(
                sends=direction.sends and remote_dir.receives,
                receives=direction.receives and remote_dir.sends,
            )
            mux = offered.has_attribute("rtcp-mux")
            section = self._audio_section(self.port, offered.proto, accepted, ours, mux)
            try:
                section, crypto = answer_section(offered, section, self.srtp, reuse=self.crypto)
            except NoCommonCrypto as exc:
                refused = refused or exc
                sections.append(_rejected(offered))
                continue
            sections.append(section)
            result = self._negotiated(offer, index, audio, accepted, ours, remote_dir)
            result = dataclasses.replace(result, crypto=crypto)
        if result is None:
            if refused is not None:
                raise refused
            raise NoCommonCodec("no offered audio stream has a codec in common with us")
        self.crypto = result.crypto
        return self._finish(sections), result

    def _acceptable(self, offered: MediaDescription) -> list[Codec]:
        """Offered codecs we support, in the offerer's order, with the offerer's payload types.

        RFC 3264 section 6.1: the answer lists a subset of the offered formats and uses the
        offerer's payload type numbers. telephone-event is kept only at a clock rate of an
        accepted audio codec (RFC 4733 section 2.1).
        """
        if offered.rejected or offered.media != "audio" or offered.proto not in SUPPORTED_PROFILES:
            return []
        common: list[Codec] = []
        for codec in offered.codecs():
            local = next((c for c in self.codecs if _same_codec(c, codec)), None)
            if local is not None:
                fmtp = codec.fmtp if is_telephone_event(codec) else local.fmtp
                if fmtp != codec.fmtp:
                    codec = Codec(
                        codec.payload_type, codec.name, codec.clock_rate, codec.channels, fmtp
                    )
                common.append(codec)
        rates = {c.clock_rate for c in common if not is_telephone_event(c)}
        return [c for c in common if not is_telephone_event(c) or c.clock_rate in rates]

    # -- shared -------------------------------------------------------------------------------

    def _negotiated(
        self,
        sdp: SessionDescription,
        index: int,
        audio: list[Codec],
        accepted: list[Codec],
        ours: Direction,
        remote_dir: Direction,
    ) -> NegotiatedStream:
        section = sdp.media[index]
        events = [c for c in accepted if is_telephone_event(c)]
        event = next((e for e in events if e.clock_rate == audio[0].clock_rate), None)
        mux = section.has_attribute("rtcp-mux")
        return NegotiatedStream(
            index=index,
            codec=audio[0],
            codecs=tuple(audio),
            telephone_event=event,
            remote_address=sdp.media_connection(section).host,
            remote_port=section.port,
            remote_rtcp_port=_rtcp_port(section, mux),
            rtcp_mux=mux,
            ptime_ms=section.ptime or DEFAULT_PTIME_MS,
            direction=ours,
            remote_hold=not remote_dir.receives,
        )

    def _audio_section(
        self, port: int, proto: str, codecs: Sequence[Codec], direction: Direction, mux: bool
    ) -> MediaDescription:
        lines: list[Line] = []
        for codec in codecs:
            lines.append(attribute_line("rtpmap", codec.rtpmap))
            if codec.fmtp:
                lines.append(attribute_line("fmtp", f"{codec.payload_type} {codec.fmtp}"))
        lines.append(attribute_line("ptime", str(self.ptime_ms)))
        if mux:
            lines.append(attribute_line("rtcp-mux"))
        lines.append(attribute_line(direction.value))
        formats = tuple(str(c.payload_type) for c in codecs)
        return MediaDescription("audio", port, proto, formats, tuple(lines))

    def _finish(self, section_list: list[MediaDescription]) -> SessionDescription:
        """Wrap media sections in session lines; bump o= version if the body changed."""
        conn = Connection("IN", _addrtype(self.address), self.address)
        o = self._origin
        origin = Origin(o.username, o.session_id, o.version, o.nettype, conn.addrtype, self.address)
        session = (
            Line("v", "0"),
            Line("o", str(origin)),
            Line("s", "-"),
            Line("c", str(conn)),
            Line("t", "0 0"),
        )
        sdp = SessionDescription(session, tuple(section_list))
        body = str(sdp).split("\r\n", 2)[2]
        if self._last_body is not None and body != self._last_body:
            origin = Origin(
                origin.username,
                origin.session_id,
                origin.version + 1,
                origin.nettype,
                origin.addrtype,
                origin.address,
            )
            sdp = sdp.with_origin(origin)
        self._last_body = body
        self._origin = origin
        self.local = sdp
        return sdp


def _addrtype(address: str) -> str:
    return "IP6" if ":" in address else "IP4"
