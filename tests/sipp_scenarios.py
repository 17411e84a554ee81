"""sipp scenarios the tests share: a caller whose INVITE (with SDP) is refused with a given
final response, and the pieces to build others. Importable from every test directory
(tests/conftest.py puts this directory on sys.path)."""

from __future__ import annotations

# sipp scenario pieces: a caller's INVITE (with SDP) and the ACK of a final response.
SIPP_INVITE = """  <send retrans="500"><![CDATA[
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: sip:sipp@[local_ip]:[local_port]
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000
]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
"""

SIPP_ACK = """  <send><![CDATA[
ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
"""


def uac_refused(code: int, check: str = "") -> str:
    """A caller that expects a final ``code`` (``check``: actions run on that response)."""
    recv = f'  <recv response="{code}"/>\n'
    if check:  # sipp refuses a variable that is assigned but never referenced
        recv = f'  <recv response="{code}">{check}</recv>\n  <Reference variables="c"/>\n'
    head = f'<?xml version="1.0"?>\n<scenario name="uac {code}">\n'
    return f"{head}{SIPP_INVITE}{recv}{SIPP_ACK}</scenario>\n"
