"""SRTP legs on the media node over real UDP sockets and a real Redis: SDES keys agreed in
the SDP, audio and RFC 4733 digits through SRTP both ways, two SRTP legs bridged (the node
relays decrypted audio), plain or forged packets dropped and counted, the policies' 488s."""

from __future__ import annotations

import asyncio
import random
from array import array
from collections.abc import AsyncIterator

import pytest
from prometheus_client import REGISTRY

from e2e.media_checks import tone_share, ulaw_pcm
from sessiond.media.offer_answer import MediaNegotiator, NegotiatedStream
from sessiond.media.rtp import RtpPacket
from sessiond.media.sdes_sdp import SrtpPolicy, crypto_values
from sessiond.media.sdp import Codec, SessionDescription
from sessiond.media.srtp import SrtpSession

from .node_helpers import LOOPBACK, FarEnd, Harness, dominant, start_node, stop_node

pytestmark = pytest.mark.redis
PCMU = (Codec(0, "PCMU", 8000), Codec(101, "telephone-event", 8000, 1, "0-16"))


@pytest.fixture
async def node(redis_url: str) -> AsyncIterator[Harness]:
    harness = await start_node(redis_url, srtp=SrtpPolicy.REQUIRE)
    yield harness
    await stop_node(harness)


def softphone(port: int, policy: SrtpPolicy = SrtpPolicy.REQUIRE) -> MediaNegotiator:
    """The far end's offer/answer: a phone with SRTP (SDES), PCMU and telephone-event."""
    return MediaNegotiator(LOOPBACK, port, PCMU, rng=random.Random(port), srtp=policy)


def keyed(far: FarEnd, stream: NegotiatedStream) -> None:
    assert stream.crypto is not None
    far.srtp = SrtpSession.from_negotiated(stream.crypto)
    far.start(stream)


async def answered(node: Harness, far: FarEnd) -> tuple[str, str, str]:
    """The far end offers RTP/SAVP; the node answers through the pool; SRTP both ways."""
    sid, media_id = node.new_session()
    port, _ = await far.open()
    phone = softphone(port)
    offer = str(phone.create_offer())
    await node.command("create", sid, pool=True, media_id=media_id, mode="answer", remote_sdp=offer)
    answer = str((await node.event(sid, "MediaReady")).data["sdp"])
    keyed(far, phone.process_answer(SessionDescription.parse(answer)))
    return sid, media_id, answer


async def offered(node: Harness, far: FarEnd) -> tuple[str, str, str]:
    """The node offers (its create names the policy), the far end answers, the node gets
    the answer in an update."""
    sid, media_id = node.new_session()
    port, _ = await far.open()
    await node.command("create", sid, pool=True, media_id=media_id, mode="offer", srtp="require")
    offer = str((await node.event(sid, "MediaReady")).data["sdp"])
    answer, stream = softphone(port).create_answer(SessionDescription.parse(offer))
    keyed(far, stream)
    await node.command("update", sid, media_id=media_id, remote_sdp=str(answer), answer=True)
    return sid, media_id, offer


def loud(frames: list[bytes]) -> array[int]:
    return array("h", b"".join(f for f in frames if max(array("h", f)) > 2000))


