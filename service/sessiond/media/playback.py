"""What a leg sends and records, one 20 ms frame per tick: :class:`Player` and :class:`Recorder`.

Both are driven by the media node's tick and never block on anything but a buffered file write:
WAV files are decoded before a play starts (in a thread), and recordings are appended raw with
the RIFF header patched once, when the recording stops.
"""

from __future__ import annotations

import wave
from array import array
from collections.abc import Sequence
from pathlib import Path

from sessiond.media.codecs import FRAME_MS, SAMPLE_RATE, SILENCE
from sessiond.media.tones import ToneGenerator, dtmf_tone_frames

FRAMES_PER_SECOND = 1000 // FRAME_MS
DEFAULT_TONE_SECONDS = 1.0


class Player:
    """A tone or a sequence of frames (a WAV prompt), optionally looped and capped in time.

    ``event_id`` is the id of the ``PlayFinished`` event to publish when it ends (None: play
    silently, e.g. in-band DTMF).
    """

    def __init__(
        self,
        event_id: str | None,
        *,
        frames: Sequence[bytes] = (),
        tone: float | None = None,
        seconds: float | None = None,
        loop: bool = False,
    ) -> None:
        self.event_id = event_id
        self._frames = frames
        self._tone = ToneGenerator((tone,)) if tone is not None else None
        if seconds is None and tone is not None and not loop:
            seconds = DEFAULT_TONE_SECONDS
        self._limit = round(seconds * FRAMES_PER_SECOND) if seconds is not None else None
        self._loop = loop
        self._played = 0

    def next_frame(self) -> bytes | None:
        """The next frame to send, or None when the play is over."""
        if self._limit is not None and self._played >= self._limit:
            return None
        if self._tone is not None:
            frame: bytes | None = self._tone.frame()
        elif not self._frames:
            frame = None
        elif self._played < len(self._frames) or self._loop:
            frame = self._frames[self._played % len(self._frames)]
        else:
            frame = None
        if frame is not None:
            self._played += 1
        return frame


def inband_dtmf(digits: str, duration_ms: int, gap_ms: int = 60) -> list[bytes]:
    """Q.23 tone frames for ``digits`` with silence between them (peer without RFC 4733)."""
    frames: list[bytes] = []
    for digit in digits:
        frames.extend(dtmf_tone_frames(digit, duration_ms))
        frames.extend([SILENCE] * max(1, gap_ms // FRAME_MS))
    return frames


def mix(a: bytes, b: bytes) -> bytes:
    """Sum two PCM16 frames of equal length, clipped to 16 bits."""
    out = array("h", a)
    for i, s in enumerate(array("h", b)):
        out[i] = max(-32768, min(32767, out[i] + s))
    return out.tobytes()


class Recorder:
    """Appends frames to an 8 kHz mono PCM16 WAV file.

    ``direction``: ``in`` records what the peer sends us, ``out`` what we send it, ``both`` the
    two mixed. Frames are written raw (no header rewrite per frame); :meth:`close` fixes the
    header.
    """

    def __init__(self, path: str | Path, direction: str) -> None:
        if direction not in ("in", "out", "both"):
            raise ValueError(f"record direction must be in, out or both, not {direction!r}")
        self.path = str(path)
        self.direction = direction
        self.frames = 0
        self._out = wave.open(self.path, "wb")  # noqa: SIM115 - closed by close()
        self._out.setnchannels(1)
        self._out.setsampwidth(2)
        self._out.setframerate(SAMPLE_RATE)

    def write(self, heard: bytes, sent: bytes) -> None:
        """Record one tick: ``heard`` from the peer, ``sent`` to it."""
        if self.direction == "in":
            frame = heard
        elif self.direction == "out":
            frame = sent
        else:
            frame = mix(heard, sent)
        self._out.writeframesraw(frame)
        self.frames += 1

    def close(self) -> float:
        """Finish the file; returns the recorded duration in seconds."""
        self._out.close()
        return self.frames / FRAMES_PER_SECOND
