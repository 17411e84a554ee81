"""A real softphone over TLS: baresip dials ``;transport=tls`` to a live ``sessiond run`` in
a private network namespace (tests/e2e/netns_baresip.py in its ``tls`` mode), the call is answered,
audio flows both ways (Goertzel tones), and sessiond's hangup reaches baresip over TLS."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tls_certs import Ca

from .media_checks import dominant_tone, loudest_window, read_wav
from .netns_run import netns_missing, run_driver
from .test_media_interop import _tone_seconds


def test_baresip_calls_over_tls_and_audio_flows(tmp_path: Path) -> None:
    why_not = netns_missing()
    if why_not is not None:
        pytest.skip(why_not)
    ca = Ca(tmp_path)
    ca.path.rename(tmp_path / "ca.pem")
    ca.issue("server", ("localhost", "127.0.0.1"))
    result = run_driver("netns_baresip.py", tmp_path, "tls", timeout=55, tail=3000)
    logs = result["logs"]
    assert result["terminated"], logs  # our BYE reached baresip (over its TLS connection)
    show = result["show"]
    # the INVITE came in on the TLS listener (our Contact) from baresip's TLS contact (the
    # INVITE's txn, which named TLS, is forgotten once the ACK establishes the call)
    assert re.search(r"local_uri  <sip:bob@127\.0\.0\.1:\d+;transport=tls>", show), show
    assert re.search(r"remote_target  sip:alice\S*;transport=tls", show), show
    history = result["show_end"].split("history:", 1)[1]
    assert "--ByeDone-->" in history, history  # baresip answered our BYE
    assert "TransactionTimeout" not in history, history

    sid = result["sid"]
    types = [e["type"] for e in result["app_events"] if e["sid"] == sid]
    assert types[:3] == ["IncomingCall", "Answered", "Established"], types

    others = [300.0, 660.0, 880.0, 1000.0, 1320.0]
    decoded = [p for p in result["baresip_dumps"] if p.endswith("-dec.wav")]
    assert len(decoded) == 1, result["baresip_dumps"]
    rate, heard = read_wav(decoded[0])
    best, powers = dominant_tone(loudest_window(heard, rate), rate, [440.0, *others])
    assert best == 440.0, powers
    assert _tone_seconds(heard, rate, 440.0, others) > 3.0

    rate, recorded = read_wav(result["sessiond_recording"])
    best, powers = dominant_tone(loudest_window(recorded, rate), rate, [880.0, 440.0, 300.0])
    assert best == 880.0, powers
    assert _tone_seconds(recorded, rate, 880.0, [440.0, 300.0, 1000.0]) > 3.0