async def test_two_srtp_legs_bridged_carry_the_tone_and_digits_encrypted(node: Harness) -> None:
    alice, bob = FarEnd(tone=440.0), FarEnd()
    try:
        sid_a, media_a, answer_a = await answered(node, alice)
        sid_b, media_b, offer_b = await offered(node, bob)
        for sdp in (answer_a, offer_b):
            section = SessionDescription.parse(sdp).media[0]
            assert section.proto == "RTP/SAVP"
            assert crypto_values(section)
        await node.command("bridge", sid_a, media_id=media_a, other=media_b)
        await asyncio.sleep(1.2)
        heard = loud(bob.heard)
        assert len(heard) >= 160 * 25, "bob heard no tone through the two SRTP legs"
        assert dominant(heard, (300.0, 440.0, 1000.0)) == 440.0
        # What bob's socket received is SRTP: its payload decoded as PCMU is no tone,
        # while the same packets, unprotected, are.
        assert bob.srtp is not None
        rtp = [d for d in bob.wire if d[1] & 0x7F == 0][-40:]
        plain = [RtpPacket.parse(unprotected_again(bob, d)).payload for d in rtp]
        wire = [d[12 : len(d) - 10] for d in rtp]  # header off, 80-bit tag off
        assert tone_share(ulaw_pcm(plain), 440.0) > 0.3
        assert tone_share(ulaw_pcm(wire), 440.0) < 0.01
        assert bob.refused == 0
        # RFC 4733 digits over SRTP: from alice to the node, from the node to bob.
        assert alice.stream is not None
        alice.stream.send_dtmf("7#")
        await node.wait_for(sid_a, lambda es: sum(e.type == "DtmfReceived" for e in es) >= 2)
        digits = [e.data["digit"] for e in await node.events(sid_a) if e.type == "DtmfReceived"]
        assert digits == ["7", "#"]
        await node.command("send_dtmf", sid_b, media_id=media_b, digits="42", duration_ms=80)
        for _ in range(100):
            if len(bob.digits) >= 2:
                break
            await asyncio.sleep(0.02)
        assert bob.digits == ["4", "2"]
        legs = node.executor.legs
        assert legs[media_a].srtp_errors == legs[media_b].srtp_errors == 0
    finally:
        alice.close()
        bob.close()


def unprotected_again(far: FarEnd, data: bytes) -> bytes:
    """Unprotect a recorded packet again with a fresh session of the far end's keys (the
    far end's own session has already seen it: its replay check would refuse it)."""
    assert far.stream is not None
    assert far.stream.negotiated.crypto is not None
    return SrtpSession.from_negotiated(far.stream.negotiated.crypto).unprotect(data)


async def test_plain_and_forged_packets_are_dropped_and_counted(node: Harness) -> None:
    far = FarEnd(tone=440.0)
    try:
        sid, media_id, answer = await answered(node, far)
        await asyncio.sleep(0.3)
        leg = node.executor.legs[media_id]
        latched = leg.stream.rtp.latched if leg.stream else None
        assert latched is not None
        before = refused_in()
        port = SessionDescription.parse(answer).media[0].port
        loop = asyncio.get_running_loop()
        attacker, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=(LOOPBACK, 0)
        )
        try:
            plain = bytes(
                RtpPacket(
                    payload_type=0,
                    sequence_number=1,
                    timestamp=160,
                    ssrc=0x1234,
                    payload=b"\xff" * 160,
                )
            )
            forged = bytearray(far.wire[-1] if far.wire else plain)
            for _ in range(8):  # more than relatch_after: still no relatch
                attacker.sendto(plain, (LOOPBACK, port))
                attacker.sendto(bytes(forged[:-1]) + bytes([forged[-1] ^ 1]), (LOOPBACK, port))
            await asyncio.sleep(0.3)
        finally:
            attacker.close()
        assert leg.srtp_errors >= 16
        assert refused_in() - before >= 16
        assert leg.stream is not None
        assert leg.stream.rtp.latched == latched  # only authenticated packets latch
    finally:
        far.close()


def refused_in() -> float:
    """The node's metric of SRTP packets refused on receipt (authentication)."""
    labels = {"direction": "in", "reason": "auth"}
    return REGISTRY.get_sample_value("sessiond_media_srtp_errors_total", labels) or 0.0


@pytest.mark.parametrize(
    ("node_policy", "phone_policy", "reason"),
    [
        ("require", SrtpPolicy.OFF, "SRTP is required but the offer is plain RTP"),
        ("off", SrtpPolicy.REQUIRE, "SRTP is off here"),
    ],
)
async def test_policies_refuse_with_488(
    node: Harness, node_policy: str, phone_policy: SrtpPolicy, reason: str
) -> None:
    sid, media_id = node.new_session()
    offer = str(softphone(40000, phone_policy).create_offer())
    await node.command(
        "create", sid, media_id=media_id, mode="answer", remote_sdp=offer, srtp=node_policy
    )
    failed = await node.event(sid, "MediaFailed")
    assert failed.data["code"] == 488
    assert reason in str(failed.data["reason"])
    assert media_id not in node.executor.legs
