"""The TCP stream framer, fed whole and one byte at a time (RFC 3261 18.3)."""

from __future__ import annotations

import pytest

from sessiond.sip.errors import SipParseError
from sessiond.sip.framing import StreamFramer
from sessiond.sip.message import SipRequest, SipResponse, parse_message

from .rfc4475 import DBLREQ_FIRST, ESC01, MPART01, NOREASON, UNREASON, WSINV

MESSAGES = [WSINV, DBLREQ_FIRST, MPART01, UNREASON, NOREASON, ESC01]
STREAM = b"\r\n".join(MESSAGES) + b"\r\n\r\n"  # CRLFs between messages, a final ping


def _feed_in_chunks(data: bytes, size: int) -> tuple[list[bytes], StreamFramer]:
    framer = StreamFramer()
    out: list[bytes] = []
    for i in range(0, len(data), size):
        out += framer.feed(data[i : i + size])
    return out, framer


@pytest.mark.parametrize("size", [len(STREAM), 1, 7, 1000])
def test_stream_split_into_the_original_messages(size: int) -> None:
    out, framer = _feed_in_chunks(STREAM, size)
    assert out == MESSAGES
    assert framer.buffered == 0
    for raw in out:
        msg = parse_message(raw, stream=True)
        assert isinstance(msg, SipRequest | SipResponse)
        assert bytes(msg) == raw


def test_keepalive_pings_are_counted_and_skipped() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r\n\r\n\r\n") == []
    assert framer.pings == 2
    assert framer.feed(NOREASON) == [NOREASON]


@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_a_ping_split_across_reads_is_one_ping_and_a_lone_crlf_none(size: int) -> None:
    out, framer = _feed_in_chunks(b"\r\n\r\n" + NOREASON + b"\r\n" + NOREASON, size)
    assert out == [NOREASON, NOREASON]
    assert framer.pings == 1  # the CRLF between the messages is not a ping
    assert framer.feed(b"\r\n") == []
    assert framer.pings == 1  # a lone CRLF (a pong) asks for nothing
    assert framer.feed(b"\r\n") == []
    assert framer.pings == 2  # with the previous one, CRLFCRLF


def test_partial_message_waits_for_the_body() -> None:
    framer = StreamFramer()
    assert framer.feed(WSINV[:-10]) == []
    assert framer.buffered == len(WSINV) - 10
    assert framer.feed(WSINV[-10:] + WSINV[:5]) == [WSINV]
    assert framer.buffered == 5


def test_oversized_header_section_is_513_and_poisons_the_stream() -> None:
    framer = StreamFramer(max_header=200)
    with pytest.raises(SipParseError) as exc:
        framer.feed(b"INVITE sip:a@b SIP/2.0\r\nX: " + b"a" * 300)
    assert exc.value.status == 513
    assert framer.buffered == 0
    with pytest.raises(SipParseError):
        framer.feed(NOREASON)


def test_oversized_body_is_513_before_it_is_buffered() -> None:
    framer = StreamFramer(max_body=100)
    with pytest.raises(SipParseError) as exc:
        framer.feed(WSINV[: WSINV.index(b"\r\n\r\n") + 4])
    assert exc.value.status == 513


def test_missing_content_length_on_a_stream_is_400() -> None:
    framer = StreamFramer()
    with pytest.raises(SipParseError) as exc:
        framer.feed(b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bKx\r\n\r\n")
    assert exc.value.status == 400
    assert "Content-Length" in exc.value.problem
