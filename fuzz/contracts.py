"""The parser contracts the fuzz targets (and tests/hostile) check, without atheris.

Every check takes arbitrary bytes. The contract of each parser: the input either parses (and,
where the module promises it, serializes back and re-parses to the same thing) or raises the
package's typed parse error. Any other exception, or a broken promise (an ``AssertionError``),
is a crash.
"""

from __future__ import annotations

from sessiond.media.errors import RtpError, SdpError
from sessiond.media.rtcp import parse_compound
from sessiond.media.rtp import RtpPacket
from sessiond.media.sdp import SessionDescription
from sessiond.sip.errors import SipParseError
from sessiond.sip.framing import StreamFramer
from sessiond.sip.message import SipRequest, make_response, parse_message
from sessiond.sip.stateless import error_response
from sessiond.sip.validate import check_loop, validate_request

FRAMER_MAX_HEADER = 2048
FRAMER_MAX_BODY = 2048


def _answer(data: bytes, error: SipParseError) -> None:
    """What the edge does with a refused message: a stateless answer, or nothing."""
    assert 400 <= error.status < 600, error.status
    answer = error_response(data, error)
    if answer is not None:
        # Via/From/To/Call-ID/CSeq are copied as received (8.2.6.2), broken ones included,
        # so only our own parts are checked: the status line and the framing.
        assert answer.startswith(b"SIP/2.0 %d " % error.status), answer[:40]
        assert answer.endswith(b"\r\n\r\n") or b"\r\n\r\n" in answer


def check_sip_message(data: bytes, *, stream: bool = False) -> None:
    """``parse_message``: parses and round-trips, or raises SipParseError; then the edge's
    admission path (validate, loop check, stateless answer, a built response) is total too."""
    try:
        msg = parse_message(data, stream=stream)
    except SipParseError as exc:
        _answer(data, exc)
        return
    wire = bytes(msg)
    again = parse_message(wire, stream=stream)
    assert bytes(again) == wire, "a parsed message does not round-trip"
    if not isinstance(msg, SipRequest):
        return
    try:
        validate_request(msg, size=len(data), max_size=65535)
        check_loop(msg, [("127.0.0.1", 5060)])
    except SipParseError as exc:
        _answer(data, exc)
        return
    _views(msg)
    stamped = msg.with_source("127.0.0.1", 5062)
    parse_message(bytes(stamped), stream=stream)
    if msg.method != "ACK":
        resp = make_response(stamped, 200, to_tag="fz")
        parse_message(bytes(resp))


def _views(msg: SipRequest) -> None:
    """The on-demand accessors the transaction layer, edge and mapping read."""
    for via in msg.vias:
        assert via.rport is None or 0 <= via.rport <= 99999
        _ = (via.received, via.branch, via.sent_by, str(via))
    for accessor in (
        lambda: msg.max_forwards,
        msg.contacts,
        msg.request_uri,
        lambda: msg.addresses("Record-Route"),
        lambda: msg.option_tags("Require"),
        lambda: msg.content_type,
    ):
        try:
            accessor()
        except SipParseError:
            pass


def check_framer(chunks: list[bytes]) -> None:
    """``StreamFramer.feed`` on a stream cut into ``chunks``: it returns complete messages
    (each one parses or raises SipParseError), or raises SipParseError 400/513 and then
    refuses more input; it never holds more than its limits plus one read."""
    framer = StreamFramer(max_header=FRAMER_MAX_HEADER, max_body=FRAMER_MAX_BODY)
    fed = out = 0
    for chunk in chunks:
        fed += len(chunk)
        try:
            messages = framer.feed(chunk)
        except SipParseError as exc:
            assert exc.status in (400, 513), exc.status  # noqa: PT017 - not a test
            assert framer.buffered == 0
            try:
                framer.feed(b"OPTIONS")
            except SipParseError:
                return
            raise AssertionError("a failed framer accepted more input") from None
        limit = FRAMER_MAX_HEADER + 4 + FRAMER_MAX_BODY + len(chunk)
        assert framer.buffered <= limit, (framer.buffered, limit)
        for message in messages:
            out += len(message)
            check_sip_message(message, stream=True)
    assert out <= fed


def check_sdp(data: bytes) -> None:
    """``SessionDescription.parse``: parses, serializes and re-parses to an equal object, or
    raises SdpError; the typed views the media node reads are total too."""
    _check_sdp(data)


def _check_sdp(data: bytes) -> None:
    try:
        sd = SessionDescription.parse(data)
    except SdpError:
        return
    wire = bytes(sd)
    assert SessionDescription.parse(wire) == sd, "SDP does not re-parse to itself"
    for section in sd.media:
        sd.media_direction(section)
        try:
            sd.media_connection(section)
        except SdpError:
            pass
        for codec in section.codecs():
            assert codec.rtpmap


def check_rtp(data: bytes) -> None:
    """``RtpPacket.parse``: ``parse(bytes(p)) == p``, or RtpError."""
    try:
        packet = RtpPacket.parse(data)
    except RtpError:
        return
    assert RtpPacket.parse(bytes(packet)) == packet, "RTP packet does not round-trip"


def check_rtcp(data: bytes) -> None:
    """``parse_compound``: every packet re-serialises without error, or RtpError."""
    try:
        packets = parse_compound(data)
    except RtpError:
        return
    assert packets
    for packet in packets:
        bytes(packet)
