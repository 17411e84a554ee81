"""Two media streams built from a real offer/answer, over an in-memory lossy link."""

from __future__ import annotations

import math
import random
from array import array

import pytest

from sessiond.media.codecs import FRAME_BYTES
from sessiond.media.dtmf import DtmfDigit
from sessiond.media.offer_answer import MediaNegotiator
from sessiond.media.rtp import RtpPacket
from sessiond.media.rtp_session import RtpTimeout, SourceLatched, Transmit
from sessiond.media.sdp import Codec, Direction
from sessiond.media.stream import MediaEvent, MediaStream
from sessiond.media.tones import ToneGenerator

A_ADDR, B_ADDR = ("192.0.2.1", 20000), ("192.0.2.2", 30000)


def pair(codecs: tuple[Codec, ...] | None = None) -> tuple[MediaStream, MediaStream]:
    alice = MediaNegotiator(*A_ADDR, rng=random.Random(1))
    bob = MediaNegotiator(*B_ADDR, codecs=codecs, rng=random.Random(2)) if codecs else None
    bob = bob or MediaNegotiator(*B_ADDR, rng=random.Random(2))
    answer, bob_view = bob.create_answer(alice.create_offer())
    alice_view = alice.process_answer(answer)
    a = MediaStream(alice_view, now=0.0, rng=random.Random(3), inactivity_timeout=1.0)
    b = MediaStream(bob_view, now=0.0, rng=random.Random(4), inactivity_timeout=1.0)
    return a, b


def rms(frame: bytes) -> float:
    values = array("h", frame)
    return math.sqrt(sum(v * v for v in values) / len(values))


def run(
    a: MediaStream, b: MediaStream, ticks: int, loss: float = 0.0, seed: int = 0
) -> tuple[list[bytes], list[MediaEvent]]:
    rng = random.Random(seed)
    tone = ToneGenerator((440.0,), amplitude=8000)
    heard: list[bytes] = []
    events: list[MediaEvent] = []
    for k in range(ticks):
        now = k * 0.02
        _, out = a.tick(tone.frame(), now)
        for t in out:
            assert t.address == B_ADDR
            if rng.random() >= loss:
                events += b.receive(t.data, A_ADDR, now + 0.005)
        frame, _ = b.tick(None, now + 0.01)
        heard.append(frame)
        events += b.handle_timer(now + 0.01) if b.get_timer() <= now + 0.01 else []
    return heard, events


@pytest.mark.parametrize(
    "codecs", [None, (Codec(8, "PCMA", 8000), Codec(101, "telephone-event", 8000))]
)
def test_audio_flows_continuously_with_loss(codecs: tuple[Codec, ...] | None) -> None:
    a, b = pair(codecs)
    assert a.codec.name == ("PCMU" if codecs is None else "PCMA")
    heard, events = run(a, b, 200, loss=0.05, seed=9)
    assert len(heard) == 200
    assert all(len(f) == FRAME_BYTES for f in heard)
    assert SourceLatched(A_ADDR, None) in events
    loud = [rms(f) for f in heard[10:]]
    assert sum(1 for r in loud if r > 4000) > 0.9 * len(loud)


def test_dtmf_digits_arrive_once_each_despite_loss() -> None:
    a, b = pair()
    a.send_dtmf("15#")
    _, events = run(a, b, 60, loss=0.1, seed=3)
    digits = [e.digit for e in events if isinstance(e, DtmfDigit)]
    assert digits == ["1", "5", "#"]
    assert not a.sending_dtmf


def test_dtmf_packets_share_the_event_timestamp_and_clock_keeps_running() -> None:
    a, _ = pair()
    a.send_dtmf("9")
    sent = []
    for k in range(12):
        _, out = a.tick(bytes(FRAME_BYTES), k * 0.02)
        sent += [RtpPacket.parse(t.data) for t in out]
    events = [p for p in sent if p.payload_type == 101]
    audio = [p for p in sent if p.payload_type == 0]
    assert len(events) == 7
    assert {p.timestamp for p in events} == {events[0].timestamp}
    assert events[0].marker
    # Audio resumes at the clock position of its tick, not at the event start.
    assert audio[0].timestamp - events[0].timestamp == 160 * 9


def test_hold_stops_sending_and_inactivity() -> None:
    a, b = pair()
    alice = MediaNegotiator(*A_ADDR, rng=random.Random(1))
    bob = MediaNegotiator(*B_ADDR, rng=random.Random(2))
    answer, _ = bob.create_answer(alice.create_offer(Direction.INACTIVE))
    a.update(alice.process_answer(answer))
    _, out = a.tick(bytes(FRAME_BYTES), 0.0)
    assert out == []
    _, events = run(a, b, 60)
    assert any(isinstance(e, RtpTimeout) for e in events)


def test_rtcp_reports_go_out_and_close_sends_bye() -> None:
    a, _ = pair()
    reports: list[Transmit] = []
    for k in range(500):
        now = k * 0.02
        a.tick(bytes(FRAME_BYTES), now)
        if a.get_timer() <= now:
            reports += [e for e in a.handle_timer(now) if isinstance(e, Transmit)]
    assert reports
    assert reports[0].address == (B_ADDR[0], B_ADDR[1] + 1)
    assert a.close(10.0).data[1] == 200  # SR first
