"""sessiond on a public host behind a 1:1 NAT (tests/net/bed.py), bound to 0.0.0.0 and
advertising the NAT's public address, against sipp on a host of the internet.

The public host's own address (10.0.2.2) is unreachable from outside: a call completes only
if every address sessiond writes (Via, Contact, SDP c=/o=) is the advertised one, so that the
far end's ACK, BYE and RTP come back through the NAT. The scenarios also check those headers
and that the private address appears nowhere in what sessiond sends.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.net.bed import OUTSIDE, PRIVATE, PUBLIC, Bed, why_not

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
SIP_PORT = 5060
SIPP_PORT = 5070
ADVERTISED = PUBLIC.replace(".", "[.]")
PRIVATE_RE = PRIVATE.replace(".", "[.]")

# What sessiond's messages must carry, and must not (sipp fails the call on a miss).
CHECKS = f"""
      <ereg regexp="{PRIVATE_RE}" search_in="msg" check_it_inverse="true" assign_to="leak"/>
      <ereg regexp="sip:sessiond@{ADVERTISED}:{SIP_PORT}" search_in="hdr" header="Contact:"
            check_it="true" assign_to="contact"/>
      <ereg regexp="c=IN IP4 {ADVERTISED}" search_in="body" check_it="true" assign_to="c"/>
      <ereg regexp="o=[^\\r\\n]* IN IP4 {ADVERTISED}" search_in="body" check_it="true"
            assign_to="o"/>"""

SDP = """v=0
o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000
"""

CALLER = f"""<?xml version="1.0"?>
<scenario name="caller through the 1:1 NAT">
  <send retrans="500"><![CDATA[
INVITE sip:bob@{PUBLIC}:{SIP_PORT} SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:bob@{PUBLIC}:{SIP_PORT}>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:sipp@[local_ip]:[local_port];transport=[transport]>
Record-Route: <sip:proxy.example.net;lr>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

{SDP}]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rrs="true">
    <action>{CHECKS}
      <ereg regexp="proxy[.]example[.]net" search_in="hdr" header="Record-Route:"
            check_it="true" assign_to="rr"/>
    </action>
  </recv>
  <send><![CDATA[
ACK [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
[last_To:]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
  <pause milliseconds="500"/>
  <send retrans="500"><![CDATA[
BYE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
[last_To:]
Call-ID: [call_id]
CSeq: 2 BYE
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200"/>
  <Reference variables="leak,contact,c,o,rr"/>
</scenario>
"""

CALLEE = f"""<?xml version="1.0"?>
<scenario name="callee of sessiond through the 1:1 NAT">
  <recv request="INVITE" crlf="true">
    <action>{CHECKS}
      <ereg regexp="SIP/2.0/UDP {ADVERTISED}:{SIP_PORT};" search_in="hdr" header="Via:"
            check_it="true" assign_to="via"/>
    </action>
  </recv>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:callee@[local_ip]:[local_port]>
Content-Type: application/sdp
Content-Length: [len]

{SDP}]]></send>
  <recv request="ACK">
    <action>
      <ereg regexp="{PRIVATE_RE}" search_in="msg" check_it_inverse="true" assign_to="leak2"/>
    </action>
  </recv>
  <recv request="BYE">
    <action>
      <ereg regexp="SIP/2.0/UDP {ADVERTISED}:{SIP_PORT};" search_in="hdr" header="Via:"
            check_it="true" assign_to="via2"/>
    </action>
  </recv>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
  <Reference variables="leak,contact,c,o,via,leak2,via2"/>
</scenario>
"""


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Bed, str]]:
    """The bed, with Redis and ``sessiond run --advertise`` on the public host."""
    reason = why_not() or (None if shutil.which("sipp") else "sipp missing")
    if reason:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("nat")
    with Bed(work) as bed:
        redis_url = bed.start_redis()
        bed.start_sessiond(
            ["--redis", redis_url, "--listen", f"udp:0.0.0.0:{SIP_PORT}"]
            + ["--listen", f"tcp:0.0.0.0:{SIP_PORT}", "--advertise", PUBLIC]
            + ["--rtp-ports", "20000-20100", "--answer", "auto"]
        )
        yield bed, redis_url


def _sipp(bed: Bed, scenario: str, *args: str) -> Any:
    path = bed.work / f"scenario{time.monotonic_ns()}.xml"
    path.write_text(scenario)
    return bed.run(
        "outside",
        ["sipp", *args, "-sf", str(path), "-i", OUTSIDE, "-p", str(SIPP_PORT), "-m", "1"]
        + ["-timeout", "30", "-timeout_error", "-nostdin", "-trace_err"]
        + ["-error_file", str(bed.work / "sipp_errors.log")],
        timeout=60,
    )


def _errors(bed: Bed) -> str:
    path: Path = bed.work / "sipp_errors.log"
    return path.read_text(errors="replace")[-3000:] if path.exists() else ""


@pytest.mark.parametrize("transport", ["u1", "t1"])
def test_call_into_the_nat_names_only_the_advertised_address(
    deployment: tuple[Bed, str], transport: str
) -> None:
    """sipp on the internet calls the public address (UDP, then TCP): the 200's Contact and
    SDP name the advertised address, the caller's Record-Route comes back, and the ACK and
    BYE sent to that Contact reach sessiond through the NAT."""
    bed, _ = deployment
    done = _sipp(bed, CALLER, f"{PUBLIC}:{SIP_PORT}", "-t", transport)
    assert done.returncode == 0, (done.stdout[-1500:], _errors(bed), bed.log("sessiond"))


def test_call_from_sessiond_out_of_the_nat(deployment: tuple[Bed, str]) -> None:
    """sessiond calls sipp on the internet: its INVITE's Via, Contact and SDP name the
    advertised address; sipp's 200 and BYE-answer reach it back through the NAT."""
    bed, redis_url = deployment
    callee = bed.start("outside", "sipp_callee", [
        "sipp", "-sf", str(_write(bed, CALLEE)), "-i", OUTSIDE, "-p", str(SIPP_PORT),
        "-m", "1", "-timeout", "40", "-timeout_error", "-nostdin", "-trace_err",
        "-error_file", str(bed.work / "sipp_errors.log"),
    ])  # fmt: skip
    time.sleep(0.5)
    sid = bed.ctl(
        redis_url, "call", f"sip:callee@{OUTSIDE}:{SIPP_PORT}", "--from", f"sip:sessiond@{PUBLIC}"
    ).strip()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and "Established" not in bed.ctl(redis_url, "show", sid):
        time.sleep(0.3)
    assert "Established" in bed.ctl(redis_url, "show", sid), bed.log("sessiond")
    bed.ctl(redis_url, "hangup", sid)
    assert callee.wait(timeout=30) == 0, (bed.log("sipp_callee"), _errors(bed))


def _write(bed: Bed, scenario: str) -> Path:
    path = bed.work / f"scenario{time.monotonic_ns()}.xml"
    path.write_text(scenario)
    return path
