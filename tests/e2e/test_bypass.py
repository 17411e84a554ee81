"""The B2BUA without media (``media: bypass``) end to end: an edge and two workers on real
Redis and NO media node at all, sipp as the caller and as the callee, and the test's own UDP
sockets as the two phones' RTP ports.

The SDP must pass unchanged (each sipp checks the exact c=/m=/o= lines and directions it
receives with ``check_it``: a rewritten SDP fails the call), RTP goes where each side's
received SDP says (the test sends it there and counts it at the other phone), and nothing is
ever asked of a media node (the pool stream stays empty, no session names a media node).
"""

from __future__ import annotations

import re
import shutil
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sessiond.core.resources import gateway_table_path
from sessiond.table import load_table

from .harness import Cluster, background_sipp, free_port, wait_for
from .test_gateway import allowed

pytestmark = [
    pytest.mark.redis,
    pytest.mark.timeout(120),
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) missing"),
]

HEAD = '<?xml version="1.0"?>\n<scenario name="{name}">\n'


#: an SDES key (RFC 4568) a bypassed call must pass untouched: no SRTP policy applies
CRYPTO = "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVzcyAo"


def sdp(user: str, version: int, port: int, direction: str, srtp: bool = False) -> str:
    profile = "RTP/SAVP" if srtp else "RTP/AVP"
    return (
        f"v=0\no={user} 4242 {version} IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\n"
        f"m=audio {port} {profile} 0 101\na=rtpmap:0 PCMU/8000\n"
        f"a=rtpmap:101 telephone-event/8000\na={direction}\n" + (f"{CRYPTO}\n" if srtp else "")
    )


def _check(pattern: str, var: str) -> str:
    pattern = pattern.replace('"', "&quot;")
    return f'<ereg regexp="{pattern}" search_in="msg" check_it="true" assign_to="{var}"/>'


def expect(kind: str, what: str, checks: list[str], prefix: str, extra: str = "") -> str:
    """``<recv response|request=...>`` whose message must match every pattern of ``checks``."""
    actions = "".join(_check(p, f"{prefix}{i}") for i, p in enumerate(checks)) + extra
    return f'  <recv {kind}="{what}"><action>{actions}</action></recv>\n'


def variables(prefix: str, count: int) -> str:
    names = ",".join(f"{prefix}{i}" for i in range(count))
    return f'  <Reference variables="{names}"/>\n' if count else ""


CALLER_DIALOG = """Via: SIP/2.0/UDP [local_ip]:[local_port];branch=[branch]
From: alice <sip:alice@[local_ip]:[local_port]>;tag=[pid]a[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
Contact: <sip:alice@[local_ip]:[local_port]>
Max-Forwards: 70"""

CALLEE_DIALOG = """Via: SIP/2.0/UDP [local_ip]:[local_port];branch=[branch]
From: <sip:bob@[local_ip]:[local_port]>;tag=[pid]b[call_number]
To: [$caller]
Call-ID: [call_id]
Contact: <sip:bob@[local_ip]:[local_port]>
Max-Forwards: 70"""


def caller_request(method: str, cseq: int, body: str = "") -> str:
    retrans = "" if method == "ACK" else ' retrans="500"'
    ctype = "Content-Type: application/sdp\n" if body else ""
    return (
        f"  <send{retrans}><![CDATA[\n{method} sip:[service]@[remote_ip]:[remote_port] SIP/2.0\n"
        f"{CALLER_DIALOG}\nCSeq: {cseq} {method}\n{ctype}"
        f"Content-Length: [len]\n\n{body}]]></send>\n"
    )


def same_transaction(method: str, to_tag: str, cseq: int = 1) -> str:
    """CANCEL or the ACK of a failure: the INVITE's Via, so the same branch."""
    return (
        f"  <send><![CDATA[\n{method} sip:[service]@[remote_ip]:[remote_port] SIP/2.0\n"
        "[last_Via:]\nFrom: alice <sip:alice@[local_ip]:[local_port]>;tag=[pid]a[call_number]\n"
        f"To: <sip:[service]@[remote_ip]:[remote_port]>{to_tag}\nCall-ID: [call_id]\n"
        f"CSeq: {cseq} {method}\nMax-Forwards: 70\nContent-Length: 0\n\n]]></send>\n"
    )


