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

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.e2e.netns_run import stop
from tests.net.bed import HOME, PUBLIC, Bed
from tests.net.phone import (
    MIC,
    PHONE_RTP,
    PLAY_SECONDS,
    capture,
    established,
    exchange,
    hang_up,
    heard,
    heard_rtp,
    hold_and_resume,
    packets,
    phone_bed,
    start_phone,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]
SIP_PORT = 5060


@pytest.fixture
def bed(tmp_path: Path) -> Iterator[Bed]:
    yield from phone_bed(tmp_path)


def test_phone_behind_nat_calls_holds_and_is_called_back(bed: Bed) -> None:
    redis_url = bed.start_redis()
    routes = bed.work / "routes.yaml"
    routes.write_text("latch_private: true  # our phones are behind NAT\nrules: []\n")
    bed.start_sessiond(
        ["--redis", redis_url, "--listen", f"udp:0.0.0.0:{SIP_PORT}", "--advertise", PUBLIC]
        + ["--rtp-ports", "20000-20100", "--answer", "auto", "--routes", str(routes)]
    )
    # nothing may leave the public host for the phone's LAN address its SDP names
    leak, leaked = capture(bed, "pub", "leak", f"dst host {HOME}")
    phone, dump = start_phone(
        bed, f"<sip:alice@{PUBLIC}>;regint=0;answermode=auto", f"sip:bob@{PUBLIC}:{SIP_PORT}"
    )
    try:
        # 1. the phone calls; hold and resume through its NAT; audio both ways; our BYE
        first = established(bed, redis_url)
        target = bed.session(redis_url, first)["remote_target"]
        assert HOME not in target, target  # reached at its NAT binding, not its LAN address
        heard_first = bed.work / "sessiond_heard_1.wav"
        exchange(bed, redis_url, first, 440.0, heard_first)
        hold_and_resume(bed, redis_url, first)
        # baresip's sndfile dump stops at a hold (its player is made anew), so what reaches
        # the phone after the resume is captured on its LAN interface instead
        capturing, pcap = capture(
            bed,
            "home",
            "phone",
            f"udp and src host {PUBLIC} and dst host {HOME} and portrange {PHONE_RTP}",
        )
        heard_resumed = bed.work / "sessiond_heard_1b.wav"
        exchange(bed, redis_url, first, 660.0, heard_resumed)
        stop(capturing)
        hang_up(bed, redis_url, first)

        # 2. sessiond calls the phone back where its call came from
        back = bed.ctl(
            redis_url, "call", target, "--from", f"sip:sessiond@{PUBLIC}", "--latch-private"
        ).strip()
        bed.wait_session(redis_url, back, "state", "Established")
        heard_back = bed.work / "sessiond_heard_2.wav"
        exchange(bed, redis_url, back, 1000.0, heard_back)
        hang_up(bed, redis_url, back)
        time.sleep(0.5)  # baresip closes its dump files after the BYE
    finally:
        stop(phone)
        stop(leak)
    assert packets(leaked) == 0, "sessiond sent to the phone's private address"
    decoded = sorted(dump.glob("*-dec.wav"), key=lambda p: p.stat().st_mtime)
    assert len(decoded) == 2, (sorted(dump.iterdir()), bed.log("baresip"))
    enough = PLAY_SECONDS - 0.5
    heard(decoded[0], 440.0, enough)  # the phone heard sessiond: before the hold,
    heard_rtp(pcap, 660.0, enough)  # after the resume,
    heard(decoded[1], 1000.0, enough)  # and on the call back
    for recording in (heard_first, heard_resumed, heard_back):  # sessiond heard the phone
        heard(recording, MIC, enough)
