"""Tone generation into 20 ms 8 kHz PCM16 frames (call progress tones, in-band DTMF)."""

from __future__ import annotations

import math
from array import array

from sessiond.media.codecs import FRAME_SAMPLES, SAMPLE_RATE

# ITU-T Q.23 DTMF frequency pairs (low group, high group) in Hz.
DTMF_FREQUENCIES: dict[str, tuple[float, float]] = {
    digit: (low, high)
    for row, low in zip(("123A", "456B", "789C", "*0#D"), (697.0, 770.0, 852.0, 941.0), strict=True)
    for digit, high in zip(row, (1209.0, 1336.0, 1477.0, 1633.0), strict=True)
}


class ToneGenerator:
    """A sum of sines with continuous phase across frames.

    ``amplitude`` is the peak of each component (the sum is clipped to 16 bits).
    """

    def __init__(
        self, frequencies: tuple[float, ...], amplitude: int = 8000, rate: int = SAMPLE_RATE
    ) -> None:
        self.frequencies = frequencies
        self.amplitude = amplitude
        self.rate = rate
        self._n = 0

    def frame(self, samples: int = FRAME_SAMPLES) -> bytes:
        """The next ``samples`` samples (default 20 ms at 8 kHz) as PCM16 little-endian."""
        steps = [2 * math.pi * f / self.rate for f in self.frequencies]
        start = self._n
        self._n += samples
        values = array(
            "h",
            (
                max(-32768, min(32767, round(sum(self.amplitude * math.sin(w * n) for w in steps))))
                for n in range(start, start + samples)
            ),
        )
        return values.tobytes()


def tone_frames(frequency: float, duration_ms: int, amplitude: int = 8000) -> list[bytes]:
    """Whole 20 ms frames of a sine tone lasting ``duration_ms`` (rounded down to frames)."""
    gen = ToneGenerator((frequency,), amplitude)
    return [gen.frame() for _ in range(duration_ms // 20)]


def dtmf_tone_frames(digit: str, duration_ms: int = 100, amplitude: int = 6000) -> list[bytes]:
    """In-band DTMF (both Q.23 frequencies) for ``digit``."""
    try:
        pair = DTMF_FREQUENCIES[digit.upper()]
    except KeyError:
        raise ValueError(f"not a DTMF digit: {digit!r}") from None
    gen = ToneGenerator(pair, amplitude)
    return [gen.frame() for _ in range(duration_ms // 20)]
