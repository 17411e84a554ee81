"""``latch_private``: a leg whose peer is behind NAT sends nothing to the private address in
its SDP, then to where the peer's RTP comes from, and keeps that when a re-offer names the
private address again (without the option, the SDP address is used until RTP arrives)."""

from __future__ import annotations

import random

from sessiond.media.offer_answer import MediaNegotiator
from sessiond.media.rtp_session import Transmit
from sessiond.media.stream import MediaStream
from sessiond.media.tones import ToneGenerator

PHONE_LAN = ("192.168.1.2", 10000)  # what the phone's SDP says
PHONE_NAT = ("198.51.100.2", 41000)  # where its RTP comes from


def stream(*, latch_private: bool) -> tuple[MediaStream, MediaNegotiator, MediaNegotiator]:
    phone = MediaNegotiator(*PHONE_LAN, rng=random.Random(1))
    ours = MediaNegotiator("203.0.113.7", 20000, rng=random.Random(2))
    _, negotiated = ours.create_answer(phone.create_offer())
    media = MediaStream(negotiated, now=0.0, rng=random.Random(3), latch_private=latch_private)
    return media, phone, ours


def sent(media: MediaStream, now: float) -> list[tuple[str, int]]:
    _, out = media.tick(ToneGenerator((440.0,)).frame(), now)
    return [t.address for t in out if media.sendable(t)]


def rtp_packet(media: MediaStream) -> bytes:
    """An RTP packet (what the phone would send)."""
    return media.rtp.send(b"\xff" * 160, payload_type=0, samples=160, now=0.0).data


def test_nothing_goes_to_the_private_address_until_rtp_comes() -> None:
    media, _, _ = stream(latch_private=True)
    assert sent(media, 0.0) == []
    assert media.rtp.remote_rtcp is not None
    reports = [t for t in media.handle_timer(60.0) if isinstance(t, Transmit)]
    assert reports  # an RTCP report, to the SDP's RTCP port: not sent
    assert not any(media.sendable(t) for t in reports)
    other, _, _ = stream(latch_private=False)
    assert sent(other, 0.0) == [PHONE_LAN]  # the default: the SDP address first
    # the phone's RTP arrives from its NAT binding: sent there from now on
    media.receive(rtp_packet(other), PHONE_NAT, 0.01)
    assert sent(media, 0.02) == [PHONE_NAT]


def test_a_reoffer_naming_the_private_address_keeps_the_latch() -> None:
    for latch_private, after in ((True, [PHONE_NAT]), (False, [PHONE_LAN])):
        media, phone, ours = stream(latch_private=latch_private)
        media.receive(rtp_packet(media), PHONE_NAT, 0.01)
        assert sent(media, 0.02) == [PHONE_NAT]
        offer = phone.create_offer()  # a re-INVITE (a resume) with the same LAN address
        _, negotiated = ours.create_answer(offer)
        media.update(negotiated)
        assert sent(media, 0.04) == after