def callee_request(method: str, cseq: int, body: str = "") -> str:
    retrans = "" if method == "ACK" else ' retrans="500"'
    ctype = "Content-Type: application/sdp\n" if body else ""
    return (
        f"  <send{retrans}><![CDATA[\n{method} [$contact] SIP/2.0\n"
        f"{CALLEE_DIALOG}\nCSeq: {cseq} {method}\n{ctype}"
        f"Content-Length: [len]\n\n{body}]]></send>\n"
    )


def response(code: int, body: str = "", *, tag: str = "") -> str:
    """A response to the last request (``tag``: our To tag, on the INVITE that makes the
    dialog; in-dialog requests carry it already)."""
    to = f"[last_To:];tag={tag}" if tag else "[last_To:]"
    ctype = "Content-Type: application/sdp\n" if body else ""
    reason = "OK" if code == 200 else "Response"
    return (
        f"  <send><![CDATA[\nSIP/2.0 {code} {reason}\n[last_Via:]\n[last_From:]\n{to}\n"
        f"[last_Call-ID:]\n[last_CSeq:]\nContact: <sip:[local_ip]:[local_port]>\n"
        f"{ctype}Content-Length: [len]\n\n{body}]]></send>\n"
    )


def sdp_lines(port: int, user: str, version: int, direction: str, srtp: bool = False) -> list[str]:
    """Patterns that an SDP is exactly the one ``user`` sent (origin, address, port,
    direction; with ``srtp``, its RTP/SAVP profile and its a=crypto line)."""
    return [
        f"o={user} 4242 {version} IN IP4 127.0.0.1",
        "c=IN IP4 127.0.0.1",
        f"m=audio {port} {'RTP/SAVP' if srtp else 'RTP/AVP'} 0 101",
        f"a={direction}",
    ] + ([CRYPTO] if srtp else [])


class Phones:
    """Two RTP sockets (the phones' media ports) and the sipp scenarios around them."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.alice = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.bob = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for s in (self.alice, self.bob):
            s.bind(("127.0.0.1", 0))
            s.settimeout(0.2)
        self.a_port = self.alice.getsockname()[1]
        self.b_port = self.bob.getsockname()[1]

    def close(self) -> None:
        self.alice.close()
        self.bob.close()


def rtp_packet(seq: int) -> bytes:
    return (
        bytes([0x80, 0x00])
        + seq.to_bytes(2, "big")
        + (seq * 160).to_bytes(4, "big")
        + (b"\x12\x34\x56\x78" + b"\xff" * 160)
    )


def received_sdp_port(trace: Path, marker: str) -> int:
    """The m=audio port of the first message in sipp's ``-trace_msg`` file after ``marker``."""
    text = trace.read_text(errors="replace")
    found = re.search(re.escape(marker) + r".*?m=audio (\d+)", text, re.S)
    assert found, text[-3000:]
    return int(found.group(1))


def send_rtp(sender: socket.socket, port: int, receiver: socket.socket, count: int = 50) -> int:
    """Send ``count`` RTP packets from ``sender`` to 127.0.0.1:``port``; how many arrived at
    ``receiver`` from ``sender``'s address."""
    for seq in range(count):
        sender.sendto(rtp_packet(seq), ("127.0.0.1", port))
    got = 0
    while True:
        try:
            data, source = receiver.recvfrom(2048)
        except TimeoutError:
            return got
        if source == sender.getsockname() and data[:2] == b"\x80\x00":
            got += 1


