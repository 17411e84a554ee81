"""SDP model: parsing, typed views, byte-for-byte round trip, errors."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessiond.core.errors import SessiondError
from sessiond.media.errors import MediaError, SdpError
from sessiond.media.sdp import Codec, Direction, Line, SessionDescription

from .sdp_samples import AUDIO_T38, CARRIER, CISCO, HOLD_SESSION, SOFTPHONE, crlf

ALL_SAMPLES = [SOFTPHONE, CARRIER, CISCO, AUDIO_T38, HOLD_SESSION]


@pytest.mark.parametrize("body", ALL_SAMPLES)
def test_round_trip_is_byte_identical(body: bytes) -> None:
    assert bytes(SessionDescription.parse(body)) == body


def test_bare_lf_is_accepted_and_written_back_with_crlf() -> None:
    lf = CARRIER.replace(b"\r\n", b"\n")
    assert bytes(SessionDescription.parse(lf)) == CARRIER


def test_unknown_lines_keep_their_order_and_section() -> None:
    sdp = SessionDescription.parse(SOFTPHONE)
    assert sdp.session_lines[4] == Line("b", "AS:380")
    audio = sdp.media[0]
    values = [str(line) for line in audio.lines]
    assert values.index("a=rtcp-mux") < values.index("a=rtcp-fb:* trr-int 1000")
    assert values[-2].startswith("a=candidate:1 1 UDP")
    assert sdp.media[1].attributes("rtcp-fb") == ["* ccm fir"]


def test_softphone_codecs_use_rtpmap_and_fmtp() -> None:
    sdp = SessionDescription.parse(SOFTPHONE)
    audio = sdp.media[0]
    assert audio.codecs() == [
        Codec(96, "opus", 48000, 2, "useinbandfec=1"),
        Codec(0, "PCMU", 8000),
        Codec(8, "PCMA", 8000),
        Codec(101, "telephone-event", 8000, 1, "0-15"),
        Codec(97, "telephone-event", 48000),
    ]
    assert audio.attribute("rtcp") == "7079"
    assert audio.has_attribute("rtcp-mux")
    assert sdp.media[1].media == "video"
    assert sdp.media[1].codecs() == [Codec(96, "VP8", 90000)]


def test_static_payload_types_without_rtpmap() -> None:
    audio = SessionDescription.parse(CARRIER).media[0]
    names = [(c.payload_type, c.name, c.clock_rate) for c in audio.codecs()]
    assert names == [
        (18, "G729", 8000),
        (0, "PCMU", 8000),
        (8, "PCMA", 8000),
        (101, "telephone-event", 8000),
    ]
    assert audio.codecs()[0].fmtp == "annexb=no"
    assert audio.ptime == 20
    assert audio.attribute("maxptime") == "40"


def test_dynamic_type_with_fmtp_but_no_rtpmap_is_skipped() -> None:
    sdp = SessionDescription.parse(CISCO)
    audio = sdp.media[0]
    assert [c.name for c in audio.codecs()] == ["PCMA"]
    assert audio.ptime == 30
    assert audio.fmtp(100) == "0-15"


def test_media_level_connection_overrides_session_level() -> None:
    sdp = SessionDescription.parse(CISCO)
    assert sdp.connection is not None
    assert sdp.connection.host == "10.0.0.9"
    assert sdp.media_connection(sdp.media[0]).host == "10.0.0.10"
    carrier = SessionDescription.parse(CARRIER)
    assert carrier.media_connection(carrier.media[0]).host == "203.0.113.5"


def test_directions_media_overrides_session() -> None:
    body = HOLD_SESSION.replace(b"m=audio 5004 RTP/AVP 8 0\r\n", b"m=audio 5004 RTP/AVP 8 0\r\n")
    sdp = SessionDescription.parse(body + b"m=audio 5006 RTP/AVP 0\r\na=inactive\r\n")
    assert sdp.direction is Direction.SENDONLY
    assert sdp.media_direction(sdp.media[0]) is Direction.SENDONLY
    assert sdp.media_direction(sdp.media[1]) is Direction.INACTIVE
    carrier = SessionDescription.parse(CARRIER)
    assert carrier.media_direction(carrier.media[0]) is Direction.SENDRECV


def test_image_stream_is_not_rtp_and_has_no_codecs() -> None:
    sdp = SessionDescription.parse(AUDIO_T38)
    image = sdp.media[1]
    assert (image.media, image.port, image.proto, image.formats) == (
        "image",
        40002,
        "udptl",
        ("t38",),
    )
    assert not image.is_rtp
    assert image.codecs() == []
    assert image.attribute("T38FaxVersion") == "0"


def test_rejected_stream_and_port_count() -> None:
    body = crlf("""
        v=0
        o=- 1 1 IN IP4 192.0.2.1
        s=-
        c=IN IP4 192.0.2.1
        t=0 0
        m=audio 0 RTP/AVP 0
        m=video 49170/2 RTP/AVP 31
    """)
    sdp = SessionDescription.parse(body)
    assert sdp.media[0].rejected
    assert (sdp.media[1].port, sdp.media[1].port_count) == (49170, 2)
    assert bytes(sdp) == body


def test_origin_is_typed_and_replaceable() -> None:
    sdp = SessionDescription.parse(SOFTPHONE)
    origin = sdp.origin
    assert (origin.username, origin.session_id, origin.version) == ("alice", 3724394400, 3724394405)
    bumped = sdp.with_origin(dataclasses.replace(origin, version=7))
    assert bumped.origin.version == 7
    assert bumped.session_lines[1].value == "alice 3724394400 7 IN IP4 192.168.1.20"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"", "v=0"),
        (b"o=- 1 1 IN IP4 1.2.3.4\r\nv=0\r\ns=-\r\n", "v=0"),
        (b"v=0\r\ns=-\r\n", "o="),
        (b"v=0\r\no=- 1 1 IN IP4\r\ns=-\r\n", "o="),
        (b"v=0\r\no=- x 1 IN IP4 1.2.3.4\r\ns=-\r\n", "numeric"),
        (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4\r\n", "c="),
        (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nm=audio x RTP/AVP 0\r\n", "port"),
        (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nm=audio 70000 RTP/AVP 0\r\n", "port"),
        (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nm=audio 4000 RTP/AVP\r\n", "format"),
        (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nm=audio 4000 RTP/AVP 300\r\n", "payload"),
        (
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nm=audio 4 RTP/AVP 96\r\na=rtpmap:96 x\r\n",
            "rtpmap",
        ),
        (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nm=audio 4 RTP/AVP 0\r\na=ptime:x\r\n", "ptime"),
        (b"v=0\r\n o=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\n", "malformed"),
        (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\n\xff=1\r\n", "UTF-8"),
    ],
)
def test_malformed_sdp_raises_sdp_error(body: bytes, fragment: str) -> None:
    with pytest.raises(SdpError, match=fragment):
        SessionDescription.parse(body)


def test_sdp_error_is_in_the_package_hierarchy() -> None:
    assert issubclass(SdpError, MediaError)
    assert issubclass(MediaError, SessiondError)


@given(st.binary(max_size=300))
def test_any_bytes_parse_or_raise_sdp_error(data: bytes) -> None:
    try:
        sdp = SessionDescription.parse(data)
    except SdpError:
        return
    assert SessionDescription.parse(bytes(sdp)) == sdp


@given(
    st.lists(
        st.sampled_from(
            ["a=sendrecv", "a=x-foo:bar baz", "b=AS:64", "a=rtpmap:96 opus/48000/2", "i=info"]
        ),
        max_size=8,
    )
)
def test_generated_sections_round_trip(extra: list[str]) -> None:
    body = "v=0\r\no=- 1 2 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 96\r\n"
    body += "".join(line + "\r\n" for line in extra)
    assert str(SessionDescription.parse(body)) == body
