"""sipp scenarios written for the mid-call flows (hold, UPDATE, INFO, transfer, session
timers). Each one is the independent far end of one flow; checks on what sessiond sends are
sipp regular expressions with ``check_it`` (a mismatch fails the call)."""

from __future__ import annotations

from urllib.parse import quote
from xml.sax.saxutils import escape

HEAD = '<?xml version="1.0"?>\n<scenario name="{name}">\n'

SDP = """v=0
o=sipp 1 {version} IN IP4 [local_ip]
s=-
c=IN IP4 [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a={direction}
"""

# Requests the caller (sipp as UAC) sends in its dialog: From/To/Call-ID of its INVITE.
UAC_DIALOG = """Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
Contact: <sip:sipp@[local_ip]:[local_port]>
Max-Forwards: 70"""


def _check(pattern: str, var: str) -> str:
    pattern = escape(pattern, {'"': "&quot;"})
    return (
        f'<action><ereg regexp="{pattern}" search_in="msg" check_it="true" '
        f'assign_to="{var}"/></action>'
    )


def uac_request(
    method: str, cseq: int, body: str = "", ctype: str = "", extra: str = "", retrans: bool = True
) -> str:
    headers = f"{UAC_DIALOG}\nCSeq: {cseq} {method}"
    if extra:
        headers += "\n" + extra
    if body:
        headers += f"\nContent-Type: {ctype}"
    length = "Content-Length: [len]"
    retr = ' retrans="500"' if retrans else ""
    return (
        f"  <send{retr}><![CDATA[\n{method} sip:[service]@[remote_ip]:[remote_port] SIP/2.0\n"
        f"{headers}\n{length}\n\n{body}]]></send>\n"
    )


def uac_invite(cseq: int, direction: str = "sendrecv", version: int = 1, extra: str = "") -> str:
    body = SDP.format(version=version, direction=direction)
    return uac_request("INVITE", cseq, body, "application/sdp", extra)


def uac_ack(cseq: int) -> str:
    return uac_request("ACK", cseq, retrans=False)


def recv(code: int, check: str = "", var: str = "", optional: bool = False) -> str:
    opt = ' optional="true"' if optional else ""
    if check:
        return f'  <recv response="{code}"{opt}>{_check(check, var)}</recv>\n'
    return f'  <recv response="{code}"{opt}/>\n'


def recv_request(method: str, check: str = "", var: str = "") -> str:
    if check:
        return f'  <recv request="{method}">{_check(check, var)}</recv>\n'
    return f'  <recv request="{method}"/>\n'


def answer(
    code: int, body: str = "", ctype: str = "", extra: str = "", *, tag: bool = False
) -> str:
    """A response to the last request received (sipp copies its Via/From/To/Call-ID/CSeq);
    ``tag``: add our To tag (responses to the INVITE that creates the dialog)."""
    lines = [
        f"SIP/2.0 {code} {'OK' if code == 200 else 'Response'}",
        "[last_Via:]",
        "[last_From:]",
        "[last_To:];tag=[pid]SIPpTag01[call_number]" if tag else "[last_To:]",
        "[last_Call-ID:]",
        "[last_CSeq:]",
        "Contact: <sip:sipp@[local_ip]:[local_port]>",
    ]
    if extra:
        lines.append(extra)
    if body:
        lines.append(f"Content-Type: {ctype}")
    lines.append("Content-Length: [len]")
    return "  <send><![CDATA[\n" + "\n".join(lines) + f"\n\n{body}]]></send>\n"


def pause(ms: int) -> str:
    return f'  <pause milliseconds="{ms}"/>\n'


def scenario(name: str, *parts: str, variables: str = "") -> str:
    ref = f'  <Reference variables="{variables}"/>\n' if variables else ""
    return HEAD.format(name=name) + "".join(parts) + ref + "</scenario>\n"


def _setup(extra: str = "", check200: str = "", var: str = "") -> list[str]:
    """The caller's INVITE, 100/180 optional, 200 (checked), ACK."""
    return [
        uac_invite(1, extra=extra),
        recv(100, optional=True),
        recv(180, optional=True),
        recv(200, check200, var) if check200 else '  <recv response="200" rrs="true"/>\n',
        uac_ack(1),
    ]


