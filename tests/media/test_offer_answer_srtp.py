"""Offer/answer with SDES (RFC 4568) under each SRTP policy: two negotiators, SDP as bytes."""

from __future__ import annotations

import random

import pytest

from sessiond.media.errors import NoCommonCrypto
from sessiond.media.offer_answer import MediaNegotiator, NegotiatedStream
from sessiond.media.sdes import AES_CM_128_HMAC_SHA1_80
from sessiond.media.sdes_sdp import SrtpPolicy, crypto_values
from sessiond.media.sdp import Direction, SessionDescription

OFF, OFFER, REQUIRE = SrtpPolicy.OFF, SrtpPolicy.OFFER, SrtpPolicy.REQUIRE


def pair(offerer: SrtpPolicy, answerer: SrtpPolicy) -> tuple[MediaNegotiator, MediaNegotiator]:
    a = MediaNegotiator("198.51.100.1", 20000, rng=random.Random(1), srtp=offerer)
    b = MediaNegotiator("198.51.100.2", 30000, rng=random.Random(2), srtp=answerer)
    return a, b


def wire(sdp: SessionDescription) -> SessionDescription:
    """What the other side parses (and what we sent must round-trip)."""
    parsed = SessionDescription.parse(bytes(sdp))
    assert parsed == sdp
    return parsed


def negotiate(
    a: MediaNegotiator, b: MediaNegotiator, direction: Direction = Direction.SENDRECV
) -> tuple[SessionDescription, SessionDescription, NegotiatedStream, NegotiatedStream]:
    offer = a.create_offer(direction)
    answer, answered = b.create_answer(wire(offer))
    offered = a.process_answer(wire(answer))
    return offer, answer, offered, answered


def test_require_offers_savp_and_both_sides_get_mirrored_keys() -> None:
    offer, answer, ours, theirs = negotiate(*pair(REQUIRE, REQUIRE))
    assert offer.media[0].proto == answer.media[0].proto == "RTP/SAVP"
    assert len(crypto_values(offer.media[0])) == 4
    assert [v.split()[:2] for v in crypto_values(answer.media[0])] == [
        ["1", "AES_CM_128_HMAC_SHA1_80"]  # the offerer's first choice
    ]
    assert ours.crypto is not None
    assert theirs.crypto is not None
    assert ours.crypto.suite is theirs.crypto.suite is AES_CM_128_HMAC_SHA1_80
    assert (ours.crypto.local_key, ours.crypto.remote_key) == (
        theirs.crypto.remote_key,
        theirs.crypto.local_key,
    )
    assert ours.crypto.local_key != ours.crypto.remote_key
    for stream in (ours, theirs):  # nothing that prints a stream shows a key
        assert "inline" not in repr(stream)
        assert "hidden" in repr(stream)


def test_offer_is_best_effort_srtp_that_plain_peers_answer_plain() -> None:
    offer, answer, ours, theirs = negotiate(*pair(OFFER, OFF))
    assert offer.media[0].proto == "RTP/AVP"
    assert crypto_values(offer.media[0])
    assert answer.media[0].proto == "RTP/AVP"
    assert not crypto_values(answer.media[0])
    assert ours.crypto is None
    assert theirs.crypto is None
    offer, answer, ours, theirs = negotiate(*pair(OFFER, OFFER))
    assert answer.media[0].proto == "RTP/AVP"
    assert len(crypto_values(answer.media[0])) == 1
    assert ours.crypto is not None
    assert theirs.crypto is not None


@pytest.mark.parametrize(
    ("offerer", "answerer", "message"),
    [
        (REQUIRE, OFF, "SRTP is off"),  # RTP/SAVP offered to a node without SRTP
        (OFF, REQUIRE, "offer is plain RTP"),  # RTP/AVP offered where SRTP is required
        (OFF, OFFER, None),  # plain both ways
    ],
)
def test_answer_per_policy(offerer: SrtpPolicy, answerer: SrtpPolicy, message: str | None) -> None:
    a, b = pair(offerer, answerer)
    offer = wire(a.create_offer())
    if message is None:
        answer, stream = b.create_answer(offer)
        assert stream.crypto is None
        assert answer.media[0].proto == "RTP/AVP"
        return
    with pytest.raises(NoCommonCrypto, match=message):
        b.create_answer(offer)


