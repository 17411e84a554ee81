"""RFC 3264 offer/answer against real-world style offers."""

from __future__ import annotations

import random

import pytest

from sessiond.media.errors import NoCommonCodec, NoCommonCrypto, OfferAnswerError
from sessiond.media.offer_answer import MediaNegotiator, NegotiatedStream
from sessiond.media.sdp import Codec, Direction, SessionDescription

from .sdp_samples import AUDIO_T38, CARRIER, CISCO, HOLD_NULL_C, HOLD_SESSION, NO_COMMON, SOFTPHONE

LOCAL = "198.51.100.1"


def negotiator(port: int = 20000) -> MediaNegotiator:
    return MediaNegotiator(LOCAL, port, rng=random.Random(7))


def answer(
    body: bytes, direction: Direction = Direction.SENDRECV
) -> tuple[SessionDescription, NegotiatedStream]:
    answer_sdp, stream = negotiator().create_answer(SessionDescription.parse(body), direction)
    # What we send must itself parse and round-trip.
    assert SessionDescription.parse(bytes(answer_sdp)) == answer_sdp
    return answer_sdp, stream


def test_softphone_offer_keeps_offerer_order_and_rejects_video() -> None:
    sdp, stream = answer(SOFTPHONE)
    assert [m.media for m in sdp.media] == ["audio", "video"]
    audio, video = sdp.media
    # Offerer order, offerer's payload types; telephone-event/48000 goes with opus.
    assert audio.formats == ("96", "0", "8", "101", "97")
    assert audio.port == 20000
    assert audio.has_attribute("rtcp-mux")
    assert sdp.media_direction(audio) is Direction.SENDRECV
    assert (video.port, video.formats, video.lines) == (0, ("96",), ())
    assert stream.codec.name == "opus"
    assert stream.codec.payload_type == 96
    assert stream.telephone_event == Codec(97, "telephone-event", 48000)
    assert (stream.remote_address, stream.remote_port) == ("192.168.1.20", 7078)
    assert stream.rtcp_mux
    assert stream.remote_rtcp_port == 7078
    assert not stream.remote_hold
    assert stream.codec_for(0) == Codec(0, "PCMU", 8000)


def test_carrier_static_types_answered_with_pcmu_first() -> None:
    sdp, stream = answer(CARRIER)
    audio = sdp.media[0]
    assert audio.formats == ("0", "8", "101")  # G.729 dropped, order kept
    assert [c.name for c in audio.codecs()] == ["PCMU", "PCMA", "telephone-event"]
    assert audio.fmtp(101) == "0-16"
    assert stream.codec == Codec(0, "PCMU", 8000)
    assert stream.telephone_event is not None
    assert stream.telephone_event.payload_type == 101
    assert stream.ptime_ms == 20
    assert stream.remote_rtcp_port == 30001
    assert not stream.rtcp_mux
    assert not audio.has_attribute("rtcp-mux")


def test_cisco_offer_without_rtpmap_uses_static_pcma_and_media_c_line() -> None:
    sdp, stream = answer(CISCO)
    assert sdp.media[0].formats == ("8",)
    assert stream.codec.name == "PCMA"
    assert stream.telephone_event is None  # PT 100 has fmtp only: unknown, not guessed
    assert stream.remote_address == "10.0.0.10"
    assert stream.ptime_ms == 30


@pytest.mark.parametrize("with_port", [True, False])
def test_t38_image_stream_is_rejected_but_answered(with_port: bool) -> None:
    body = AUDIO_T38 if with_port else AUDIO_T38.replace(b"image 40002", b"image 0")
    sdp, stream = answer(body)
    assert len(sdp.media) == 2
    image = sdp.media[1]
    assert (image.media, image.port, image.proto, image.formats) == ("image", 0, "udptl", ("t38",))
    assert stream.index == 0
    assert stream.codec.name == "PCMU"


def test_session_level_sendonly_is_answered_recvonly() -> None:
    sdp, stream = answer(HOLD_SESSION)
    assert sdp.media_direction(sdp.media[0]) is Direction.RECVONLY
    assert stream.direction is Direction.RECVONLY
    assert stream.remote_hold
    assert stream.codec.name == "PCMA"


def test_inactive_offer_is_answered_inactive() -> None:
    sdp, stream = answer(CARRIER.replace(b"a=ptime:20", b"a=inactive"))
    assert sdp.media_direction(sdp.media[0]) is Direction.INACTIVE
    assert stream.direction is Direction.INACTIVE


def test_recvonly_offer_is_answered_sendonly() -> None:
    _, stream = answer(CARRIER.replace(b"a=ptime:20", b"a=recvonly"))
    assert stream.direction is Direction.SENDONLY
    assert not stream.remote_hold


def test_rfc2543_null_connection_is_hold() -> None:
    sdp, stream = answer(HOLD_NULL_C)
    assert stream.remote_hold
    assert stream.direction is Direction.RECVONLY
    assert sdp.media_direction(sdp.media[0]) is Direction.RECVONLY