class Bypass:
    """Edge ``edge1`` and workers ``w0``, ``w1`` (no media process), a routes file that
    forwards every call with ``media: bypass`` to the callee's port."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.callee_port = free_port()
        routes = cluster.tmp / "routes.yaml"
        routes.write_text(
            "rules:\n"
            '  - match: {to: "sip:bob@*"}\n'
            f'    do: {{forward: {{to: "sip:bob@127.0.0.1:{self.callee_port}", media: bypass}}}}\n'
            "default: {reject: 404}\n"
        )
        self.port = free_port()
        common = cluster.common()
        listen = f"udp:127.0.0.1:{self.port}"
        cluster.start("edge", "edge", *common, "--listen", listen, "--name", "edge1")
        for n in range(2):
            cluster.start(f"w{n}", "worker", *common, "--name", f"w{n}", "--routes", str(routes))
        from sessiond_run import wait_listening

        wait_listening(self.port)
        self.table = load_table(gateway_table_path())

    def sipp(self, name: str, scenario: str, *args: str) -> Any:
        path = self.cluster.tmp / f"{name}.xml"
        path.write_text(scenario)
        trace = ["-trace_msg", "-message_file", str(self.cluster.tmp / f"{name}.msg")]
        return background_sipp(
            self.cluster.tmp, "-sf", str(path), "-m", "1", "-timeout", "60", *trace, *args
        )

    def callee(self, scenario: str) -> Any:
        return self.sipp("callee", scenario, "-p", str(self.callee_port))

    def caller(self, scenario: str) -> Any:
        target = f"127.0.0.1:{self.port}"
        return self.sipp("caller", scenario, "-s", "bob", target, "-p", str(free_port()))

    def run(self, caller_xml: str, callee_xml: str) -> None:
        """Both sipps, to the end of their scenarios (each must succeed)."""
        with self.callee(callee_xml) as uas, self.caller(caller_xml) as uac:
            finished_ok(uac, "caller")
            finished_ok(uas, "callee")

    def legs(self, state: str = "Terminated") -> tuple[dict[str, str], dict[str, str]]:
        sessions = self.cluster.sessions
        assert wait_for(
            lambda: len(sessions()) == 2 and all(s["state"] == state for s in sessions()),
            timeout=30,
        ), (sessions(), self.cluster.log("w0")[-2000:], self.cluster.log("w1")[-2000:])
        (inbound,) = [s for s in sessions() if s["role"] == "UAS"]
        (outbound,) = [s for s in sessions() if s["role"] == "UAC"]
        assert (inbound["peer"], outbound["peer"]) == (outbound["sid"], inbound["sid"])
        return inbound, outbound

    def steps(self, session: dict[str, str]) -> list[tuple[str, str, str]]:
        steps = self.cluster.steps(session["sid"])
        for step in steps:
            assert allowed(self.table, session["role"], *step), (step, steps)
        return steps

    def no_media(self) -> None:
        """Nothing was ever asked of a media node, and no session names one."""
        r = self.cluster.redis()
        ns = self.cluster.namespace
        assert r.xlen(f"{ns}:{{media}}:commands") == 0
        assert r.zcard(f"{ns}:processes:media") == 0  # no media node ever registered
        for session in self.cluster.sessions():
            assert session.get("media_node", "") == ""
            assert session["media"] == "bypass"


@pytest.fixture
def bypass(cluster: Cluster) -> Bypass:
    return Bypass(cluster)


@pytest.fixture
def phones(tmp_path: Path) -> Iterator[Phones]:
    p = Phones(tmp_path)
    yield p
    p.close()


def finished_ok(proc: Any, who: str) -> str:
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, f"{who}: {out[-2500:]}"
    return str(out)


def _caller_setup(phones: Phones, cseq: int = 1) -> str:
    b = phones.b_port
    return (
        caller_request("INVITE", cseq, sdp("alice", 1, phones.a_port, "sendrecv"))
        + '  <recv response="100" optional="true"/>\n'
        + '  <recv response="180" optional="true"/>\n'
        + expect("response", "183", sdp_lines(b, "bob", 1, "sendrecv"), "e")
        + expect("response", "200", sdp_lines(b, "bob", 1, "sendrecv"), "f", "").replace(
            '<recv response="200">', '<recv response="200" rrs="true">'
        )
        + caller_request("ACK", cseq)
    )


CALLEE_INVITE_VARS = (
    '<ereg regexp=".*" search_in="hdr" header="From:" assign_to="caller"/>'
    '<ereg regexp="sip:[^>;]*" search_in="hdr" header="Contact:" assign_to="contact"/>'
)


#: the end of a callee scenario that only checked the initial INVITE's SDP (``i``)
CALLEE_END = variables("i", 4) + '  <Reference variables="caller,contact"/>\n</scenario>\n'


def _callee_setup(phones: Phones) -> str:
    a = phones.a_port
    return (
        expect("request", "INVITE", sdp_lines(a, "alice", 1, "sendrecv"), "i", CALLEE_INVITE_VARS)
        + response(180, tag="[pid]b[call_number]")
        + response(183, sdp("bob", 1, phones.b_port, "sendrecv"), tag="[pid]b[call_number]")
        + response(200, sdp("bob", 1, phones.b_port, "sendrecv"), tag="[pid]b[call_number]")
        + '  <recv request="ACK"/>\n'
    )


def test_bypassed_call_passes_sdp_and_rtp_end_to_end(bypass: Bypass, phones: Phones) -> None:
    """No media node runs. 183 and 200 carry the callee's SDP unchanged, the callee gets the
    caller's; RTP flows phone to phone both ways; the caller holds (re-INVITE sendonly,
    answered recvonly) and then the callee does, each relayed with its SDP intact; the
    caller's BYE ends both legs."""
    a, b = phones.a_port, phones.b_port
    caller_xml = (
        HEAD.format(name="bypass caller")
        + _caller_setup(phones)
        + caller_request("INVITE", 2, sdp("alice", 2, a, "sendonly"))
        + '  <recv response="100" optional="true"/>\n'
        + expect("response", "200", sdp_lines(b, "bob", 2, "recvonly"), "h")
        + caller_request("ACK", 2)
        + expect("request", "INVITE", sdp_lines(b, "bob", 3, "sendonly"), "r")
        + response(200, sdp("alice", 3, a, "recvonly"))
        + '  <recv request="ACK"/>\n'
        + '  <pause milliseconds="300"/>\n'
        + caller_request("BYE", 3)
        + '  <recv response="200"/>\n'
        + variables("e", 4)
        + variables("f", 4)
        + variables("h", 4)
        + variables("r", 4)
        + "</scenario>\n"
    )
    callee_xml = (
        HEAD.format(name="bypass callee")
        + _callee_setup(phones)
        + expect("request", "INVITE", sdp_lines(a, "alice", 2, "sendonly"), "h")
        + response(200, sdp("bob", 2, b, "recvonly"))
        + '  <recv request="ACK"/>\n'
        + '  <pause milliseconds="1000"/>\n'
        + callee_request("INVITE", 1, sdp("bob", 3, b, "sendonly"))
        + '  <recv response="100" optional="true"/>\n'
        + expect("response", "200", sdp_lines(a, "alice", 3, "recvonly"), "r")
        + callee_request("ACK", 1)
        + '  <recv request="BYE"/>\n'
        + response(200)
        + variables("i", 4)
        + variables("h", 4)
        + variables("r", 4)
        + '  <Reference variables="caller,contact"/>\n'
        + "</scenario>\n"
    )
    bypass.run(caller_xml, callee_xml)
    tmp = bypass.cluster.tmp
    # each phone sends RTP where the SDP it received says; the other phone gets it directly
    to_bob = received_sdp_port(tmp / "caller.msg", "SIP/2.0 200 OK")
    to_alice = received_sdp_port(tmp / "callee.msg", "INVITE sip:bob@")
    assert (to_bob, to_alice) == (b, a)
    assert send_rtp(phones.alice, to_bob, phones.bob) == 50
    assert send_rtp(phones.bob, to_alice, phones.alice) == 50
    inbound, outbound = bypass.legs()
    assert bypass.steps(inbound) == [
        ("Idle", "Invite", "Routing"),
        ("Routing", "ForwardCall", "Routing"),
        ("Routing", "PlaceCall", "Forwarding"),
        ("Forwarding", "PeerRinging", "Alerting"),
        ("Alerting", "PeerEarlyMedia", "Alerting"),
        ("Alerting", "PeerAnswered", "Answering"),
        ("Answering", "Ack", "Established"),
        ("Established", "ReInvite", "Relaying"),
        ("Relaying", "PeerReanswered", "Reconfirming"),
        ("Reconfirming", "Ack", "Established"),
        ("Established", "PeerReoffer", "Reinviting"),
        ("Reinviting", "Answered", "Established"),
        ("Established", "Bye", "Terminated"),
    ]
    assert bypass.steps(outbound) == [
        ("Idle", "MakeCall", "Calling"),
        ("Calling", "Provisional", "Early"),
        ("Early", "Provisional", "Early"),
        ("Early", "Answered", "Established"),
        ("Established", "PeerReoffer", "Reinviting"),
        ("Reinviting", "Answered", "Established"),
        ("Established", "ReInvite", "Relaying"),
        ("Relaying", "PeerReanswered", "Reconfirming"),
        ("Reconfirming", "Ack", "Established"),
        ("Established", "PeerHangup", "Terminating"),
        ("Terminating", "ByeDone", "Terminated"),
    ]
    bypass.no_media()