def uac_hold_update_info() -> str:
    """Caller: holds sessiond (re-INVITE sendonly: answered recvonly), resumes, offers a new
    SDP in UPDATE, sends a DTMF digit by INFO and a body sessiond does not read (415),
    refreshes the session by UPDATE, then sends a re-INVITE without SDP: sessiond offers in
    its 200 and the ACK carries the answer."""
    return scenario(
        "uac hold, resume, UPDATE, INFO",
        *_setup(),
        pause(300),
        uac_invite(2, "sendonly", 2),
        recv(100, optional=True),
        recv(200, "a=recvonly", "h1"),
        uac_ack(2),
        pause(300),
        uac_invite(3, "sendrecv", 3),
        recv(100, optional=True),
        recv(200, "a=sendrecv", "h2"),
        uac_ack(3),
        uac_request("UPDATE", 4, SDP.format(version=4, direction="sendrecv"), "application/sdp"),
        recv(200, "m=audio", "u1"),
        uac_request("INFO", 5, "Signal=7\r\nDuration=160\r\n", "application/dtmf-relay"),
        recv(200),
        uac_request("INFO", 6, "hello", "text/plain"),
        recv(415),
        uac_request("UPDATE", 7, extra="Supported: timer\nSession-Expires: 1800;refresher=uac"),
        recv(200, "Session-Expires: 1800;refresher=uac", "st"),
        uac_request("INVITE", 8),
        recv(100, optional=True),
        recv(200, "m=audio", "o1"),
        uac_request(
            "ACK", 8, SDP.format(version=5, direction="sendrecv"), "application/sdp", retrans=False
        ),
        uac_request("BYE", 9),
        recv(200),
        variables="h1,h2,u1,st,o1",
    )


def uas_held(first_reinvite: int = 200) -> str:
    """Callee answering sessiond's call: expects a re-INVITE offering sendonly (hold; the
    first one answered ``first_reinvite``, e.g. 491 to force a glare retry), then sendrecv
    (resume), then BYE."""
    sdp_answer = SDP.format(version=1, direction="sendrecv")
    held = SDP.format(version=2, direction="recvonly")
    resumed = SDP.format(version=3, direction="sendrecv")
    parts = [
        recv_request("INVITE", "Session-Expires: 1800", "se"),
        answer(180, tag=True),
        answer(200, sdp_answer, "application/sdp", tag=True),
        recv_request("ACK"),
        recv_request("INVITE", "a=sendonly", "h1"),
    ]
    if first_reinvite != 200:
        parts += [
            answer(first_reinvite),
            recv_request("ACK"),
            recv_request("INVITE", "a=sendonly", "h1b"),
        ]
    parts += [
        answer(200, held, "application/sdp"),
        recv_request("ACK"),
        recv_request("INVITE", "a=sendrecv", "h2"),
        answer(200, resumed, "application/sdp"),
        recv_request("ACK"),
        recv_request("BYE"),
        answer(200),
    ]
    names = "se,h1,h2" + (",h1b" if first_reinvite != 200 else "")
    return scenario("uas held by sessiond", *parts, variables=names)


def uac_refer_us(final: int = 200) -> str:
    """Caller that, once the call is up, is transferred by sessiond: takes the REFER (202),
    reports 100 then ``final`` by NOTIFY (sipfrag). 200: expects sessiond's BYE; a failure:
    the call goes on, and the caller hangs up later."""
    notify = "Event: refer\nSubscription-State: {state}"
    frag = "SIP/2.0 200 OK" if final == 200 else f"SIP/2.0 {final} Busy Here"
    end = (
        [recv_request("BYE"), answer(200)]
        if final == 200
        else [pause(1000), uac_request("BYE", 4), recv(200)]
    )
    return scenario(
        "uac transferred by sessiond",
        *_setup(),
        recv_request("REFER", "Refer-To: <sip:carol@127.0.0.1:5099>", "rt"),
        answer(202),
        uac_request(
            "NOTIFY",
            2,
            "SIP/2.0 100 Trying\r\n",
            "message/sipfrag;version=2.0",
            notify.format(state="active;expires=60"),
        ),
        recv(200),
        uac_request(
            "NOTIFY",
            3,
            f"{frag}\r\n",
            "message/sipfrag;version=2.0",
            notify.format(state="terminated;reason=noresource"),
        ),
        recv(200),
        *end,
        variables="rt",
    )