def test_we_hold_while_answering() -> None:
    _, stream = answer(CARRIER, Direction.SENDONLY)
    assert stream.direction is Direction.SENDONLY


def test_no_common_codec_raises_488() -> None:
    with pytest.raises(NoCommonCodec) as info:
        negotiator().create_answer(SessionDescription.parse(NO_COMMON))
    assert info.value.sip_status == 488


def test_only_video_offered_raises_488() -> None:
    body = SOFTPHONE.split(b"m=audio")[0] + b"m=video 9078 RTP/AVP 31\r\n"
    with pytest.raises(NoCommonCodec):
        negotiator().create_answer(SessionDescription.parse(body))


def test_srtp_profile_is_refused_when_srtp_is_off() -> None:
    with pytest.raises(NoCommonCrypto, match="SRTP is off"):
        negotiator().create_answer(
            SessionDescription.parse(CARRIER.replace(b"RTP/AVP", b"RTP/SAVP"))
        )


def test_second_audio_stream_is_rejected() -> None:
    sdp, stream = answer(CARRIER + b"m=audio 30002 RTP/AVP 0\r\n")
    assert [m.port for m in sdp.media] == [20000, 0]
    assert stream.index == 0


def test_offer_contains_our_codecs_and_round_trips() -> None:
    neg = negotiator()
    offer = neg.create_offer()
    assert SessionDescription.parse(bytes(offer)) == offer
    audio = offer.media[0]
    assert audio.formats == ("0", "8", "111", "101")
    assert audio.fmtp(101) == "0-16"
    assert [c.name for c in audio.codecs()] == ["PCMU", "PCMA", "opus", "telephone-event"]
    assert audio.codecs()[2].channels == 2
    assert offer.media_connection(audio).host == LOCAL
    assert audio.ptime == 20


def test_reoffer_for_hold_and_resume_bumps_version_keeps_session_id() -> None:
    neg = negotiator()
    first = neg.create_offer()
    same = neg.create_offer()
    hold = neg.create_offer(Direction.SENDONLY)
    resume = neg.create_offer(Direction.SENDRECV)
    assert first.origin.session_id == hold.origin.session_id == resume.origin.session_id
    assert same.origin.version == first.origin.version  # unchanged body: same version
    assert hold.origin.version == first.origin.version + 1
    assert resume.origin.version == first.origin.version + 2
    assert hold.media_direction(hold.media[0]) is Direction.SENDONLY


def test_processing_an_answer_to_our_offer() -> None:
    offerer = negotiator()
    offer = offerer.create_offer()
    answer_sdp, answerer_view = MediaNegotiator("192.0.2.50", 40000).create_answer(offer)
    stream = offerer.process_answer(answer_sdp)
    assert stream.codec == Codec(0, "PCMU", 8000)
    assert (stream.remote_address, stream.remote_port) == ("192.0.2.50", 40000)
    assert stream.telephone_event is not None
    assert stream.telephone_event.payload_type == 101
    assert stream.ptime_ms == 20
    assert stream.direction is Direction.SENDRECV
    assert answerer_view.remote_port == 20000


def test_answer_choosing_pcma_with_other_event_pt() -> None:
    offerer = negotiator()
    offerer.create_offer()
    body = CARRIER.replace(b"18 0 8 101", b"8 96").replace(b"101 telephone", b"96 telephone")
    body = body.replace(b"a=fmtp:101", b"a=fmtp:96").replace(b"a=ptime:20", b"a=ptime:30")
    stream = offerer.process_answer(SessionDescription.parse(body))
    assert stream.codec.name == "PCMA"
    assert stream.ptime_ms == 30
    assert stream.telephone_event is not None
    assert stream.telephone_event.payload_type == 96


def test_hold_offer_answered_recvonly_gives_sendonly_stream() -> None:
    offerer = negotiator()
    offer = offerer.create_offer(Direction.SENDONLY)
    answer_sdp, peer = MediaNegotiator("192.0.2.50", 40000).create_answer(offer)
    assert peer.direction is Direction.RECVONLY
    assert peer.remote_hold
    stream = offerer.process_answer(answer_sdp)
    assert stream.direction is Direction.SENDONLY
    assert not stream.remote_hold


def test_answer_errors() -> None:
    offerer = negotiator()
    with pytest.raises(OfferAnswerError, match="no offer"):
        offerer.process_answer(SessionDescription.parse(CARRIER))
    offerer.create_offer()
    with pytest.raises(OfferAnswerError, match="m= lines"):
        offerer.process_answer(SessionDescription.parse(AUDIO_T38))
    offerer.create_offer()
    with pytest.raises(NoCommonCodec):
        offerer.process_answer(SessionDescription.parse(CARRIER.replace(b"30000", b"0")))
    offerer.create_offer()
    with pytest.raises(NoCommonCodec):
        offerer.process_answer(SessionDescription.parse(NO_COMMON))
