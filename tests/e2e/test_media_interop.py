"""Media interop with real peers: sipp replaying RTP pcaps, baresip in a network namespace.

* sipp ``uac_pcap`` calls ``sessiond run`` (real Redis) and replays sip-tester's G.711 A-law
  pcap then an RFC 4733 DTMF pcap; sessiond records what it hears. The digits and the audio
  level expected are read from the pcaps themselves (independent decoder in media_checks).
* baresip (Debian baresip-core) calls ``sessiond run`` inside ``unshare -n`` (baresip binds
  wildcard addresses); sessiond plays 440 Hz to it while recording baresip's 880 Hz source.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .harness import Cluster, free_port, wait_for
from .media_checks import (
    alaw_pcm,
    app_events,
    dominant_tone,
    loudest_window,
    pcap_rtp,
    read_wav,
    rms,
    telephone_event_digits,
)
from .netns_run import netns_missing, run_driver

pytestmark = [pytest.mark.redis, pytest.mark.slow]

PCAP_DIR = Path("/usr/share/sip-tester")
NEEDS_SIPP = pytest.mark.skipif(
    shutil.which("sipp") is None or not (PCAP_DIR / "g711a.pcap").exists(),
    reason="sipp or its pcaps (Debian sip-tester) missing",
)
TELEPHONE_EVENT_PT = 101  # what sipp's uac_pcap SDP offers (a=rtpmap:101 telephone-event/8000)


def _link_pcaps(tmp_path: Path, names: list[str]) -> None:
    """sipp resolves play_pcap_audio paths against its cwd: provide ./pcap/<name>."""
    (tmp_path / "pcap").mkdir(exist_ok=True)
    for name in names:
        target = tmp_path / "pcap" / name
        if not target.exists():
            target.symlink_to(PCAP_DIR / name)


def _multi_digit_scenario(tmp_path: Path, pcaps: list[str], audio_ms: int = 3000) -> Path:
    """sipp's own uac_pcap scenario, with the single DTMF pcap replaced by several."""
    text = subprocess.run(
        ["sipp", "-sd", "uac_pcap"], capture_output=True, text=True, timeout=10, check=False
    ).stdout
    block = re.search(
        r"<nop>\s*<action>\s*<exec play_pcap_audio=\"pcap/dtmf_2833_1.pcap\"/>\s*</action>\s*"
        r"</nop>",
        text,
    )
    assert block is not None, "sipp's uac_pcap scenario changed: no dtmf_2833_1 play"
    plays = "".join(
        f'<nop><action><exec play_pcap_audio="pcap/{name}"/></action></nop>\n'
        '<pause milliseconds="400"/>\n'
        for name in pcaps
    )
    text = text[: block.start()] + plays + text[block.end() :]
    # sipp stops a running pcap play when the call starts another; shorten the audio part.
    text = text.replace('<pause milliseconds="8000"/>', f'<pause milliseconds="{audio_ms}"/>')
    # time for the test to stop the recording after the last digit, before sipp's BYE
    text = text.replace('<pause milliseconds="1000"/>', '<pause milliseconds="2500"/>')
    path = tmp_path / "uac_pcap_digits.xml"
    path.write_text(text)
    return path