def uac_refers_sessiond(target: str, replaces: str = "") -> str:
    """Caller that transfers sessiond to ``target``: REFER, expects 202, then NOTIFY 100 and
    NOTIFY 200 (sipfrag) as sessiond's new call progresses, then hangs up. ``replaces``
    (a Replaces value) makes it an attended transfer (RFC 3891 in the Refer-To URI)."""
    if replaces:
        target += "?Replaces=" + quote(replaces, safe="")
    return scenario(
        "uac transfers sessiond",
        *_setup(),
        pause(200),
        uac_request("REFER", 2, extra=f"Refer-To: <{target}>\nReferred-By: <sip:sipp@[local_ip]>"),
        recv(202),
        recv_request("NOTIFY", "SIP/2.0 100 Trying", "n1"),
        answer(200),
        recv_request("NOTIFY", "SIP/2.0 200 OK", "n2"),
        answer(200),
        uac_request("BYE", 3),
        recv(200),
        variables="n1,n2",
    )


def uas_slow_answer(delay_ms: int, expect: str = "") -> str:
    """Transfer target: rings, answers after ``delay_ms``, takes the ACK and a BYE;
    ``expect``: a regular expression the INVITE must match."""
    return scenario(
        "uas slow answer",
        recv_request("INVITE", expect, "x") if expect else recv_request("INVITE"),
        answer(180, tag=True),
        pause(delay_ms),
        answer(200, SDP.format(version=1, direction="sendrecv"), "application/sdp", tag=True),
        recv_request("ACK"),
        recv_request("BYE"),
        answer(200),
        variables="x" if expect else "",
    )


def uac_replacing(replaces: str) -> str:
    """Caller whose INVITE replaces another dialog of sessiond (RFC 3891): expects 200 at
    once (no ringing needed), ACKs, then hangs up."""
    return scenario(
        "uac with Replaces",
        *_setup(extra=f"Replaces: {replaces}"),
        pause(500),
        uac_request("BYE", 2),
        recv(200),
    )


def uac_waits_for_bye() -> str:
    """Caller that, once its call is up, waits for sessiond's BYE."""
    return scenario("uac waits for BYE", *_setup(), recv_request("BYE"), answer(200))


def uac_session_timer_we_refresh(refreshes: int, interval: int) -> str:
    """Caller asking for session timers with sessiond as the refresher (refresher=uas):
    expects ``refreshes`` re-INVITEs carrying Session-Expires, answers each keeping sessiond
    the refresher (refresher=uac in a response to sessiond's request), then hangs up."""
    extra = f"Supported: timer\nSession-Expires: {interval};refresher=uas"
    parts = _setup(extra, f"Session-Expires: {interval};refresher=uas", "se")
    names = ["se"]
    for n in range(refreshes):
        parts += [
            recv_request("INVITE", "Session-Expires: ", f"r{n}"),
            answer(
                200,
                SDP.format(version=1, direction="sendrecv"),
                "application/sdp",
                f"Require: timer\nSession-Expires: {interval};refresher=uac",
            ),
            recv_request("ACK"),
        ]
        names.append(f"r{n}")
    parts += [uac_request("BYE", 2), recv(200)]
    return scenario("uac session timer, sessiond refreshes", *parts, variables=",".join(names))


def uac_session_timer_never_refresh(interval: int) -> str:
    """Caller that promises to refresh (refresher=uac) and never does: sessiond must send
    BYE before the session expires."""
    extra = f"Supported: timer\nSession-Expires: {interval};refresher=uac"
    return scenario(
        "uac session timer, no refresh",
        *_setup(extra, f"Session-Expires: {interval};refresher=uac", "se"),
        recv_request("BYE"),
        answer(200),
        variables="se",
    )


