"""A real softphone behind a home NAT (tests/net/bed.py): baresip on 192.168.1.2, behind a
masquerading router that drops whatever the WAN sends unasked, calls sessiond on the public
host (itself behind a 1:1 NAT, bound to 0.0.0.0, advertising the public address) over UDP.

One test, in the order a user would meet it:

1. baresip calls; sessiond answers, plays 440 Hz to the phone and records the phone's
   880 Hz microphone. sessiond holds and resumes the call (its re-INVITEs must reach the
   phone through the router's binding: the phone's Contact names 192.168.1.2), plays 660 Hz
   and records again; it hangs up (a BYE through the binding).
2. sessiond calls the phone back at the address its first call came from (the dialog
   target the edge published); baresip answers by itself; 1000 Hz one way, 880 Hz back.

Audio is checked by Goertzel filters (tests/e2e/media_checks.py) in both directions of both
calls: RTP crossed both NATs both ways (the phone's SDP names its private address, so
sessiond's media only reaches it by latching onto where its RTP comes from). Both calls ask
for ``latch_private`` (the routes file for the incoming one, ``ctl call --latch-private``
for the call back): a capture on the public host shows that nothing at all, RTP or RTCP,
was sent to the phone's private address (without the option, RTP and RTCP go there until
the phone's RTP arrives, and again after each re-INVITE).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
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
from tests.net.bed import HOME, PUBLIC, Bed, why_not

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]
SIP_PORT = 5060
PHONE_PORT = 5070
MIC = 880.0
OTHERS = [300.0, 440.0, 660.0, 1000.0, 1320.0]
PLAY_SECONDS = 3.0

BARESIP_CONFIG = """\
poll_method epoll
sip_listen {home}:{port}
call_local_timeout 20
audio_path /usr/share/baresip
audio_player aubridge,nil
audio_alert aubridge,nil
audio_source aufile,{source}
ausrc_srate 8000
auplay_srate 8000
ausrc_channels 1
auplay_channels 1
rtp_ports 10000-10100
rtcp_mux no
jitter_buffer_delay 1-10
module_path /usr/lib/baresip/modules
module g711.so
module aufile.so
module aubridge.so
module sndfile.so
module menu.so
module_app account.so
snd_path {dump}
"""


def _baresip_missing() -> str | None:
    if shutil.which("baresip") is None:
        return "baresip missing (apt-get install -y baresip-core)"
    for name in ("g711", "aufile", "aubridge", "sndfile", "menu", "account"):
        if not Path(f"/usr/lib/baresip/modules/{name}.so").exists():
            return f"baresip module {name}.so missing"
    if shutil.which("dumpcap") is None:
        return "dumpcap missing (apt-get install -y tshark)"
    return None


@pytest.fixture
def bed(tmp_path: Path) -> Iterator[Bed]:
    reason = (
        why_not()
        or _baresip_missing()
        or (None if shutil.which("redis-server") else "redis-server missing")
    )
    if reason:
        pytest.skip(reason)
    with Bed(tmp_path) as built:
        yield built


def _established(bed: Bed, redis_url: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in bed.ctl(redis_url, "list", "--state", "Established").splitlines()[1:]:
            fields = line.split()
            if len(fields) > 2 and fields[2] == "Established":
                return fields[0]
        time.sleep(0.3)
    raise AssertionError(f"no Established call\n{bed.log('sessiond')}\n{bed.log('baresip')}")


def _tone_seconds(samples: Any, rate: int, freq: float) -> float:
    """Seconds of 20 ms frames where ``freq`` is loud and the strongest of the set."""
    frame = rate // 50
    count = 0
    for i in range(0, len(samples) - frame + 1, frame):
        chunk = samples[i : i + frame]
        if rms(chunk) >= 1000:
            best, _ = dominant_tone(chunk, rate, [freq, MIC, *OTHERS])
            count += best == freq
    return count / 50


def _heard(path: Path | str, tone: float, seconds: float) -> None:
    rate, samples = read_wav(path)
    best, powers = dominant_tone(loudest_window(samples, rate), rate, [tone, *OTHERS, MIC])
    assert best == tone, (path, powers)
    assert _tone_seconds(samples, rate, tone) >= seconds, (path, tone)


def _exchange(bed: Bed, redis_url: str, sid: str, tone: float, recording: Path) -> None:
    """sessiond plays ``tone`` to the phone and records what the phone sends."""
    bed.ctl(redis_url, "record", sid, str(recording), "--direction", "in")
    bed.ctl(redis_url, "play", sid, "--tone", str(tone), "--seconds", str(PLAY_SECONDS))
    time.sleep(PLAY_SECONDS + 0.5)
    bed.ctl(redis_url, "record", sid, "--stop")


def _hang_up(bed: Bed, redis_url: str, sid: str) -> None:
    bed.ctl(redis_url, "hangup", sid)
    bed.wait_session(redis_url, sid, "state", "Terminated")


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=8)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _packets(pcap: Path) -> int:
    """The number of packets in a classic pcap file."""
    data = pcap.read_bytes()
    count, offset = 0, 24
    while offset + 16 <= len(data):
        offset += 16 + int.from_bytes(data[offset + 8 : offset + 12], "little")
        count += 1
    return count


def _capture(bed: Bed, role: str, name: str, bpf: str) -> tuple[subprocess.Popen[Any], Path]:
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


def test_phone_behind_nat_calls_holds_and_is_called_back(bed: Bed) -> None:
    redis_url = bed.start_redis()
    routes = bed.work / "routes.yaml"
    routes.write_text("latch_private: true  # our phones are behind NAT\nrules: []\n")
    bed.start_sessiond(
        ["--redis", redis_url, "--listen", f"udp:0.0.0.0:{SIP_PORT}", "--advertise", PUBLIC]
        + ["--rtp-ports", "20000-20100", "--answer", "auto", "--routes", str(routes)]
    )
    # nothing may leave the public host for the phone's LAN address its SDP names
    leak, leaked = _capture(bed, "pub", "leak", f"dst host {HOME}")
    cfg, dump = bed.work / "baresip", bed.work / "dump"
    cfg.mkdir()
    dump.mkdir()
    source = bed.work / "mic.wav"
    write_tone_wav(source, MIC, 60.0)
    (cfg / "config").write_text(
        BARESIP_CONFIG.format(home=HOME, port=PHONE_PORT, source=source, dump=dump)
    )
    (cfg / "accounts").write_text(f"<sip:alice@{PUBLIC}>;regint=0;answermode=auto\n")
    phone = bed.start(
        "home",
        "baresip",
        ["timeout", "90", "baresip", "-4", "-f", str(cfg)]
        + ["-e", f"/dial sip:bob@{PUBLIC}:{SIP_PORT}"],
    )
    try:
        # 1. the phone calls; hold and resume through its NAT; audio both ways; our BYE
        first = _established(bed, redis_url)
        target = bed.session(redis_url, first)["remote_target"]
        assert HOME not in target, target  # reached at its NAT binding, not its LAN address
        heard_first = bed.work / "sessiond_heard_1.wav"
        _exchange(bed, redis_url, first, 440.0, heard_first)
        bed.ctl(redis_url, "hold", first)
        bed.wait_session(redis_url, first, "hold", "local")
        bed.ctl(redis_url, "resume", first)
        bed.wait_session(redis_url, first, "hold", "")
        assert bed.session(redis_url, first)["state"] == "Established"
        # baresip's sndfile dump stops at a hold (its player is made anew), so what reaches
        # the phone after the resume is captured on its LAN interface instead
        capture, pcap = _capture(
            bed,
            "home",
            "phone",
            f"udp and src host {PUBLIC} and dst host {HOME} and portrange 10000-10100",
        )
        heard_resumed = bed.work / "sessiond_heard_1b.wav"
        _exchange(bed, redis_url, first, 660.0, heard_resumed)
        _stop(capture)
        _hang_up(bed, redis_url, first)

        # 2. sessiond calls the phone back where its call came from
        back = bed.ctl(
            redis_url, "call", target, "--from", f"sip:sessiond@{PUBLIC}", "--latch-private"
        ).strip()
        bed.wait_session(redis_url, back, "state", "Established")
        heard_back = bed.work / "sessiond_heard_2.wav"
        _exchange(bed, redis_url, back, 1000.0, heard_back)
        _hang_up(bed, redis_url, back)
        time.sleep(0.5)  # baresip closes its dump files after the BYE
    finally:
        _stop(phone)
        _stop(leak)
    assert _packets(leaked) == 0, "sessiond sent to the phone's private address"
    decoded = sorted(dump.glob("*-dec.wav"), key=lambda p: p.stat().st_mtime)
    assert len(decoded) == 2, (sorted(dump.iterdir()), bed.log("baresip"))
    enough = PLAY_SECONDS - 0.5
    _heard(decoded[0], 440.0, enough)  # the phone heard sessiond: before the hold,
    _heard_rtp(pcap, 660.0, enough)  # after the resume,
    _heard(decoded[1], 1000.0, enough)  # and on the call back
    for recording in (heard_first, heard_resumed, heard_back):  # sessiond heard the phone
        _heard(recording, MIC, enough)


def _heard_rtp(pcap: Path, tone: float, seconds: float) -> None:
    """The G.711 RTP captured in ``pcap`` carries ``tone`` for ``seconds``."""
    samples = g711_pcm(pcap_rtp(pcap))
    assert len(samples) > 8000 * seconds, f"{len(samples)} samples captured"
    best, powers = dominant_tone(loudest_window(samples, 8000), 8000, [tone, *OTHERS, MIC])
    assert best == tone, powers
    assert _tone_seconds(samples, 8000, tone) >= seconds