def test_callee_hangs_up_a_bypassed_call(bypass: Bypass, phones: Phones) -> None:
    caller_xml = (
        HEAD.format(name="bypass caller hung up")
        + _caller_setup(phones)
        + '  <recv request="BYE"/>\n'
        + response(200)
        + variables("e", 4)
        + variables("f", 4)
        + "</scenario>\n"
    )
    callee_xml = (
        HEAD.format(name="bypass callee hangs up")
        + _callee_setup(phones)
        + '  <pause milliseconds="300"/>\n'
        + callee_request("BYE", 1)
        + '  <recv response="200"/>\n'
        + CALLEE_END
    )
    bypass.run(caller_xml, callee_xml)
    inbound, outbound = bypass.legs()
    assert bypass.steps(outbound)[-1] == ("Established", "Bye", "Terminated")
    assert bypass.steps(inbound)[-2:] == [
        ("Established", "PeerHangup", "Terminating"),
        ("Terminating", "ByeDone", "Terminated"),
    ]
    bypass.no_media()


def test_cancel_while_a_bypassed_call_rings(bypass: Bypass, phones: Phones) -> None:
    """The caller's CANCEL after the 180: the callee gets CANCEL (answers 487), the caller
    a 487."""
    caller_xml = (
        HEAD.format(name="bypass caller cancels")
        + caller_request("INVITE", 1, sdp("alice", 1, phones.a_port, "sendrecv"))
        + '  <recv response="100" optional="true"/>\n'
        + '  <recv response="180"/>\n'
        + same_transaction("CANCEL", "")  # the INVITE's Via (branch): RFC 3261 9.1
        + '  <recv response="200"/>\n'
        + '  <recv response="487"/>\n'
        + same_transaction("ACK", "[peer_tag_param]")  # 17.1.1.3: the ACK of a non-2xx too
        + "</scenario>\n"
    )
    callee_xml = (
        HEAD.format(name="bypass callee cancelled")
        + expect(
            "request",
            "INVITE",
            sdp_lines(phones.a_port, "alice", 1, "sendrecv"),
            "i",
            CALLEE_INVITE_VARS + '<ereg regexp="^ *[0-9]+" search_in="hdr" header="CSeq:" '
            'assign_to="cseq"/>',
        )
        + response(180, tag="[pid]b[call_number]")
        + '  <recv request="CANCEL"/>\n'
        + response(200)
        + "  <send><![CDATA[\nSIP/2.0 487 Request Terminated\n[last_Via:]\n[last_From:]\n"
        "[last_To:];tag=[pid]b[call_number]\n[last_Call-ID:]\nCSeq: [$cseq] INVITE\n"
        "Content-Length: 0\n\n]]></send>\n" + '  <recv request="ACK"/>\n' + CALLEE_END
    )
    bypass.run(caller_xml, callee_xml)
    inbound, outbound = bypass.legs()
    assert inbound["end_code"] == outbound["end_code"] == "487"
    assert bypass.steps(inbound)[-1] == ("Alerting", "Cancel", "Terminated")
    assert bypass.steps(outbound)[-2:] == [
        ("Early", "PeerCancel", "Cancelling"),
        ("Cancelling", "Rejected", "Terminated"),
    ]
    bypass.no_media()


