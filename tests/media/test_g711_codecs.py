"""G.711 against ITU reference values, and the codec registry (G.711, Opus)."""

from __future__ import annotations

import math
import warnings
from array import array

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessiond.media import g711
from sessiond.media.codecs import FRAME_BYTES, create_codec, supported
from sessiond.media.errors import CodecError
from sessiond.media.sdp import Codec


def pcm(samples: list[int]) -> bytes:
    return array("h", samples).tobytes()


def samples(data: bytes) -> list[int]:
    return list(array("h", data))


# G.711 reference points: code -> decoded linear value (16-bit scale).
ULAW_POINTS = {0xFF: 0, 0x7F: 0, 0x80: 32124, 0x00: -32124, 0xFE: 8, 0x7E: -8, 0xF0: 120, 0xEF: 132}
ALAW_POINTS = {0xD5: 8, 0x55: -8, 0xAA: 32256, 0x2A: -32256, 0xD4: 24}


@pytest.mark.parametrize(("code", "value"), sorted(ULAW_POINTS.items()))
def test_ulaw_reference_points(code: int, value: int) -> None:
    assert samples(g711.ulaw_decode(bytes([code]))) == [value]


@pytest.mark.parametrize(("code", "value"), sorted(ALAW_POINTS.items()))
def test_alaw_reference_points(code: int, value: int) -> None:
    assert samples(g711.alaw_decode(bytes([code]))) == [value]


def test_zero_and_extremes_encode() -> None:
    assert g711.ulaw_encode(pcm([0, 32767, -32768])) == bytes([0xFF, 0x80, 0x00])
    assert g711.alaw_encode(pcm([0, 32767, -32768])) == bytes([0xD5, 0xAA, 0x2A])


@pytest.mark.parametrize(
    ("encode", "decode"),
    [(g711.ulaw_encode, g711.ulaw_decode), (g711.alaw_encode, g711.alaw_decode)],
)
def test_every_code_is_a_fixed_point(encode: object, decode: object) -> None:
    assert callable(encode)
    assert callable(decode)
    codes = bytes(range(256))
    again = encode(decode(codes))
    # mu-law has two zeros (0x7F, 0xFF); both decode to 0 which encodes as 0xFF.
    diff = [c for c, a in zip(codes, again, strict=True) if c != a]
    assert diff in ([], [0x7F])


def test_decode_is_monotonic_in_code_order() -> None:
    # Positive mu-law codes 0xFF..0x80 decode to increasing magnitudes.
    mags = samples(g711.ulaw_decode(bytes(range(0xFF, 0x7F, -1))))
    assert mags == sorted(mags)
    assert len(set(mags)) == 128


@given(st.lists(st.integers(-32768, 32767), min_size=1, max_size=64))
def test_round_trip_error_is_bounded_by_the_segment_step(values: list[int]) -> None:
    for encode, decode in (
        (g711.ulaw_encode, g711.ulaw_decode),
        (g711.alaw_encode, g711.alaw_decode),
    ):
        out = samples(decode(encode(pcm(values))))
        for x, y in zip(values, out, strict=True):
            # Quantisation error is at most half a step; steps grow to 1024 (mu) / 1024 (A)
            # in the top segment, i.e. about 1/32 of the magnitude plus the small-signal step.
            assert abs(x - y) <= max(abs(x) // 16, 16) + 1


def test_matches_the_stdlib_reference_implementation() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop")
    everything = pcm(list(range(-32768, 32768)))
    assert g711.ulaw_encode(everything) == audioop.lin2ulaw(everything, 2)
    assert g711.alaw_encode(everything) == audioop.lin2alaw(everything, 2)
    codes = bytes(range(256))
    assert g711.ulaw_decode(codes) == audioop.ulaw2lin(codes, 2)
    assert g711.alaw_decode(codes) == audioop.alaw2lin(codes, 2)


def test_odd_length_pcm_is_refused() -> None:
    with pytest.raises(ValueError, match="even"):
        g711.ulaw_encode(b"\x00")


def sine_frame(index: int, freq: float = 440.0, amplitude: int = 8000) -> bytes:
    return pcm(
        [
            round(amplitude * math.sin(2 * math.pi * freq * (index * 160 + n) / 8000))
            for n in range(160)
        ]
    )


@pytest.mark.parametrize(("name", "pt"), [("PCMU", 0), ("PCMA", 8)])
def test_g711_codec_frames(name: str, pt: int) -> None:
    codec = create_codec(Codec(pt, name, 8000))
    assert (codec.clock_rate, codec.samples_per_frame, codec.payload_type) == (8000, 160, pt)
    payload = codec.encode(sine_frame(0))
    assert len(payload) == 160
    assert len(codec.decode(payload)) == FRAME_BYTES


def test_registry_refuses_unknown_codecs() -> None:
    assert not supported(Codec(18, "G729", 8000))
    assert not supported(Codec(0, "PCMU", 16000))
    with pytest.raises(CodecError):
        create_codec(Codec(18, "G729", 8000))


def energy(frames: list[bytes]) -> float:
    values = [v for f in frames for v in samples(f)]
    return math.sqrt(sum(v * v for v in values) / len(values))


def test_opus_round_trip_preserves_a_tone() -> None:
    pytest.importorskip("av")
    codec = create_codec(Codec(111, "opus", 48000, 2))
    assert (codec.clock_rate, codec.samples_per_frame) == (48000, 960)
    decoded = []
    for i in range(50):
        payload = codec.encode(sine_frame(i))
        assert 0 < len(payload) < 200
        decoded.append(codec.decode(payload))
    assert all(len(f) == FRAME_BYTES for f in decoded)
    # After the codec delay the 440 Hz tone comes through at about its energy (8000/sqrt 2).
    assert energy(decoded[10:]) == pytest.approx(8000 / math.sqrt(2), rel=0.2)


def test_opus_rejects_wrong_frame_size_and_garbage() -> None:
    pytest.importorskip("av")
    codec = create_codec(Codec(111, "opus", 48000, 2))
    with pytest.raises(CodecError):
        codec.encode(b"\x00" * 10)
    with pytest.raises(CodecError):
        codec.decode(b"\xff\xff\xff\xff\xff")
