"""Tone detection for the API, media and end-to-end tests: a Goertzel filter over PCM16
samples."""

from __future__ import annotations

import math
import wave
from array import array
from pathlib import Path


def goertzel(samples: array[int] | list[int], frequency: float, rate: int = 8000) -> float:
    """Signal power at ``frequency`` (one DFT bin, by the Goertzel recurrence)."""
    coeff = 2 * math.cos(2 * math.pi * frequency / rate)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + coeff * s1 - s2, s1
    return s1 * s1 + s2 * s2 - coeff * s1 * s2


def dominant(samples: array[int], candidates: tuple[float, ...]) -> float:
    """The candidate frequency with the most power."""
    return max(candidates, key=lambda f: goertzel(samples, f))


def read_pcm16(path: Path) -> tuple[wave._wave_params, array[int]]:
    """A WAV file's parameters and samples (``wave`` raises if the file is not valid)."""
    with wave.open(str(path), "rb") as w:
        params = w.getparams()
        samples = array("h", w.readframes(w.getnframes()))
    return params, samples
