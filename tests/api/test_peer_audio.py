"""The peer-audio example, run as a user runs it: Alice calls Bob over real SIP and RTP, both
send a tone, both save WAV files; Bob must have heard 440 Hz and Alice 880 Hz."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .audio_checks import dominant, read_pcm16
from .helpers import free_udp_port

ROOT = Path(__file__).resolve().parents[2]


def test_peer_audio_example(tmp_path: Path) -> None:
    out = tmp_path / "wavs"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "service")}
    ports = [str(free_udp_port()), str(free_udp_port())]
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "peer_audio.py"), "--out", str(out)]
        + ["--alice-port", ports[0], "--bob-port", ports[1]],
        capture_output=True,
        text=True,
        timeout=25,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    tones = (440.0, 880.0)
    heard = {}
    for name in ("alice_sent", "alice_received", "bob_sent", "bob_received"):
        params, samples = read_pcm16(out / f"{name}.wav")
        assert (params.nchannels, params.sampwidth, params.framerate) == (1, 2, 8000)
        assert len(samples) >= 8000 * 2.5, name  # about 3 s each
        heard[name] = dominant(samples, tones)
    assert heard == {
        "alice_sent": 440.0,
        "bob_received": 440.0,
        "bob_sent": 880.0,
        "alice_received": 880.0,
    }
    # the received tones are real audio, not a few stray packets: most frames carry the tone
    _, received = read_pcm16(out / "bob_received.wav")
    loud = sum(1 for k in range(0, len(received) - 160, 160) if max(received[k : k + 160]) > 2000)
    assert loud >= 100  # of ~175 frames: at least 2 s of tone
