"""Errors of the media core (SDP, offer/answer, RTP/RTCP, codecs, files).

All derive from :class:`MediaError`, itself a
:class:`~sessiond.core.errors.SessiondError`, so the one
boundary that turns protocol errors into SIP responses can catch them by type.
"""

from __future__ import annotations

from sessiond.core.errors import SessiondError


class MediaError(SessiondError):
    """Root of every error the media core raises on purpose."""


class SdpError(MediaError):
    """An SDP body does not follow RFC 8866 (or cannot be used at all)."""


class OfferAnswerError(MediaError):
    """An RFC 3264 offer or answer cannot be accepted.

    ``sip_status`` is the SIP response the signalling boundary should send (488 Not Acceptable
    Here unless a subclass says otherwise).
    """

    sip_status: int = 488


class NoCommonCodec(OfferAnswerError):
    """No offered audio stream shares a codec with us (RFC 3264 section 6: answer with 488)."""


class RtpError(MediaError):
    """An RTP or RTCP packet is malformed (RFC 3550 section 5.1 / 6.4)."""


class CodecError(MediaError):
    """A codec is unknown, unavailable, or was fed a frame of the wrong size."""


class WavError(MediaError):
    """A WAV file is malformed or uses an encoding we do not read."""


class CryptoError(SdpError):
    """An ``a=crypto`` attribute (RFC 4568 section 9.1) is malformed or one we cannot use.

    Messages name the offending field but never quote key material.
    """


class NoCommonCrypto(OfferAnswerError):
    """SRTP is required (by RTP/SAVP or our policy) and no ``a=crypto`` line is acceptable.

    RFC 4568 section 7.1.2 / RFC 3264 section 6: the offer cannot be accepted (SIP 488).
    """


class SrtpError(MediaError):
    """libsrtp refused to protect or unprotect a packet; the RTP path counts it and drops it.

    ``reason`` is one of :data:`AUTH`, :data:`REPLAY` or :data:`MALFORMED`, for metrics.
    """

    AUTH = "auth"
    REPLAY = "replay"
    MALFORMED = "malformed"

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"SRTP {reason}: {detail}")
        self.reason = reason