def test_bypassed_call_survives_a_worker_killed_mid_call(bypass: Bypass, phones: Phones) -> None:
    """Both legs established, the worker that ran them is killed with SIGKILL; the other
    worker takes over: the caller's hold re-INVITE is still relayed (callee sees the
    caller's sendonly SDP, the caller gets the callee's recvonly one), then BYE."""
    a, b = phones.a_port, phones.b_port
    caller_xml = (
        HEAD.format(name="bypass caller after kill")
        + _caller_setup(phones)
        + '  <pause milliseconds="4000"/>\n'  # the test kills the worker meanwhile
        + caller_request("INVITE", 2, sdp("alice", 2, a, "sendonly"))
        + '  <recv response="100" optional="true"/>\n'
        + expect("response", "200", sdp_lines(b, "bob", 2, "recvonly"), "h")
        + caller_request("ACK", 2)
        + caller_request("BYE", 3)
        + '  <recv response="200"/>\n'
        + variables("e", 4)
        + variables("f", 4)
        + variables("h", 4)
        + "</scenario>\n"
    )
    callee_xml = (
        HEAD.format(name="bypass callee after kill")
        + _callee_setup(phones)
        + expect("request", "INVITE", sdp_lines(a, "alice", 2, "sendonly"), "h")
        + response(200, sdp("bob", 2, b, "recvonly"))
        + '  <recv request="ACK"/>\n'
        + '  <recv request="BYE"/>\n'
        + response(200)
        + variables("i", 4)
        + variables("h", 4)
        + '  <Reference variables="caller,contact"/>\n'
        + "</scenario>\n"
    )
    cluster = bypass.cluster
    with bypass.callee(callee_xml) as uas, bypass.caller(caller_xml) as uac:
        inbound, _ = bypass.legs("Established")
        owner = cluster.history(inbound["sid"])[-1]["worker"]
        cluster.kill(owner, signal.SIGKILL)
        killed_at = len(cluster.history(inbound["sid"]))
        finished_ok(uac, "caller")
        finished_ok(uas, "callee")
    inbound, outbound = bypass.legs()
    after = cluster.history(inbound["sid"])[killed_at:]
    assert ("Established", "ReInvite", "Relaying") in [
        (h["from"], h["event"], h["to"]) for h in after
    ]
    assert {h["worker"] for h in after} == {"w0", "w1"} - {owner}
    assert ("Established", "PeerReoffer", "Reinviting") in bypass.steps(outbound)
    bypass.no_media()


