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

    A body without live audio holds nothing (nor, in :func:`holds_parsed`, one the parser
    refuses: the negotiation rejects those either way). The edge asks this of every request
    with SDP, so the rule is read from the lines in one pass (about 2 us) instead of through
    :meth:`SessionDescription.parse` (about 25 us); ``tests/media/test_hold.py`` checks that
    the two agree.
    """
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    session_dir = media_dir = ""
    session_null = media_null = None
    in_audio = False  # inside the first live audio section
    seen_media = False
    for raw in text.splitlines():
        line = raw.strip()
        kind, eq, value = line.partition("=")
        if not eq or len(kind) != 1:
            continue
        if kind == "m":
            if in_audio:
                break
            seen_media = True
            fields = value.split()
            in_audio = len(fields) >= 3 and fields[0] == "audio" and fields[1].split("/")[0] != "0"
        elif kind == "a" and value in _DIRECTIONS:
            if in_audio:
                media_dir = value
            elif not seen_media:
                session_dir = value
        elif kind == "c":
            null = value.split()[-1:] in (["0.0.0.0"], ["::"])
            if in_audio:
                media_null = null
            elif not seen_media:
                session_null = null
    else:
        if not in_audio:
            return False
    direction = media_dir or session_dir or "sendrecv"
    null = media_null if media_null is not None else bool(session_null)
    return null or direction in ("sendonly", "inactive")


_DIRECTIONS = frozenset({"sendrecv", "sendonly", "recvonly", "inactive"})


def holds_parsed(body: str | bytes) -> bool:
    """:func:`holds` through the full parser (the reference its tests compare against)."""
    try:
        sdp = SessionDescription.parse(body)
    except SdpError:
        return False
    for section in sdp.media:
        if section.media == "audio" and not section.rejected:
            return not peer_direction(sdp, section).receives
    return False