def _sipp_pcap_call(
    cluster: Cluster,
    tmp_path: Path,
    scenario: list[str],
    pcaps: list[str],
    during: Callable[[str], None] | None = None,
    record: bool = True,
) -> tuple[str, Path, str]:
    """One sipp pcap call to sessiond; record it once Established. (sid, wav, sipp output).

    ``during(sid)`` runs after the Record command, while sipp is still in the call.
    """
    from sessiond.cli.main import main

    port = cluster.start_run()
    _link_pcaps(tmp_path, pcaps)
    wav = tmp_path / "heard.wav"
    caller = subprocess.Popen(
        [
            "sipp",
            *scenario,
            f"127.0.0.1:{port}",
            "-m",
            "1",
            "-mp",
            str(free_port()),
            "-p",
            str(free_port()),
            "-buff_size",
            "4194304",
            "-nostdin",
            "-timeout",
            "40",
            "-timeout_error",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert wait_for(
            lambda: [s["state"] for s in cluster.sessions()] == ["Established"], timeout=10
        ), cluster.log("run")[-2000:]
        sid = cluster.sessions()[0]["sid"]
        if record:
            rc = main(["ctl", *cluster.common(), "record", sid, str(wav), "--direction", "in"])
            assert rc == 0
        if during is not None:
            during(sid)
        out, _ = caller.communicate(timeout=45)
    finally:
        if caller.poll() is None:
            caller.kill()
            caller.communicate()
    assert caller.returncode == 0, out[-3000:]
    assert wait_for(lambda: cluster.sessions()[0]["state"] == "Terminated", timeout=10)
    return sid, wav, out


def _events_for(cluster: Cluster, sid: str) -> list[dict[str, Any]]:
    from sessiond.store import Keys

    stream = Keys(cluster.namespace).app_events()
    return [e for e in app_events(cluster.redis(), stream) if e["sid"] == sid]


def _check_recording(wav: Path, pcap_rms: float) -> float:
    """The WAV is valid 8 kHz mono PCM16 and carries the pcap's speech; returns its length."""
    rate, samples = read_wav(wav)
    assert rate == 8000
    seconds = len(samples) / rate
    assert seconds > 2.0, f"recording is {seconds:.2f} s"
    # The pcap's speech, not silence or noise: the loudest second of the recording is as loud
    # as the loudest second of the pcap's own audio (same codec, no gain in between).
    heard = rms(loudest_window(samples, rate))
    assert heard > 0.6 * pcap_rms, (heard, pcap_rms)
    assert heard < 1.5 * pcap_rms, (heard, pcap_rms)
    return seconds


def _digits(cluster: Cluster, sid: str) -> list[str]:
    """Digits the media node reported to the workers (its DtmfReceived events, with data)."""
    from sessiond.store import Keys

    keys = Keys(cluster.namespace)
    stream = keys.events(keys.partition_of(sid))
    return [
        e["data"]["digit"]
        for e in app_events(cluster.redis(), stream)
        if e["type"] == "DtmfReceived" and e["sid"] == sid
    ]


def _check_published_digits(cluster: Cluster, sid: str, expected: list[str]) -> None:
    """Each digit reached the application stream exactly once (one DtmfReceived per digit)."""
    published = [e for e in _events_for(cluster, sid) if e["type"] == "DtmfReceived"]
    assert len(published) == len(expected), published
    assert len({e["id"] for e in published}) == len(published)
    digits = [e["data"].get("digit") for e in published]
    # None everywhere: the known bug test_app_dtmf_event_carries_the_digit documents
    assert digits in (expected, [None] * len(expected)), published


@NEEDS_SIPP
def test_sipp_uac_pcap_dtmf_and_recording(cluster: Cluster, tmp_path: Path) -> None:
    """sipp's built-in uac_pcap: G.711 A-law speech, then RFC 4733 digit(s) from a pcap.

    The recording is closed by the media node when the BYE destroys the leg.
    """
    pcaps = ["g711a.pcap", "dtmf_2833_1.pcap"]
    expected = telephone_event_digits(pcap_rtp(PCAP_DIR / pcaps[1]), TELEPHONE_EVENT_PT)
    assert expected == ["1"]  # what sip-tester ships; the assertion below uses the pcap anyway
    speech = alaw_pcm(pcap_rtp(PCAP_DIR / pcaps[0]))
    sid, wav, _ = _sipp_pcap_call(cluster, tmp_path, ["-sn", "uac_pcap"], pcaps)

    assert wait_for(lambda: len(_digits(cluster, sid)) >= len(expected), timeout=5)
    assert _digits(cluster, sid) == expected, _events_for(cluster, sid)
    _check_published_digits(cluster, sid, expected)
    _check_recording(wav, rms(loudest_window(speech, 8000)))


@NEEDS_SIPP
def test_sipp_pcap_several_digits_each_once(cluster: Cluster, tmp_path: Path) -> None:
    """Four digits from four pcaps (increasing RTP timestamps): each reported exactly once.

    The recording is stopped by the application (StopRecord) while the call is up, so its
    RecordingStopped reaches the application stream.
    """
    from sessiond.cli.main import main

    digit_pcaps = [
        "dtmf_2833_1.pcap",
        "dtmf_2833_5.pcap",
        "dtmf_2833_9.pcap",
        "dtmf_2833_pound.pcap",
    ]
    expected = [
        d
        for name in digit_pcaps
        for d in telephone_event_digits(pcap_rtp(PCAP_DIR / name), TELEPHONE_EVENT_PT)
    ]
    assert expected == ["1", "5", "9", "#"]
    scenario = _multi_digit_scenario(tmp_path, digit_pcaps)
    speech = alaw_pcm(pcap_rtp(PCAP_DIR / "g711a.pcap"))

    def stop_after_last_digit(sid: str) -> None:
        assert wait_for(lambda: len(_digits(cluster, sid)) >= len(expected), timeout=20)
        assert main(["ctl", *cluster.common(), "record", sid, "--stop"]) == 0

    sid, wav, _ = _sipp_pcap_call(
        cluster,
        tmp_path,
        ["-sf", str(scenario)],
        ["g711a.pcap", *digit_pcaps],
        stop_after_last_digit,
    )

    events = _events_for(cluster, sid)
    assert _digits(cluster, sid) == expected, events
    _check_published_digits(cluster, sid, expected)
    seconds = _check_recording(wav, rms(loudest_window(speech, 8000)))
    stopped = [e for e in events if e["type"] == "RecordingStopped"]
    assert len(stopped) == 1, events
    data = stopped[0]["data"]
    assert data["reason"] == "stopped"
    if "path" in data or "seconds" in data:
        assert data["path"] == str(wav)
        assert abs(data["seconds"] - seconds) < 0.05, (stopped, seconds)


@NEEDS_SIPP
def test_recording_closed_by_hangup_is_reported(cluster: Cluster, tmp_path: Path) -> None:
    from sessiond.cli.main import main

    port = cluster.start_run()
    wav = tmp_path / "short.wav"
    caller = subprocess.Popen(
        ["sipp", "-sn", "uac", f"127.0.0.1:{port}", "-m", "1", "-d", "1500"]
        + ["-mp", str(free_port()), "-p", str(free_port()), "-buff_size", "4194304"]
        + ["-nostdin", "-timeout", "20", "-timeout_error"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert wait_for(lambda: [s["state"] for s in cluster.sessions()] == ["Established"])
        sid = cluster.sessions()[0]["sid"]
        assert main(["ctl", *cluster.common(), "record", sid, str(wav)]) == 0
        out, _ = caller.communicate(timeout=25)
    finally:
        if caller.poll() is None:
            caller.kill()
            caller.communicate()
    assert caller.returncode == 0, out[-2000:]
    assert wait_for(lambda: cluster.sessions()[0]["state"] == "Terminated")
    assert read_wav(wav)[1], "the media node wrote no audio"
    assert wait_for(
        lambda: any(e["type"] == "RecordingStopped" for e in _events_for(cluster, sid)),
        timeout=5,
    ), [e["type"] for e in _events_for(cluster, sid)]


@NEEDS_SIPP
def test_app_dtmf_event_carries_the_digit(cluster: Cluster, tmp_path: Path) -> None:
    scenario = _multi_digit_scenario(tmp_path, ["dtmf_2833_7.pcap"], audio_ms=500)
    sid, _, _ = _sipp_pcap_call(
        cluster,
        tmp_path,
        ["-sf", str(scenario)],
        ["g711a.pcap", "dtmf_2833_7.pcap"],
        record=False,
    )
    assert _digits(cluster, sid) == ["7"]  # the media node did report it, with the digit
    published = [e for e in _events_for(cluster, sid) if e["type"] == "DtmfReceived"]
    assert [e["data"].get("digit") for e in published] == ["7"], published


def _tone_seconds(samples: Any, rate: int, freq: float, others: list[float]) -> float:
    """Seconds of 20 ms frames where ``freq`` is loud and stronger than every other bin."""
    frame = rate // 50
    count = 0
    for i in range(0, len(samples) - frame + 1, frame):
        chunk = samples[i : i + frame]
        if rms(chunk) < 1000:
            continue
        best, _ = dominant_tone(chunk, rate, [freq, *others])
        count += best == freq
    return count / 50


def test_baresip_hears_sessiond_tone_and_sessiond_records_baresip(tmp_path: Path) -> None:
    """baresip calls sessiond in a private network namespace (Redis, sessiond, baresip inside).

    sessiond plays 440 Hz for 4 s (``ctl play``) and records what it hears (``ctl record
    --direction in``) while baresip's microphone is an 880 Hz WAV (aufile) and its sndfile
    module dumps what it decodes. Both directions are checked with Goertzel filters.
    """
    why_not = netns_missing()
    if why_not is not None:
        pytest.skip(why_not)
    result = run_driver("netns_baresip.py", tmp_path, timeout=55)
    logs = result["logs"]
    assert result["terminated"], logs

    sid = result["sid"]
    types = [e["type"] for e in result["app_events"] if e["sid"] == sid]
    assert types[:3] == ["IncomingCall", "Answered", "Established"], types
    assert "PlayFinished" in types, types
    assert "RecordingStopped" in types, types

    others = [300.0, 660.0, 880.0, 1000.0, 1320.0]
    decoded = [p for p in result["baresip_dumps"] if p.endswith("-dec.wav")]
    assert len(decoded) == 1, result["baresip_dumps"]
    rate, heard = read_wav(decoded[0])
    best, powers = dominant_tone(loudest_window(heard, rate), rate, [440.0, *others])
    assert best == 440.0, powers
    assert powers[440.0] > 100 * max(powers[f] for f in others), powers
    played = _tone_seconds(heard, rate, 440.0, others)
    assert 3.5 <= played <= 4.5, f"baresip heard 440 Hz for {played:.2f} s, sessiond played 4 s"

    rate, recorded = read_wav(result["sessiond_recording"])
    assert len(recorded) / rate > 3.5
    best, powers = dominant_tone(loudest_window(recorded, rate), rate, [880.0, 440.0, 300.0])
    assert best == 880.0, powers
    assert powers[880.0] > 100 * max(powers[440.0], powers[300.0]), powers
    assert _tone_seconds(recorded, rate, 880.0, [440.0, 300.0, 1000.0]) > 3.5
