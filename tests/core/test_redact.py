"""SRTP keys hidden from what is shown or kept (ctl show, an ended session's fields)."""

from __future__ import annotations

from sessiond.core.redact import redact_keys, scrubbed

SDP = (
    "v=0\r\nm=audio 4000 RTP/SAVP 0\r\n"
    "a=crypto:1 AES_CM_128_HMAC_SHA1_80 "
    "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4\r\n"
    "a=crypto:2 AEAD_AES_256_GCM INLINE:d0RmdmcmVCspeEc3QGZiNWpVLFJhQX1cfHAwJSoj\r\n"
)


def test_keys_are_hidden_and_the_rest_kept() -> None:
    hidden = redact_keys(SDP)
    assert "PS1uQ" not in hidden
    assert "d0Rmd" not in hidden
    assert "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:<hidden>|2^20|1:4\r\n" in hidden
    assert "INLINE:<hidden>\r\n" in hidden
    assert redact_keys("m=audio 4000 RTP/AVP 0") == "m=audio 4000 RTP/AVP 0"


def test_an_ended_session_keeps_its_sdp_without_keys() -> None:
    session = {"local_sdp": SDP, "remote_sdp": "v=0\r\n", "state": "Terminated"}
    assert scrubbed(session) == {"local_sdp": redact_keys(SDP)}
    assert scrubbed({"state": "Terminated"}) == {}
