"""WAV reading (PCM, A-law, mu-law, stereo, other rates) and writing."""

from __future__ import annotations

import math
import struct
import wave
from array import array
from pathlib import Path

import pytest

from sessiond.media import g711
from sessiond.media.errors import WavError
from sessiond.media.wav import build_wav, frames_of, parse_wav, read_wav, write_wav


def sine(freq: float, rate: int, seconds: float, amplitude: int = 10000) -> array[int]:
    n = int(rate * seconds)
    return array(
        "h", (round(amplitude * math.sin(2 * math.pi * freq * i / rate)) for i in range(n))
    )


def riff(fmt_code: int, channels: int, rate: int, bits: int, data: bytes) -> bytes:
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", fmt_code, channels, rate, rate * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"LIST" + struct.pack("<I", 3) + b"abc\x00"  # odd-sized chunk with pad octet
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_written_file_is_read_by_the_wave_module(tmp_path: Path) -> None:
    frames = frames_of(sine(440, 8000, 0.1).tobytes())
    path = tmp_path / "out.wav"
    write_wav(path, frames)
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
        assert w.readframes(w.getnframes()) == b"".join(frames)
    assert read_wav(path) == frames


def test_frames_are_padded_to_20ms() -> None:
    frames = frames_of(b"\x01\x00" * 200)
    assert [len(f) for f in frames] == [320, 320]
    assert frames[1][80:] == bytes(240)


@pytest.mark.parametrize(("code", "encode"), [(6, g711.alaw_encode), (7, g711.ulaw_encode)])
def test_g711_wav(code: int, encode: object) -> None:
    assert callable(encode)
    pcm = sine(300, 8000, 0.04).tobytes()
    law = encode(pcm)
    decoded = parse_wav(riff(code, 1, 8000, 8, law))
    expected = g711.alaw_decode(law) if code == 6 else g711.ulaw_decode(law)
    assert decoded == expected


def test_stereo_is_mixed_down() -> None:
    left = sine(300, 8000, 0.02)
    right = array("h", (0 for _ in left))
    inter = array("h", (v for pair in zip(left, right, strict=True) for v in pair))
    mono = array("h", parse_wav(riff(1, 2, 8000, 16, inter.tobytes())))
    assert list(mono) == [v // 2 for v in left]


def test_8bit_pcm() -> None:
    assert list(array("h", parse_wav(riff(1, 1, 8000, 8, bytes([128, 255, 0]))))) == [
        0,
        127 << 8,
        -128 << 8,
    ]


@pytest.mark.parametrize("rate", [16000, 44100, 48000, 11025])
def test_other_rates_are_resampled_to_8k(rate: int) -> None:
    pcm = parse_wav(build_wav(sine(400, rate, 0.5).tobytes(), rate))
    samples = array("h", pcm)
    assert abs(len(samples) - 4000) <= 1
    # Still a 400 Hz tone: zero crossings about 2 * 400 * 0.5 = 400.
    crossings = sum(1 for a, b in zip(samples, samples[1:], strict=False) if (a < 0) != (b < 0))
    assert 390 <= crossings <= 410
    assert max(samples) > 8000  # the low-pass does not eat a 400 Hz tone


def test_high_frequency_is_attenuated_when_downsampling() -> None:
    samples = array("h", parse_wav(build_wav(sine(7000, 48000, 0.2).tobytes(), 48000)))
    assert max(abs(s) for s in samples) < 6000


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"RIFX0000WAVE",
        riff(1, 1, 8000, 16, b"")[:20],
        riff(3, 1, 8000, 32, b"\x00" * 8),  # float: unsupported
        riff(1, 0, 8000, 16, b"\x00" * 8),
    ],
)
def test_bad_files_raise_wav_error(data: bytes) -> None:
    with pytest.raises(WavError):
        parse_wav(data)


def test_missing_file_raises_wav_error(tmp_path: Path) -> None:
    with pytest.raises(WavError):
        read_wav(tmp_path / "nope.wav")
