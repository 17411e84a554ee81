"""baresip as the phone behind the home NAT of tests/net/bed.py, and the checks its tests
share: its configuration, starting it, sessiond playing and recording on a call, captures on
a host's interface, and tones found by Goertzel filters (tests/e2e/media_checks.py).

Used by test_baresip_nat.py (UDP, plain RTP) and test_baresip_nat_tls.py (TLS, SRTP).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.media_checks import (
    dominant_tone,
    g711_pcm,
    loudest_window,
    pcap_rtp,
    read_wav,
    rms,
    write_tone_wav,
)
from tests.e2e.netns_run import baresip_command, write_baresip
from tests.e2e.netns_run import baresip_missing as netns_baresip_missing
from tests.net.bed import HOME, Bed, why_not

PHONE_PORT = 5070
PHONE_RTP = "10000-10100"  # its rtp_ports
PHONE_RTP_PORTS = range(10000, 10101)
MIC = 880.0  # the phone's microphone
OTHERS = [300.0, 440.0, 660.0, 1000.0, 1320.0]
PLAY_SECONDS = 3.0


def baresip_missing(*modules: str) -> str | None:
    """Why baresip (with ``modules`` besides the usual) or dumpcap cannot run here."""
    if shutil.which("dumpcap") is None:
        return "dumpcap missing (apt-get install -y tshark)"
    return netns_baresip_missing(*modules)


def phone_bed(tmp_path: Path, *modules: str) -> Iterator[Bed]:
    """A bed for a baresip test (skips with the reason when one cannot be built here)."""
    reason = (
        why_not()
        or baresip_missing(*modules)
        or (None if shutil.which("redis-server") else "redis-server missing")
    )
    if reason:
        pytest.skip(reason)
    with Bed(tmp_path) as built:
        yield built


def start_phone(
    bed: Bed, account: str, dial: str | None = None, extra_config: str = "", stdin: bool = False
) -> tuple[subprocess.Popen[Any], Path]:
    """baresip on the home host, its microphone an ``MIC`` Hz WAV; ``account`` is its
    accounts line; it dials ``dial`` when given. Returns it and the directory where its
    sndfile module dumps what it decoded (``*-dec.wav``, one per call). With ``stdin``
    (and ``module stdio.so`` in ``extra_config``) it takes menu commands on its standard
    input (``/dial URI``, ``/hangup``, each ended by a newline)."""
    source = bed.work / "mic.wav"
    write_tone_wav(source, MIC, 60.0)
    listen = f"{HOME}:{PHONE_PORT}"
    cfg, dump = write_baresip(
        bed.work, listen, account + "\n", source, rtp=PHONE_RTP, extra_config=extra_config
    )
    command = baresip_command(cfg, 90, dial=dial)
    return bed.start("home", "baresip", command, stdin=stdin), dump


def command(phone: subprocess.Popen[Any], line: str) -> None:
    """A menu command (``/dial URI``, ``/hangup``) to baresip started with ``stdin`` and
    its stdio module: typed, then Enter."""
    assert phone.stdin is not None
    phone.stdin.write(line.encode() + b"\n")
    phone.stdin.flush()


def established(bed: Bed, redis_url: str, timeout: float = 20) -> str:
    """The sid of an Established call (polling ``ctl list``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in bed.ctl(redis_url, "list", "--state", "Established").splitlines()[1:]:
            fields = line.split()
            if len(fields) > 2 and fields[2] == "Established":
                return fields[0]
        time.sleep(0.3)
    raise AssertionError(f"no Established call\n{bed.log('sessiond')}\n{bed.log('baresip')}")


def tone_seconds(samples: Any, rate: int, freq: float) -> float:
    """Seconds of 20 ms frames where ``freq`` is loud and the strongest of the set."""
    frame = rate // 50
    count = 0
    for i in range(0, len(samples) - frame + 1, frame):
        chunk = samples[i : i + frame]
        if rms(chunk) >= 1000:
            best, _ = dominant_tone(chunk, rate, [freq, MIC, *OTHERS])
            count += best == freq
    return count / 50


def heard(path: Path | str, tone: float, seconds: float) -> None:
    """The WAV at ``path`` has ``tone`` as its loudest second's tone, for ``seconds``."""
    rate, samples = read_wav(path)
    best, powers = dominant_tone(loudest_window(samples, rate), rate, [tone, *OTHERS, MIC])
    assert best == tone, (path, powers)
    assert tone_seconds(samples, rate, tone) >= seconds, (path, tone)


def heard_pcm(samples: array[int], tone: float, seconds: float) -> None:
    """8 kHz ``samples`` carry ``tone`` for ``seconds`` (whatever else they carry)."""
    assert len(samples) > 8000 * seconds, f"{len(samples)} samples"
    found = tone_seconds(samples, 8000, tone)
    assert found >= seconds, f"{tone} Hz for {found} s only"


def heard_rtp(pcap: Path, tone: float, seconds: float) -> None:
    """The G.711 RTP captured in ``pcap`` carries ``tone`` for ``seconds``."""
    samples = g711_pcm(pcap_rtp(pcap))
    assert len(samples) > 8000 * seconds, f"{len(samples)} samples captured"
    best, powers = dominant_tone(loudest_window(samples, 8000), 8000, [tone, *OTHERS, MIC])
    assert best == tone, powers
    assert tone_seconds(samples, 8000, tone) >= seconds


def exchange(bed: Bed, redis_url: str, sid: str, tone: float, recording: Path) -> None:
    """sessiond plays ``tone`` to the phone and records what the phone sends."""
    bed.ctl(redis_url, "record", sid, str(recording), "--direction", "in")
    bed.ctl(redis_url, "play", sid, "--tone", str(tone), "--seconds", str(PLAY_SECONDS))
    time.sleep(PLAY_SECONDS + 0.5)
    bed.ctl(redis_url, "record", sid, "--stop")


def hold_and_resume(bed: Bed, redis_url: str, sid: str) -> None:
    """sessiond holds the call and resumes it (re-INVITEs to the phone)."""
    bed.ctl(redis_url, "hold", sid)
    bed.wait_session(redis_url, sid, "hold", "local")
    bed.ctl(redis_url, "resume", sid)
    bed.wait_session(redis_url, sid, "hold", "")
    assert bed.session(redis_url, sid)["state"] == "Established"


def hang_up(bed: Bed, redis_url: str, sid: str) -> None:
    bed.ctl(redis_url, "hangup", sid)
    bed.wait_session(redis_url, sid, "state", "Terminated")


def packets(pcap: Path) -> int:
    """The number of packets in a classic pcap file."""
    data = pcap.read_bytes()
    count, offset = 0, 24
    while offset + 16 <= len(data):
        offset += 16 + int.from_bytes(data[offset + 8 : offset + 12], "little")
        count += 1
    return count


def capture(bed: Bed, role: str, name: str, bpf: str) -> tuple[subprocess.Popen[Any], Path]:
    """dumpcap on ``role``'s interface with filter ``bpf``; returns once it captures."""
    pcap = bed.work / f"{name}.pcap"
    iface = {"home": "eth0", "pub": "eth0"}[role]
    proc = bed.start(role, name, ["dumpcap", "-q", "-P", "-i", iface, "-w", str(pcap), "-f", bpf])
    for _ in range(50):  # dumpcap writes the file's header once it captures
        if pcap.exists() or proc.poll() is not None:
            break
        time.sleep(0.1)
    assert pcap.exists(), bed.log(name)
    return proc, pcap