def test_update_srtp_keys_and_a_refused_offer_are_relayed(bypass: Bypass, phones: Phones) -> None:
    """The caller offers SRTP (RTP/SAVP, a=crypto): the callee gets the key untouched and
    answers with its own, which reaches the caller untouched. Then the caller's UPDATE with a
    new offer reaches the callee (in a re-INVITE) and the callee's answer comes back in the
    200 to the UPDATE; a re-INVITE the callee refuses with 488 is refused to the caller with
    488, and the call goes on (BYE)."""
    a, b = phones.a_port, phones.b_port
    caller_xml = (
        HEAD.format(name="bypass caller update")
        + caller_request("INVITE", 1, sdp("alice", 1, a, "sendrecv", srtp=True))
        + '  <recv response="100" optional="true"/>\n'
        + '  <recv response="180" optional="true"/>\n'
        + expect("response", "183", sdp_lines(b, "bob", 1, "sendrecv", srtp=True), "e")
        + expect("response", "200", sdp_lines(b, "bob", 1, "sendrecv", srtp=True), "f").replace(
            '<recv response="200">', '<recv response="200" rrs="true">'
        )
        + caller_request("ACK", 1)
        + caller_request("UPDATE", 2, sdp("alice", 2, a + 2, "sendrecv", srtp=True))
        + expect("response", "200", sdp_lines(b + 2, "bob", 2, "sendrecv", srtp=True), "u")
        + caller_request("INVITE", 3, sdp("alice", 3, a, "inactive", srtp=True))
        + '  <recv response="100" optional="true"/>\n'
        + '  <recv response="488"/>\n'
        + same_transaction("ACK", "[peer_tag_param]", cseq=3)
        + caller_request("BYE", 4)
        + '  <recv response="200"/>\n'
        + variables("e", 5)
        + variables("f", 5)
        + variables("u", 5)
        + "</scenario>\n"
    )
    callee_xml = (
        HEAD.format(name="bypass callee update")
        + expect(
            "request",
            "INVITE",
            sdp_lines(a, "alice", 1, "sendrecv", srtp=True),
            "i",
            CALLEE_INVITE_VARS,
        )
        + response(180, tag="[pid]b[call_number]")
        + response(183, sdp("bob", 1, b, "sendrecv", srtp=True), tag="[pid]b[call_number]")
        + response(200, sdp("bob", 1, b, "sendrecv", srtp=True), tag="[pid]b[call_number]")
        + '  <recv request="ACK"/>\n'
        + expect("request", "INVITE", sdp_lines(a + 2, "alice", 2, "sendrecv", srtp=True), "u")
        + response(200, sdp("bob", 2, b + 2, "sendrecv", srtp=True))
        + '  <recv request="ACK"/>\n'
        + expect("request", "INVITE", sdp_lines(a, "alice", 3, "inactive", srtp=True), "r")
        + response(488)
        + '  <recv request="ACK"/>\n'
        + '  <recv request="BYE"/>\n'
        + response(200)
        + variables("i", 5)
        + variables("u", 5)
        + variables("r", 5)
        + '  <Reference variables="caller,contact"/>\n'
        + "</scenario>\n"
    )
    bypass.run(caller_xml, callee_xml)
    inbound, outbound = bypass.legs()
    steps = bypass.steps(inbound)
    assert ("Established", "Update", "Relaying") in steps
    assert ("Relaying", "PeerReanswered", "Established") in steps  # an UPDATE: no ACK
    assert ("Relaying", "PeerReofferFailed", "Established") in steps
    assert ("Reinviting", "Rejected", "Established") in bypass.steps(outbound)
    bypass.no_media()


