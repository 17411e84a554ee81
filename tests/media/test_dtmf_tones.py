"""RFC 4733 sender/receiver and tone generation."""

from __future__ import annotations

import random
from array import array

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.audio_checks import goertzel
from sessiond.media.dtmf import (
    DtmfDigit,
    DtmfReceiver,
    TelephoneEvent,
    dtmf_packets,
    event_code,
    event_name,
)
from sessiond.media.errors import RtpError
from sessiond.media.rtp import RtpPacket
from sessiond.media.tones import DTMF_FREQUENCIES, ToneGenerator, dtmf_tone_frames, tone_frames

PT = 101


def test_payload_golden_bytes() -> None:
    # RFC 4733 figure 1 layout: digit 5, E=1, volume 10, duration 800.
    assert bytes(TelephoneEvent(5, True, 10, 800)) == bytes.fromhex("058a0320")
    assert TelephoneEvent.parse(bytes.fromhex("058a0320")) == TelephoneEvent(5, True, 10, 800)
    with pytest.raises(RtpError):
        TelephoneEvent.parse(b"\x05")


def test_event_codes() -> None:
    assert [event_code(d) for d in "09*#AD"] == [0, 9, 10, 11, 12, 15]
    assert event_name(11) == "#"
    assert event_name(16) == "flash"
    with pytest.raises(ValueError, match="DTMF"):
        event_code("x")


def test_sender_sequence() -> None:
    packets = dtmf_packets("7", duration_ms=100)
    events = [e for e, _ in packets]
    markers = [m for _, m in packets]
    assert markers == [True] + [False] * (len(packets) - 1)
    assert [e.duration for e in events] == [160, 320, 480, 640, 800, 800, 800]
    assert [e.end for e in events] == [False] * 4 + [True] * 3
    assert {e.event for e in events} == {7}


def test_sender_short_event_and_limits() -> None:
    packets = dtmf_packets("1", duration_ms=20)
    assert [(e.end, m) for e, m in packets] == [(True, True), (True, False), (True, False)]
    with pytest.raises(ValueError, match="16 bits"):
        dtmf_packets("1", duration_ms=9000)


def to_rtp(digit: str, ts: int, first_seq: int) -> list[RtpPacket]:
    return [
        RtpPacket(PT, first_seq + i, ts, 9, bytes(e), marker)
        for i, (e, marker) in enumerate(dtmf_packets(digit))
    ]


def receive_all(receiver: DtmfReceiver, packets: list[RtpPacket]) -> list[str]:
    return [d.digit for p in packets if (d := receiver.receive(p)) is not None]


def test_each_digit_reported_once_despite_redundant_end_packets() -> None:
    packets = to_rtp("1", 1000, 0) + to_rtp("1", 3000, 10) + to_rtp("#", 5000, 20)
    assert receive_all(DtmfReceiver(PT), packets) == ["1", "1", "#"]


def test_reordering_and_loss() -> None:
    rng = random.Random(4)
    digits = "0123456789*#"
    packets: list[RtpPacket] = []
    for i, d in enumerate(digits):
        event = to_rtp(d, 1000 + i * 2000, i * 10)
        del event[0]  # the marker packet is lost
        rng.shuffle(event)  # and the rest reordered within the event
        packets += event
    receiver = DtmfReceiver(PT)
    assert receive_all(receiver, packets) == list(digits)
    assert receiver.duration(1000) == 800


def test_stale_packet_of_previous_event_is_ignored() -> None:
    receiver = DtmfReceiver(PT)
    first, second = to_rtp("4", 1000, 0), to_rtp("5", 3000, 10)
    assert receive_all(receiver, first[:2] + second[:1] + first[2:] + second[1:]) == ["4", "5"]


def test_timestamp_wrap_between_events() -> None:
    receiver = DtmfReceiver(PT)
    packets = to_rtp("2", 2**32 - 100, 0) + to_rtp("3", 500, 10)
    assert receive_all(receiver, packets) == ["2", "3"]


def test_other_payload_types_are_ignored() -> None:
    assert DtmfReceiver(PT).receive(RtpPacket(0, 1, 1, 1, b"\xff" * 160)) is None


@given(st.text(alphabet="0123456789*#ABCD", min_size=1, max_size=12), st.randoms())
def test_any_digit_string_survives_duplication_and_local_reordering(
    digits: str, rng: random.Random
) -> None:
    packets: list[RtpPacket] = []
    for i, d in enumerate(digits):
        event = to_rtp(d, (i * 4000) % 2**32, i * 10)
        event += [rng.choice(event) for _ in range(3)]  # duplicates
        rng.shuffle(event)
        packets += event
    assert receive_all(DtmfReceiver(PT), packets) == list(digits)
    assert DtmfDigit("1", 0) == DtmfDigit("1", 0)


def test_tone_frames_have_the_right_frequency_and_continuous_phase() -> None:
    frames = tone_frames(1000.0, 100, amplitude=10000)
    assert len(frames) == 5
    assert all(len(f) == 320 for f in frames)
    samples = list(array("h", b"".join(frames)))
    assert max(samples) == 10000
    # Continuous phase: a 1 kHz tone repeats every 8 samples, across frame edges too.
    assert samples[160:168] == samples[0:8]
    assert goertzel(samples, 1000) > 100 * goertzel(samples, 1300)


def test_dtmf_tone_contains_both_frequencies() -> None:
    samples = list(array("h", b"".join(dtmf_tone_frames("5", 100))))
    low, high = DTMF_FREQUENCIES["5"]
    assert (low, high) == (770.0, 1336.0)
    power = {f: goertzel(samples, f) for f in (low, high, 697.0, 1209.0)}
    assert power[low] > 50 * power[697.0]
    assert power[high] > 50 * power[1209.0]
    with pytest.raises(ValueError, match="DTMF"):
        dtmf_tone_frames("x")


def test_tone_sum_is_clipped() -> None:
    frame = ToneGenerator((500.0, 500.0), amplitude=30000).frame()
    assert max(array("h", frame)) == 32767