def uac_requires_100rel() -> str:
    """Caller that requires reliable provisional responses (RFC 3262): PRACKs sessiond's 180
    (RSeq 1) and its 183 with SDP (RSeq 2, sent when the application asks for early media),
    then takes the 200 and hangs up."""
    extra = "Supported: 100rel\nRequire: 100rel"
    return scenario(
        "uac requires 100rel",
        uac_invite(1, extra=extra),
        recv(100, optional=True),
        recv(180, "RSeq: 1", "r1"),
        uac_request("PRACK", 2, extra="RAck: 1 1 INVITE"),
        recv(200),
        recv(183, "RSeq: 2", "r2"),
        uac_request("PRACK", 3, extra="RAck: 2 1 INVITE"),
        recv(200),
        recv(200, "m=audio", "ok"),
        uac_ack(1),
        pause(300),
        uac_request("BYE", 4),
        recv(200),
        variables="r1,r2,ok",
    )


def uas_reliable_183() -> str:
    """Callee that sends early media in a reliable 183 (Require: 100rel, RSeq 1), expects
    sessiond's PRACK, then answers with the same SDP and takes the ACK and the BYE."""
    sdp = SDP.format(version=1, direction="sendrecv")
    capture = (
        '  <recv request="INVITE"><action>'
        '<ereg regexp="Supported: [^\\r\\n]*100rel" search_in="msg" check_it="true" assign_to="s"/>'
        '<ereg regexp="Via: ([^\\r\\n]*)" search_in="msg" assign_to="v0,via"/>'
        "</action></recv>\n"
    )
    # the 200 answers the INVITE, not the PRACK received last: its Via and CSeq by hand
    ok = (
        "  <send><![CDATA[\nSIP/2.0 200 OK\nVia: [$via]\n[last_From:]\n[last_To:]\n"
        "[last_Call-ID:]\nCSeq: 1 INVITE\nContact: <sip:sipp@[local_ip]:[local_port]>\n"
        f"Content-Type: application/sdp\nContent-Length: [len]\n\n{sdp}]]></send>\n"
    )
    return scenario(
        "uas reliable 183",
        capture,
        answer(183, sdp, "application/sdp", "Require: 100rel\nRSeq: 1", tag=True),
        recv_request("PRACK", "RAck: 1 1 INVITE", "ra"),
        answer(200),
        pause(500),
        ok,
        recv_request("ACK"),
        recv_request("BYE"),
        answer(200),
        variables="s,ra,v0",
    )


def uac_media_moved() -> str:
    """Caller whose call sessiond moves to another media node: after the ACK, expects a
    re-INVITE with a new offer (the test kills the media node), answers it, hangs up."""
    return scenario(
        "uac, media moved by sessiond",
        *_setup(check200="o=sessiond [0-9]+ [0-9]+", var="o1"),
        recv_request("INVITE", "o=sessiond [0-9]+ [0-9]+", "o2"),
        answer(200, SDP.format(version=2, direction="sendrecv"), "application/sdp"),
        recv_request("ACK"),
        pause(500),
        uac_request("BYE", 2),
        recv(200),
        variables="o1,o2",
    )


def uas_media_moved() -> str:
    """Callee of sessiond's call: answers, then expects a re-INVITE with a new offer (the
    test kills the media node), answers it, and takes sessiond's BYE."""
    return scenario(
        "uas, media moved by sessiond",
        recv_request("INVITE", "o=sessiond [0-9]+ [0-9]+", "o1"),
        answer(180, tag=True),
        answer(200, SDP.format(version=1, direction="sendrecv"), "application/sdp", tag=True),
        recv_request("ACK"),
        recv_request("INVITE", "o=sessiond [0-9]+ [0-9]+", "o2"),
        answer(200, SDP.format(version=2, direction="sendrecv"), "application/sdp"),
        recv_request("ACK"),
        recv_request("BYE"),
        answer(200),
        variables="o1,o2",
    )


def uas_refuses_hold(code: int = 488) -> str:
    """Callee that refuses sessiond's hold re-INVITE with ``code``, then takes the BYE."""
    return scenario(
        "uas refuses hold",
        recv_request("INVITE"),
        answer(180, tag=True),
        answer(200, SDP.format(version=1, direction="sendrecv"), "application/sdp", tag=True),
        recv_request("ACK"),
        recv_request("INVITE", "a=sendonly", "h1"),
        answer(code),
        recv_request("ACK"),
        recv_request("BYE"),
        answer(200),
        variables="h1",
    )