def test_a_bypassed_invite_without_an_offer_is_refused(bypass: Bypass) -> None:
    """Late offer is not relayed: 488, and no outbound leg is placed."""
    caller_xml = (
        HEAD.format(name="bypass late offer")
        + caller_request("INVITE", 1)
        + '  <recv response="100" optional="true"/>\n'
        + '  <recv response="488"/>\n'
        + same_transaction("ACK", "[peer_tag_param]")
        + "</scenario>\n"
    )
    with bypass.caller(caller_xml) as uac:
        finished_ok(uac, "caller")
    sessions = bypass.cluster.sessions
    assert wait_for(lambda: [s["state"] for s in sessions()] == ["Terminated"])
    (inbound,) = sessions()
    assert inbound["end_code"] == "488"
    assert bypass.steps(inbound)[0] == ("Idle", "Invite", "Terminated")
    bypass.no_media()


def test_refer_on_a_bypassed_call_is_answered_as_on_an_anchored_one(
    bypass: Bypass, phones: Phones
) -> None:
    """The gateway table relays no REFER, anchored or bypassed: the leg that gets one has no
    transition for it and the worker answers 500; the call goes on (BYE)."""
    refer = caller_request("REFER", 2).replace(
        "CSeq: 2 REFER\n", "CSeq: 2 REFER\nRefer-To: <sip:carol@127.0.0.1>\n"
    )
    caller_xml = (
        HEAD.format(name="bypass caller refers")
        + _caller_setup(phones)
        + refer
        + '  <recv response="500"/>\n'
        + caller_request("BYE", 3)
        + '  <recv response="200"/>\n'
        + variables("e", 4)
        + variables("f", 4)
        + "</scenario>\n"
    )
    callee_xml = (
        HEAD.format(name="bypass callee, no REFER")
        + _callee_setup(phones)
        + '  <recv request="BYE"/>\n'
        + response(200)
        + CALLEE_END
    )
    bypass.run(caller_xml, callee_xml)
    inbound, _ = bypass.legs()
    assert bypass.steps(inbound)[-1] == ("Established", "Bye", "Terminated")
    assert bypass.table.lookup("UAS", "Established", "Refer") is None
