"""The one hold rule (RFC 3264 sections 5.1 and 8.4), as the edge and offer/answer use it."""

from __future__ import annotations

import pytest

from sessiond.media.errors import SdpError
from sessiond.media.hold import holds, holds_parsed
from sessiond.media.offer_answer import MediaNegotiator
from sessiond.media.sdp import SessionDescription

from .sdp_samples import CARRIER, CISCO, HOLD_NULL_C, HOLD_SESSION, SOFTPHONE, crlf


def offer(session: str = "", audio: str = "", before: str = "", port: int = 5004) -> bytes:
    """An offer with extra session-level lines, audio-level lines and sections before audio."""
    return crlf(
        "v=0\no=bob 1 1 IN IP4 192.0.2.33\ns=-\nc=IN IP4 192.0.2.33\nt=0 0\n"
        f"{session}{before}m=audio {port} RTP/AVP 0\n{audio}"
    )


@pytest.mark.parametrize(
    ("body", "held"),
    [
        (SOFTPHONE, False),
        (CARRIER, False),
        (CISCO, False),
        (HOLD_SESSION, True),  # session-level sendonly applies to the audio stream
        (HOLD_NULL_C, True),  # RFC 2543 c=0.0.0.0: treated as sendonly (8.4)
        (offer(audio="a=sendonly\n"), True),
        (offer(audio="a=inactive\n"), True),
        (offer(audio="a=recvonly\n"), False),  # the peer still receives: we are not held
        (offer(audio="a=sendrecv\n"), False),
        (offer(session="a=sendonly\n", audio="a=sendrecv\n"), False),  # media level wins (5.1)
        (offer(audio="c=IN IP4 0.0.0.0\n"), True),
        (offer(audio="c=IN IP6 ::\n"), True),
        (offer(session="c=IN IP4 0.0.0.0\n", audio="c=IN IP4 192.0.2.9\n"), False),
        (offer(before="m=video 5006 RTP/AVP 96\na=sendonly\n"), False),  # only audio counts
        (offer(before="m=audio 0 RTP/AVP 0\na=inactive\n"), False),  # rejected: next audio
        (offer(port=0, audio="a=inactive\n"), False),  # no live audio
        (b"not sdp at all", False),
        (b"\xff\xfe", False),
    ],
)
def test_holds(body: bytes, held: bool) -> None:
    assert holds(body) is held
    if body.isascii():  # the edge passes the decoded body
        assert holds(body.decode()) is held


@pytest.mark.parametrize(
    "body",
    [
        HOLD_SESSION,
        HOLD_NULL_C,
        SOFTPHONE,
        offer(audio="a=inactive\n"),
        offer(session="a=sendonly\n", audio="a=sendrecv\n"),
        offer(audio="c=IN IP6 ::\n"),
    ],
)
def test_answerer_agrees(body: bytes) -> None:
    """The media node's answer sees the same hold as the edge's ``held`` field."""
    negotiator = MediaNegotiator(address="198.51.100.1", port=40000)
    _, stream = negotiator.create_answer(SessionDescription.parse(body))
    assert stream.remote_hold is holds(body)


_DIRS = ("", "a=sendonly\n", "a=inactive\n", "a=recvonly\n", "a=sendrecv\n")
_CONNS = ("", "c=IN IP4 192.0.2.9\n", "c=IN IP4 0.0.0.0\n", "c=IN IP6 ::\n")
_BEFORE = ("", "m=video 5006 RTP/AVP 96\na=sendonly\nc=IN IP4 0.0.0.0\n", "m=audio 0 RTP/AVP 0\n")


@pytest.mark.parametrize("before", _BEFORE)
@pytest.mark.parametrize("session_conn", _CONNS)
@pytest.mark.parametrize("session_dir", _DIRS)
def test_the_one_pass_rule_is_the_parsers(before: str, session_conn: str, session_dir: str) -> None:
    """:func:`holds` reads the lines in one pass; on every valid combination of session- and
    media-level direction and connection lines, before and after other sections, it says
    what the full parser's reading (:func:`holds_parsed`) says."""
    for media_dir in _DIRS:
        for media_conn in _CONNS:
            body = crlf(
                f"v=0\no=bob 1 1 IN IP4 192.0.2.33\ns=-\n{session_conn}t=0 0\n{session_dir}"
                f"{before}m=audio 5004 RTP/AVP 0\n{media_conn}{media_dir}"
            )
            try:
                SessionDescription.parse(body)
            except SdpError:
                continue  # no c= for the audio: refused by the negotiation either way
            assert holds(body) is holds_parsed(body), body
