"""SRTP (SDES) with a real softphone: baresip (``mediaenc=srtp-mand``) and ``sessiond run``
in a private network namespace, everything on ``lo`` captured (driver: netns_srtp.py).

* baresip calls ``sessiond run --srtp require``, and sessiond (``ctl call``) calls baresip:
  sessiond plays 440 Hz to baresip and records baresip's 880 Hz microphone. The RTP between
  them, decoded as PCMU straight off the wire, holds no tone (it is SRTP); what each side
  decoded holds the other's tone. Also with ``--srtp offer``: baresip's best-effort SRTP
  (RTP/AVP with ``a=crypto``) gets SRTP, and our best-effort offer to a baresip without SRTP
  makes a plain call (the tone is then on the wire in the clear: the check can see it).
* the B2BUA: baresip calls a route that forwards to sipp (plain RTP/AVP, echoing RTP), the
  caller's leg ``srtp: require``, the outbound leg plain: the caller's leg is SRTP on the
  wire, sipp's leg carries baresip's 880 Hz in the clear, and baresip hears itself back.

The SRTCP each side sent unprotects with the keys of the SDP (libsrtp here, libre's own SRTP
in baresip). No SRTP key is ever in a session's history, and an ended session keeps none in
its hash.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from sessiond.media.rtcp import parse_compound
from sessiond.media.sdes import CryptoAttribute
from sessiond.media.sdes_sdp import crypto_values
from sessiond.media.sdp import SessionDescription
from sessiond.media.srtp import SrtpSession

from .media_checks import (
    Rtp,
    dominant_tone,
    loudest_window,
    pcap_rtp,
    pcap_udp,
    read_wav,
    rms,
    tone_share,
    ulaw_pcm,
)
from .netns_run import netns_missing, run_driver

pytestmark = [pytest.mark.redis, pytest.mark.slow]
BARESIP_RTP = range(10000, 10101)  # netns_baresip's rtp_ports
SESSIOND_RTP = range(20000, 20101)
SIPP_RTP = 6000
A_KEY = re.compile(r"inline:(?!<hidden>)[A-Za-z0-9+/]{20,}")


def _drive(
    tmp_path: Path, mode: str, policy: str = "require", mediaenc: str = "srtp-mand"
) -> dict[str, Any]:
    why_not = netns_missing("srtp")
    if why_not is None and shutil.which("sipp") is None and mode == "gateway":
        why_not = "sipp missing"
    if why_not is not None:
        pytest.skip(why_not)
    result = run_driver(
        "netns_srtp.py", tmp_path, mode, policy, mediaenc, timeout=80,
        logs=("sessiond.log", "baresip.log", "sipp.log"),
    )  # fmt: skip
    assert result["terminated"], result["logs"]
    assert result["all_ended"], result["ended_sessions"]
    return result


def _flow(packets: list[Rtp], src: range | int, dst: range | int) -> list[bytes]:
    """PCMU payloads of one direction between two port ranges."""

    def inside(port: int, where: range | int) -> bool:
        return port in where if isinstance(where, range) else port == where

    return [
        p.payload
        for p in packets
        if p.payload_type == 0 and inside(p.src_port, src) and inside(p.dst_port, dst)
    ]


def _assert_encrypted(packets: list[Rtp]) -> None:
    """Both directions between baresip and sessiond: plenty of packets, no tone in them."""
    for src, dst in ((BARESIP_RTP, SESSIOND_RTP), (SESSIOND_RTP, BARESIP_RTP)):
        payloads = _flow(packets, src, dst)
        assert len(payloads) > 150, f"only {len(payloads)} RTP packets {src} -> {dst}"
        samples = ulaw_pcm(payloads[50:])
        for freq in (440.0, 880.0):
            assert tone_share(samples, freq) < 0.01, (src, dst, freq)


def _assert_srtcp_both_ways(result: dict[str, Any]) -> None:
    """The SRTCP reports baresip sent unprotect with the keys of the SDP as our media node
    holds them (libsrtp there, libre's own SRTP in baresip), and ours with baresip's view."""
    mine, peer = agreed_crypto(result["live_sdp"])
    we, they = (
        SrtpSession(mine.suite, mine.key, peer.key),
        SrtpSession(peer.suite, peer.key, mine.key),
    )
    udp = pcap_udp(result["pcap"])
    for src, dst, session in ((BARESIP_RTP, SESSIOND_RTP, we), (SESSIOND_RTP, BARESIP_RTP, they)):
        # the reports (SR, RR first); baresip sends its first RTCP (an APP "PINGPONG" NAT
        # keepalive, before its SRTP starts) and its last (BYE, after it stopped) in the clear:
        # not SRTCP, so our leg drops them (counted as malformed)
        srtcp = [d for s, t, d in udp if s in src and t in dst and d[1] in (200, 201)]
        assert srtcp, f"no SRTCP report {src} -> {dst}"
        for data in srtcp:
            assert parse_compound(session.unprotect_rtcp(data))


def agreed_crypto(sdp: dict[str, str]) -> tuple[CryptoAttribute, CryptoAttribute]:
    """(ours, the peer's) ``a=crypto`` lines an offer/answer agreed on, from a live session's
    SDP bodies (``local``, ``remote``, keys included): the answer has the one line agreed, the
    offer the line of the same tag."""
    ours = [CryptoAttribute.parse(v) for v in _crypto(sdp["local"])]
    theirs = [CryptoAttribute.parse(v) for v in _crypto(sdp["remote"])]
    answer = ours if len(ours) == 1 else theirs
    tag = answer[0].tag
    return next(a for a in ours if a.tag == tag), next(a for a in theirs if a.tag == tag)


def _crypto(sdp: str) -> list[str]:
    return crypto_values(SessionDescription.parse(sdp).media[0])


def _assert_heard(path: str, freq: float, others: list[float], seconds: float) -> None:
    rate, samples = read_wav(path)
    best, powers = dominant_tone(loudest_window(samples, rate), rate, [freq, *others])
    assert best == freq, powers
    assert powers[freq] > 100 * max(powers[f] for f in others), powers
    frame = rate // 50
    loud = sum(
        1
        for i in range(0, len(samples) - frame + 1, frame)
        if rms(samples[i : i + frame]) > 1000
        and dominant_tone(samples[i : i + frame], rate, [freq, *others])[0] == freq
    )
    assert loud / 50 > seconds, f"{path}: {freq} Hz for {loud / 50:.2f} s only"


def _assert_no_key_kept(result: dict[str, Any]) -> None:
    assert result["history"], "no history read"
    assert not A_KEY.search(json.dumps(result["history"]))
    assert result["ended_sessions"]
    for fields in result["ended_sessions"]:
        assert not A_KEY.search(json.dumps(fields)), fields.get("sid")
    secure = [f for f in result["ended_sessions"] if "a=crypto" in f.get("local_sdp", "")]
    assert secure, "no session kept its (redacted) SRTP SDP"
    assert not A_KEY.search(Path(result["pcap"]).with_name("sessiond.log").read_text())


@pytest.mark.parametrize(
    ("mode", "policy", "mediaenc"),
    [
        ("calls", "require", "srtp-mand"),  # RTP/SAVP both ways
        ("called", "require", "srtp-mand"),
        ("calls", "offer", "srtp"),  # best effort: RTP/AVP with a=crypto, answered so
        ("called", "offer", "none"),  # our best-effort offer to a phone without SRTP: plain
    ],
)
def test_baresip_call_is_encrypted_on_the_wire_and_carries_both_tones(
    tmp_path: Path, mode: str, policy: str, mediaenc: str
) -> None:
    result = _drive(tmp_path, mode, policy, mediaenc)
    baresip_log = (tmp_path / "baresip.log").read_text(errors="replace")
    packets = pcap_rtp(result["pcap"])
    if mediaenc == "none":
        assert "SRTP is Enabled" not in baresip_log
        plain = _flow(packets, BARESIP_RTP, SESSIOND_RTP)
        assert tone_share(ulaw_pcm(plain[50:]), 880.0) > 0.5  # the check sees a clear tone
    else:
        assert "SRTP is Enabled" in baresip_log, baresip_log[:3000]
        _assert_encrypted(packets)
        _assert_srtcp_both_ways(result)
    decoded = [p for p in result["baresip_dumps"] if p.endswith("-dec.wav")]
    assert len(decoded) == 1, result["baresip_dumps"]
    others = [300.0, 660.0, 880.0, 1000.0]
    _assert_heard(decoded[0], 440.0, others, 3.5)  # sessiond played 4 s
    _assert_heard(result["sessiond_recording"], 880.0, [300.0, 440.0, 1000.0], 3.5)
    if mediaenc != "none":
        _assert_no_key_kept(result)


def test_gateway_bridges_an_srtp_caller_to_a_plain_rtp_callee(tmp_path: Path) -> None:
    result = _drive(tmp_path, "gateway")
    packets = pcap_rtp(result["pcap"])
    _assert_encrypted(packets)
    _assert_srtcp_both_ways(result)
    for src, dst in ((SESSIOND_RTP, SIPP_RTP), (SIPP_RTP, SESSIOND_RTP)):
        plain = _flow(packets, src, dst)
        assert len(plain) > 150, f"only {len(plain)} plain RTP packets {src} -> {dst}"
        assert tone_share(ulaw_pcm(plain[50:]), 880.0) > 0.5, (src, dst)  # in the clear
    decoded = [p for p in result["baresip_dumps"] if p.endswith("-dec.wav")]
    assert len(decoded) == 1, result["baresip_dumps"]
    _assert_heard(decoded[0], 880.0, [300.0, 440.0, 1000.0], 3.0)  # sipp echoed it back
    assert len(result["ended_sessions"]) == 2
    policies = sorted(f.get("srtp", "") for f in result["ended_sessions"])
    assert policies == ["", "require"]  # the caller's leg's route; the outbound leg's none
    _assert_no_key_kept(result)
