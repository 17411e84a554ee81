"""A real softphone behind a home NAT over SIP over TLS with mandatory SRTP (tests/net/bed.py):
baresip on 192.168.1.2 behind a masquerading router that drops whatever the WAN sends unasked;
sessiond on the public host (behind a 1:1 NAT, bound to 0.0.0.0, advertising 198.51.100.7)
with a TLS listener whose certificate the test makes for the advertised address and name,
and ``--srtp require``. baresip trusts the test's CA and has ``mediaenc=srtp-mand``.

1. baresip calls over TLS; sessiond answers with SRTP, plays 440 Hz and records the phone's
   880 Hz microphone; it holds and resumes the call (re-INVITEs over the phone's own TLS
   connection: its Contact names 192.168.1.2 and nothing reaches it but that connection),
   plays 660 Hz and records again, and hangs up (a BYE over the connection).
2. While the phone's TLS connection is open, sessiond calls it back at the address that
   connection comes from (the router's public address and port, ``;transport=tls``): a
   NATed phone takes no new connection, so the INVITE must ride the open one
   (edge/transport.py, RFC 5923 reuse). baresip answers by itself, SRTP again; 1000 Hz to
   the phone, its 880 Hz back.

Audio is checked both ways: sessiond's recordings hold the phone's 880 Hz after each leg of
the story; the phone's own decoding (baresip's dump) holds 440 Hz and 1000 Hz; and the SRTP
that reached the phone's LAN, captured there and decrypted with the keys of the SDP, holds
440, 660 (after the resume) and 1000 Hz. On the public host a capture shows no SIP on 5060
(not a packet: all of it went over TLS on 5061), one TCP connection opened in all (the
phone's: sessiond opened none), nothing sent to the phone's private address, and RTP both
ways that holds no tone when decoded as PCMU (it is SRTP).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.media_checks import pcap_rtp, pcap_udp, tone_share, ulaw_pcm
from tests.e2e.netns_run import stop
from tests.e2e.test_srtp_interop import agreed_crypto
from tests.net.bed import HOME, PUBLIC, ROUTER_WAN, Bed
from tests.net.phone import (
    MIC,
    PHONE_RTP_PORTS,
    PLAY_SECONDS,
    capture,
    established,
    exchange,
    hang_up,
    heard,
    heard_pcm,
    hold_and_resume,
    packets,
    phone_bed,
    start_phone,
)

from sessiond.media.errors import SrtpError
from sessiond.media.srtp import SrtpSession
from tls_certs import Ca

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]
SIP_PORT = 5060
TLS_PORT = 5061
NAME = "sip.example.test"  # the name in our certificate, besides the advertised address
RTP_PORTS = range(20000, 20101)


@pytest.fixture
def bed(tmp_path: Path) -> Iterator[Bed]:
    yield from phone_bed(tmp_path, "srtp")


def test_phone_behind_nat_over_tls_with_srtp_is_held_and_called_back(bed: Bed) -> None:
    ca = Ca(bed.work)
    ours = ca.issue("sessiond", (NAME, PUBLIC))
    redis_url = bed.start_redis()
    routes = bed.work / "routes.yaml"
    routes.write_text("latch_private: true  # our phones are behind NAT\nrules: []\n")
    bed.start_sessiond(
        ["--redis", redis_url, "--listen", f"udp:0.0.0.0:{SIP_PORT}"]
        + ["--listen", f"tls:0.0.0.0:{TLS_PORT}", "--advertise", PUBLIC]
        + ["--tls-cert", str(ours.cert), "--tls-key", str(ours.key), "--srtp", "require"]
        + ["--rtp-ports", f"{RTP_PORTS[0]}-{RTP_PORTS[-1]}", "--answer", "auto"]
        + ["--routes", str(routes)]
    )
    # on the public host: no SIP in the clear, nothing to the phone's LAN address, the TLS
    # and the RTP; on the phone's LAN: what sessiond sent it
    clear, in_clear = capture(bed, "pub", "clear", f"port {SIP_PORT} or host {HOME}")
    tls, over_tls = capture(bed, "pub", "tls", f"tcp port {TLS_PORT}")
    # a TCP connection being opened, either way (a SYN without ACK)
    opened, connects = capture(
        bed, "pub", "connects", "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn"
    )
    rtp, wire = capture(bed, "pub", "rtp", f"udp portrange {RTP_PORTS[0]}-{RTP_PORTS[-1]}")
    lan, to_phone = capture(bed, "home", "phone", f"udp and src host {PUBLIC} and dst host {HOME}")
    account = f"<sip:alice@{PUBLIC}>;regint=0;mediaenc=srtp-mand;answermode=auto"
    phone, dump = start_phone(
        bed,
        account,
        f"sip:bob@{PUBLIC}:{TLS_PORT};transport=tls",
        f"module srtp.so\nsip_cafile {ca.path}\n",
    )
    keys: list[dict[str, str]] = []  # the live SDP bodies (keys included) of each call

    def live_sdp(sid: str) -> dict[str, Any]:
        session = bed.session(redis_url, sid)
        keys.append({"local": session["local_sdp"], "remote": session["remote_sdp"]})
        return session

    try:
        # 1. the phone calls over TLS; SRTP; hold and resume over its connection; our BYE
        first = established(bed, redis_url)
        session = live_sdp(first)
        assert "RTP/SAVP" in session["local_sdp"]
        assert "a=crypto" in session["local_sdp"]
        target = session["remote_target"]
        assert ROUTER_WAN in target, target
        assert "transport=tls" in target, target
        assert HOME not in target, target  # its connection's address, not its LAN address
        heard_first = bed.work / "sessiond_heard_1.wav"
        exchange(bed, redis_url, first, 440.0, heard_first)
        hold_and_resume(bed, redis_url, first)
        live_sdp(first)
        heard_resumed = bed.work / "sessiond_heard_1b.wav"
        exchange(bed, redis_url, first, 660.0, heard_resumed)
        hang_up(bed, redis_url, first)

        # 2. sessiond calls the phone back over the TLS connection the phone still holds
        back = bed.ctl(
            redis_url, "call", target, "--from", f"sip:sessiond@{PUBLIC}", "--latch-private"
        ).strip()
        bed.wait_session(redis_url, back, "state", "Established")
        assert "RTP/SAVP" in live_sdp(back)["remote_sdp"]
        heard_back = bed.work / "sessiond_heard_2.wav"
        exchange(bed, redis_url, back, 1000.0, heard_back)
        hang_up(bed, redis_url, back)
        time.sleep(0.5)  # baresip closes its dump files after the BYE
    finally:
        stop(phone)
        for proc in (clear, tls, opened, rtp, lan):
            stop(proc)
    log = bed.log("baresip", tail=200_000)
    assert log.count("SRTP is Enabled") >= 2, log[-3000:]

    # the signalling: all of it over TLS (our one connection from the phone), none in clear
    assert packets(in_clear) == 0, "SIP in the clear, or something sent to the phone's LAN"
    assert packets(over_tls) > 20
    # one TCP connection in all: the phone's; sessiond opened none (not even for the call back)
    assert packets(connects) == 1, "sessiond opened a connection, or the phone reconnected"

    # the media on the public host: SRTP both ways, no tone when read as PCMU
    rtp_packets = pcap_rtp(wire)
    for name, flow in (
        ("to sessiond", [p.payload for p in rtp_packets if p.dst_port in RTP_PORTS]),
        ("from sessiond", [p.payload for p in rtp_packets if p.src_port in RTP_PORTS]),
    ):
        assert len(flow) > 300, f"only {len(flow)} RTP packets {name}"
        samples = ulaw_pcm(flow[50:])
        for freq in (440.0, 660.0, MIC, 1000.0):
            assert tone_share(samples, freq) < 0.01, (name, freq)

    enough = PLAY_SECONDS - 0.5
    # the phone heard sessiond: its own decoding (the first call and the call back)...
    decoded = sorted(dump.glob("*-dec.wav"), key=lambda p: p.stat().st_mtime)
    assert len(decoded) == 2, (sorted(dump.iterdir()), bed.log("baresip"))
    heard(decoded[0], 440.0, enough)
    heard(decoded[1], 1000.0, enough)
    # ...and the SRTP that reached its LAN, decrypted with the SDP's keys (its dump stops at
    # a hold, so after the resume this is where the 660 Hz is seen)
    plain = decrypted(to_phone, keys)
    for tone in (440.0, 660.0, 1000.0):
        heard_pcm(plain, tone, enough)
    # sessiond heard the phone before the hold, after the resume, and on the call back
    for recording in (heard_first, heard_resumed, heard_back):
        heard(recording, MIC, enough)


def decrypted(pcap: Path, calls: list[dict[str, str]]) -> Any:
    """The PCMU audio sessiond sent in ``pcap`` (SRTP), unprotected with sessiond's keys
    from the SDP bodies ``calls``, as 8 kHz samples in the order sent."""
    sessions = []
    for sdp in calls:
        mine, peer = agreed_crypto(sdp)
        sessions.append(SrtpSession(peer.suite, peer.key, mine.key))  # inbound: our key
    payloads = []
    for src, dst, data in pcap_udp(pcap):
        if src not in RTP_PORTS or dst not in PHONE_RTP_PORTS or data[1] in (200, 201):
            continue  # not RTP from sessiond's media (RTCP: SR, RR)
        for session in sessions:
            try:
                packet = session.unprotect(data)
            except SrtpError:
                continue
            if packet[1] & 0x7F == 0:
                payloads.append(packet[12 + (packet[0] & 0x0F) * 4 :])
            break
    assert len(payloads) > 300, f"only {len(payloads)} SRTP packets to the phone unprotected"
    return ulaw_pcm(payloads)