def test_require_refuses_a_plain_answer() -> None:
    a, _ = pair(REQUIRE, OFF)
    offer = a.create_offer()
    # a peer that ignores SRTP and answers RTP/AVP without a=crypto
    as_plain = SessionDescription.parse(bytes(offer).replace(b"RTP/SAVP", b"RTP/AVP"))
    plain, _ = MediaNegotiator("198.51.100.2", 30000).create_answer(as_plain)
    with pytest.raises(NoCommonCrypto, match="answer is plain RTP"):
        a.process_answer(wire(plain))


def test_reoffers_keep_the_keys_both_ways() -> None:
    a, b = pair(REQUIRE, REQUIRE)
    first_offer, _, ours, theirs = negotiate(a, b)
    hold, answer, held_ours, held_theirs = negotiate(a, b, Direction.SENDONLY)
    assert crypto_values(hold.media[0]) == [crypto_values(first_offer.media[0])[0]]
    assert (held_ours.crypto, held_theirs.crypto) == (ours.crypto, theirs.crypto)
    assert held_ours.direction is Direction.SENDONLY
    # The other side re-offers (a refresh): still the same keys; an unchanged body keeps
    # the o= version (RFC 3264 section 8).
    again = b.create_offer()
    refreshed = b.create_offer()
    assert refreshed.origin.version == again.origin.version
    answer, stream = a.create_answer(wire(refreshed))
    assert stream.crypto == ours.crypto
    assert b.process_answer(wire(answer)).crypto == theirs.crypto


def test_glare_takes_the_peers_earlier_offer_back_as_the_answer() -> None:
    a, b = pair(OFFER, OFFER)
    offer, _, _, theirs = negotiate(a, b)
    b.create_offer(Direction.SENDONLY)  # withdrawn: 491
    assert b.process_answer(wire(offer)).crypto == theirs.crypto


def test_dual_audio_lines_take_the_first_the_policy_accepts() -> None:
    """Some phones offer the stream twice, RTP/SAVP then RTP/AVP (RFC 5939 without
    capability negotiation): one is answered, the other rejected (port 0)."""
    a, _ = pair(REQUIRE, OFF)
    secure = bytes(a.create_offer()).decode()
    m_at = secure.index("m=audio")
    plain_section = secure[m_at:].replace("RTP/SAVP", "RTP/AVP")
    kept = [ln for ln in plain_section.split("\r\n") if ln and not ln.startswith("a=crypto")]
    plain_section = "".join(ln + "\r\n" for ln in kept)
    both = SessionDescription.parse(secure + plain_section)
    for policy, used in ((OFF, 1), (OFFER, 0), (REQUIRE, 0)):
        b = MediaNegotiator("198.51.100.2", 30000, srtp=policy)
        answer, stream = b.create_answer(both)
        assert stream.index == used
        assert [m.port for m in answer.media] == [30000 if i == used else 0 for i in (0, 1)]
        assert (stream.crypto is not None) == (used == 0)


def test_savpf_offer_is_answered_in_its_profile() -> None:
    """RFC 5124: RTP/SAVPF (a WebRTC-style gateway's SDES offer) is answered RTP/SAVPF."""
    a, b = pair(REQUIRE, OFFER)
    text = bytes(a.create_offer()).replace(b"RTP/SAVP", b"RTP/SAVPF")
    answer, stream = b.create_answer(SessionDescription.parse(text))
    assert answer.media[0].proto == "RTP/SAVPF"
    assert stream.crypto is not None
    assert a.process_answer(wire(answer)).crypto is not None
