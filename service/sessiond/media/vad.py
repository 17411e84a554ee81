"""A frame level in dBov and a talking/not-talking detector with hysteresis.

The level is the RMS of one PCM16 frame relative to full scale (0 dBov = RMS of a full-scale
square wave, 32768), floored at -127 dBov as in RFC 6464, so silence is a number, not -inf.
It is a level detector, not speech recognition: good enough for a "who is talking" indicator,
which is what conference rooms report (TalkingChanged).

Two thresholds and two frame counts keep the state from flapping: talking starts after
``on_frames`` frames at or above ``on_dbov`` in a row, and stops after ``off_frames`` frames
below ``off_dbov`` in a row (the hang time bridges the short pauses between words).
"""

from __future__ import annotations

import math
from array import array
from operator import mul

FLOOR_DBOV = -127.0
_FULL_SCALE = 32768.0


def level_dbov(samples: array[int] | None) -> float:
    """RMS level of one frame in dBov; None (no audio) is the floor."""
    if samples is None or not len(samples):
        return FLOOR_DBOV
    energy = sum(map(mul, samples, samples))
    if not energy:
        return FLOOR_DBOV
    rms = math.sqrt(energy / len(samples))
    return max(FLOOR_DBOV, 20.0 * math.log10(rms / _FULL_SCALE))


class VoiceActivity:
    """Talking state of one stream, updated once per 20 ms frame."""

    __slots__ = ("on_dbov", "off_dbov", "on_frames", "off_frames", "talking", "level", "_run")

    def __init__(
        self,
        *,
        on_dbov: float = -40.0,
        off_dbov: float = -50.0,
        on_frames: int = 2,
        off_frames: int = 15,
    ) -> None:
        if off_dbov > on_dbov:
            raise ValueError("off_dbov must not be above on_dbov")
        if on_frames < 1 or off_frames < 1:
            raise ValueError("on_frames and off_frames must be at least 1")
        self.on_dbov = on_dbov
        self.off_dbov = off_dbov
        self.on_frames = on_frames
        self.off_frames = off_frames
        self.talking = False
        self.level = FLOOR_DBOV
        self._run = 0  # consecutive frames pointing at the other state

    def update(self, samples: array[int] | None) -> bool | None:
        """Feed one frame (None: nothing arrived); the new state if it changed, else None."""
        self.level = level_dbov(samples)
        if self.talking:
            crossing = self.level < self.off_dbov
            needed = self.off_frames
        else:
            crossing = self.level >= self.on_dbov
            needed = self.on_frames
        self._run = self._run + 1 if crossing else 0
        if self._run < needed:
            return None
        self.talking = not self.talking
        self._run = 0
        return self.talking
