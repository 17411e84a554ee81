"""WAV files to and from 20 ms 8 kHz mono PCM16 frames (prompts to play, calls to record).

Reading accepts RIFF/WAVE with PCM 8/16-bit, A-law (format 6) or mu-law (format 7), also in
WAVE_FORMAT_EXTENSIBLE wrapping, mono or multi-channel (mixed down by averaging), at any sample
rate (resampled to 8 kHz by linear interpolation after a moving-average low-pass). Writing
produces 8 kHz mono PCM16 that Python's ``wave`` module (and everything else) reads.
"""

from __future__ import annotations

import io
import struct
import wave
from array import array
from pathlib import Path

from sessiond.media import g711
from sessiond.media.codecs import FRAME_BYTES, SAMPLE_RATE
from sessiond.media.errors import WavError

PCM, ALAW, MULAW, EXTENSIBLE = 1, 6, 7, 0xFFFE


def _chunks(data: bytes) -> dict[bytes, bytes]:
    """RIFF chunks of a WAVE file: ``"RIFF" size "WAVE"`` then ``id size body [pad]``."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise WavError("not a RIFF/WAVE file")
    chunks: dict[bytes, bytes] = {}
    offset = 12
    while offset + 8 <= len(data):
        cid, size = struct.unpack_from("<4sI", data, offset)
        body = data[offset + 8 : offset + 8 + size]
        chunks.setdefault(cid, body)
        offset += 8 + size + (size & 1)  # chunks are padded to an even size
    if b"fmt " not in chunks or b"data" not in chunks:
        raise WavError("WAVE file without fmt or data chunk")
    return chunks


def _to_pcm16(fmt: bytes, body: bytes) -> tuple[array[int], int, int]:
    if len(fmt) < 16:
        raise WavError("fmt chunk too short")
    code, channels, rate, _, block, bits = struct.unpack_from("<HHIIHH", fmt)
    if code == EXTENSIBLE and len(fmt) >= 26:
        code = struct.unpack_from("<H", fmt, 24)[0]  # first two octets of the SubFormat GUID
    if channels < 1 or rate < 1000:
        raise WavError(f"unusable WAVE format: {channels} channels at {rate} Hz")
    body = body[: len(body) - len(body) % max(block, 1)]
    if code == PCM and bits == 16:
        samples = array("h", body)
    elif code == PCM and bits == 8:
        samples = array("h", ((b - 128) << 8 for b in body))
    elif code in (ALAW, MULAW) and bits == 8:
        decoded = g711.alaw_decode(body) if code == ALAW else g711.ulaw_decode(body)
        samples = array("h", decoded)
    else:
        raise WavError(f"unsupported WAVE encoding {code} with {bits} bits per sample")
    return samples, channels, rate


def _mixdown(samples: array[int], channels: int) -> array[int]:
    if channels == 1:
        return samples
    columns = [samples[c::channels] for c in range(channels)]
    return array("h", (sum(frame) // channels for frame in zip(*columns, strict=False)))


def _resample(samples: array[int], rate: int) -> array[int]:
    if rate == SAMPLE_RATE or not samples:
        return samples
    ratio = rate / SAMPLE_RATE
    source: list[float] | array[int] = samples
    width = int(ratio)
    if width > 1:  # crude anti-aliasing: moving average over one output period
        acc = [0, *_running_sum(samples)]
        n = len(samples)
        source = [(acc[min(i + width, n)] - acc[i]) / (min(i + width, n) - i) for i in range(n)]
    out_len = int(len(samples) / ratio)
    out = array("h", bytes(2 * out_len))
    last = len(source) - 1
    for j in range(out_len):
        pos = j * ratio
        i = int(pos)
        frac = pos - i
        nxt = source[min(i + 1, last)]
        out[j] = max(-32768, min(32767, round(source[i] + (nxt - source[i]) * frac)))
    return out


def _running_sum(samples: array[int]) -> list[int]:
    total, sums = 0, []
    for s in samples:
        total += s
        sums.append(total)
    return sums


def parse_wav(data: bytes) -> bytes:
    """Decode a WAVE file's bytes to 8 kHz mono PCM16 little-endian."""
    chunks = _chunks(data)
    samples, channels, rate = _to_pcm16(chunks[b"fmt "], chunks[b"data"])
    return _resample(_mixdown(samples, channels), rate).tobytes()


def frames_of(pcm: bytes) -> list[bytes]:
    """Split PCM16 into 20 ms frames, zero-padding the last one."""
    frames = [pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)]
    if frames and len(frames[-1]) < FRAME_BYTES:
        frames[-1] += bytes(FRAME_BYTES - len(frames[-1]))
    return frames


def read_wav(path: str | Path) -> list[bytes]:
    """Read a WAV file into 20 ms 8 kHz mono PCM16 frames."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise WavError(f"cannot read {path}: {exc}") from exc
    return frames_of(parse_wav(data))


def build_wav(pcm: bytes, rate: int = SAMPLE_RATE) -> bytes:
    """A mono PCM16 WAVE file containing ``pcm``."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm)
    return buffer.getvalue()


def write_wav(path: str | Path, frames: list[bytes], rate: int = SAMPLE_RATE) -> None:
    """Write PCM16 frames as a mono WAV file."""
    Path(path).write_bytes(build_wav(b"".join(frames), rate))
