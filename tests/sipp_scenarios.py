"""sipp scenarios the tests share: a caller whose INVITE (with SDP) is refused with a given
final response, and the pieces to build others. Importable from every test directory
(tests/conftest.py puts this directory on sys.path)."""

from __future__ import annotations

# sipp scenario pieces: an SDP offer (PCMU), a caller's INVITE carrying it, and the ACK of a
# final response.
SIPP_SDP = """v=0
o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000
"""

SIPP_INVITE = (
    """  <send retrans="500"><![CDATA[
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

"""
    + SIPP_SDP
    + """]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
"""
)

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


# --- B2BUA flows (tests/e2e/test_gateway.py): callers and callees written for each flow ----

_CALLER_BYE = """  <send retrans="500"><![CDATA[
BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 2 BYE
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200" crlf="true"/>
"""

# Answer the request just received (BYE, CANCEL) with 200.
OK_TO_LAST = """  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
"""

_CALLER_CANCEL = """  <send><![CDATA[
CANCEL sip:[service]@[remote_ip]:[remote_port] SIP/2.0
[last_Via:]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 CANCEL
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200"/>
  <recv response="487"/>
"""


def _scenario(name: str, body: str) -> str:
    return f'<?xml version="1.0"?>\n<scenario name="{name}">\n{body}</scenario>\n'


def caller(flow: str) -> str:
    """A caller (INVITE with PCMU SDP) for one flow: ``hangs_up`` (a 180 then a 200 must come;
    ACK, then the caller's BYE), ``hung_up`` (answered, then it receives a BYE) or
    ``cancels`` (CANCEL once the 180 comes; 200 and 487 must follow; ACK)."""
    ringing = SIPP_INVITE.replace(
        '<recv response="180" optional="true"/>', '<recv response="180"/>'
    )
    if flow == "hangs_up":
        body = ringing + '  <recv response="200" rtd="true"/>\n' + SIPP_ACK
        body += '  <pause milliseconds="300"/>\n' + _CALLER_BYE
    elif flow == "hung_up":
        body = SIPP_INVITE + '  <recv response="200"/>\n' + SIPP_ACK
        body += '  <recv request="BYE"/>\n' + OK_TO_LAST
    elif flow == "cancels":
        body = ringing + _CALLER_CANCEL + SIPP_ACK
    else:
        raise ValueError(flow)
    return _scenario(f"caller {flow}", body)


_CALLEE_INVITE = """  <recv request="INVITE" crlf="true">
    <action>
      <ereg regexp=".*" search_in="hdr" header="From:" assign_to="caller"/>
      <ereg regexp="^ *[0-9]+" search_in="hdr" header="CSeq:" assign_to="cseq"/>
      <ereg regexp="sip:[^>;]*" search_in="hdr" header="Contact:" assign_to="contact"/>
    </action>
  </recv>
"""


def _callee_response(code: int, reason: str, sdp: bool = False, cseq: str = "") -> str:
    body = ""
    ctype = ""
    if sdp:
        ctype = "Content-Type: application/sdp\n"
        body = (
            "v=0\no=bob 1 1 IN IP[local_ip_type] [local_ip]\ns=-\n"
            "c=IN IP[media_ip_type] [media_ip]\nt=0 0\n"
            "m=audio [media_port] RTP/AVP 0\na=rtpmap:0 PCMU/8000\n"
        )
    cseq_line = f"CSeq: [${cseq}] INVITE" if cseq else "[last_CSeq:]"
    return f"""  <send><![CDATA[
SIP/2.0 {code} {reason}
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
{cseq_line}
Contact: <sip:bob@[local_ip]:[local_port]>
{ctype}Content-Length: [len]

{body}]]></send>
"""


_CALLEE_BYE = """  <send retrans="500"><![CDATA[
BYE [$contact] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:bob@[local_ip]:[local_port]>;tag=[pid]SIPpTag01[call_number]
To: [$caller]
Call-ID: [call_id]
CSeq: 1 BYE
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200"/>
"""


def callee(flow: str, code: int = 486, pause: int = 0) -> str:
    """A callee for one flow: ``hangs_up`` (180, 200, ACK, then its own BYE), ``refuses``
    (final ``code``, ACK), ``cancelled`` (180, then a CANCEL must come: 200 and 487, ACK),
    ``rings_refuses`` (180, ``pause`` ms, final ``code``, ACK), ``rings_answers`` (180,
    ``pause`` ms, then as ``hangs_up``), ``answers_cancel`` (180, then
    a CANCEL must come; it answers the CANCEL 200, then the INVITE 200 as if that had crossed
    the CANCEL; an ACK and a BYE must follow)."""
    invite = _CALLEE_INVITE
    if flow == "rings_refuses":
        body = invite + _callee_response(180, "Ringing")
        body += f'  <pause milliseconds="{pause}"/>\n' + _callee_response(code, "Refused")
        body += '  <recv request="ACK"/>\n  <Reference variables="caller,cseq,contact"/>\n'
        return _scenario(f"callee {flow}", body)
    if flow == "rings_answers":
        body = invite + _callee_response(180, "Ringing") + f'  <pause milliseconds="{pause}"/>\n'
        body += _callee_response(200, "OK", sdp=True) + '  <recv request="ACK"/>\n'
        body += (
            '  <pause milliseconds="300"/>\n' + _CALLEE_BYE + '  <Reference variables="cseq"/>\n'
        )
        return _scenario(f"callee {flow}", body)
    if flow == "answers_cancel":
        body = invite + _callee_response(180, "Ringing") + '  <recv request="CANCEL"/>\n'
        # the CANCEL's 200 first: sipp aborts a call whose ACK comes before its last send
        # went out (seen in a full run once the ACK left one Redis round trip sooner)
        body += OK_TO_LAST + _callee_response(200, "OK", sdp=True, cseq="cseq")
        body += '  <recv request="ACK"/>\n  <recv request="BYE"/>\n' + OK_TO_LAST
        body += '  <Reference variables="caller,contact"/>\n'
        return _scenario(f"callee {flow}", body)
    if flow == "hangs_up":
        body = invite + _callee_response(180, "Ringing") + _callee_response(200, "OK", sdp=True)
        body += '  <recv request="ACK"/>\n  <pause milliseconds="300"/>\n' + _CALLEE_BYE
        body += '  <Reference variables="cseq"/>\n'
    elif flow == "refuses":
        body = invite + _callee_response(code, "Refused") + '  <recv request="ACK"/>\n'
        body += '  <Reference variables="caller,cseq,contact"/>\n'
    elif flow == "cancelled":
        body = invite + _callee_response(180, "Ringing") + '  <recv request="CANCEL"/>\n'
        body += OK_TO_LAST + _callee_response(487, "Request Terminated", cseq="cseq")
        body += '  <recv request="ACK"/>\n  <Reference variables="caller,contact"/>\n'
    else:
        raise ValueError(flow)
    return _scenario(f"callee {flow}", body)
