"""The one hold rule: does an SDP body put its receiver on hold (RFC 3264 section 8.4)?

The edge marks each request's offer ``held`` with it and the offer/answer negotiation reads
the peer's direction with it, so the table and the media node cannot disagree on a hold.
"""

from __future__ import annotations

from sessiond.media.errors import SdpError
from sessiond.media.sdp import Direction, MediaDescription, SessionDescription


def peer_direction(sdp: SessionDescription, section: MediaDescription) -> Direction:
    """The writer's direction for a section, with the RFC 2543 ``c=0.0.0.0`` hold read as
    "does not receive".

    RFC 3264 section 5.1: a media-level direction attribute overrides a session-level one.
    Section 8.4: an offerer may still use the old form of hold (connection address 0.0.0.0);
    an answerer must treat it as if the stream were marked sendonly. The ``c=`` that applies
    is the media-level one, else the session-level one.
    """
    direction = sdp.media_direction(section)
    conn = section.connection or sdp.connection
    if conn is not None and conn.is_null:
        direction = Direction.from_flags(sends=direction.sends, receives=False)
    return direction


def holds(body: str | bytes) -> bool:
    """True when this SDP puts its receiver on hold: the writer does not want to receive on
    the first live audio stream (sendonly or inactive, or ``c=0.0.0.0``), the stream that
    offer/answer negotiates.

    An unparsable body or one without live audio holds nothing: the negotiation rejects it.
    """
    try:
        sdp = SessionDescription.parse(body)
    except SdpError:
        return False
    for section in sdp.media:
        if section.media == "audio" and not section.rejected:
            return not peer_direction(sdp, section).receives
    return False
