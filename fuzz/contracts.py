"""The parser contracts the fuzz targets (and tests/hostile) check, without atheris.

Every check takes arbitrary bytes. The contract of each parser: the input either parses (and,
where the module promises it, serializes back and re-parses to the same thing) or raises the
package's typed parse error. Any other exception, or a broken promise (an ``AssertionError``),
is a crash.
"""

from __future__ import annotations

from typing import Any

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


class _EdgePath:
    """An edge with no sockets and no Redis: ``on_message`` runs its whole inbound path
    (parse, validation, transaction layer, mapping to an event, ``encode_event`` with the
    real msgpack) and leaves what it would publish in its outbox, which is then encoded as
    redis-py encodes a command's arguments. Limits that would refuse most inputs (rate
    limit, overload shedding) are opened; the early-request window is over."""

    def __init__(self) -> None:
        import logging

        from redis.connection import Encoder

        logging.disable(logging.CRITICAL)  # "no UDP socket" for every answer
        self.encoder = Encoder("utf-8", "strict", False)
        self.runs = 0
        self.edge = self._new()

    def _new(self) -> Any:
        from sessiond.edge.process import Edge
        from sessiond.store import Keys

        edge = Edge(
            None,
            Keys("fuzz"),
            "fz",
            [],
            rate_limit=1e12,
            rate_burst=1e12,
            shed_lag=1 << 60,
            shed_delay=1e12,
        )
        edge.started = -1e12
        edge.transports.send = self._send  # no sockets
        return edge

    @staticmethod
    def _send(transport: str, addr: tuple[str, int], data: bytes) -> None:
        assert transport in ("UDP", "TCP"), transport
        assert isinstance(data, bytes), type(data)
        assert data.startswith(b"SIP/2.0 "), data[:40]

    def feed(self, data: bytes, transport: str) -> None:
        self.runs += 1
        if self.runs % 512 == 0:  # its timers never run here: a new edge now and then
            self.edge = self._new()
        edge = self.edge
        edge.on_message(data, transport, ("127.0.0.1", 5062))
        batch = edge.outbox.take()
        for op, key, value in batch:
            self.encoder.encode(key)
            if op == "xadd":
                for name, field in value.items():
                    self.encoder.encode(name)
                    self.encoder.encode(field)
            else:
                self.encoder.encode(value)


_EDGE_PATH: _EdgePath | None = None


def check_edge_path(data: bytes) -> None:
    """The edge's path from datagram (and TCP message) to published event never raises: a
    request or response it cannot take is answered or dropped, and everything it publishes
    (events, answered-request records, their stream and key names) can be sent to Redis."""
    global _EDGE_PATH
    if _EDGE_PATH is None:
        _EDGE_PATH = _EdgePath()
    _EDGE_PATH.feed(data, "UDP")
    _EDGE_PATH.feed(data, "TCP")
