"""Calls to registered users, end to end: ``sessiond run --registrar example.com`` on real
Redis, phones that are sipp processes registering with digest auth (``ctl user add``, sipp
``-au/-ap``), then answering on the port they registered from, and a sipp caller dialling
``sip:alice@example.com``.

A phone registers a Contact on a private address nobody can reach (``10.99.0.7``, as a
phone behind NAT writes): the call reaches it only because the outbound leg goes where its
REGISTER came from (the binding's ``source``, through the binding's edge) with the
Request-URI its Contact.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sessiond.sip.digest import Challenge, DigestClient
from sessiond.sip.message import SipMessage, SipRequest, SipResponse, make_response, parse_message
from sipp_scenarios import callee, caller, uac_refused

from .harness import ENV, Cluster, background_sipp, free_port, sipp, wait_for
from .netns_run import netns_missing, run_driver

pytestmark = [
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.timeout(120),
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) missing"),
]
PRIVATE = "10.99.0.7"


def ctl(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sessiond", "ctl", *cluster.common(), *args],
        capture_output=True,
        text=True,
        env=ENV,
        check=False,
        timeout=30,
    )


def start(cluster: Cluster, *extra: str) -> int:
    for user in ("alice", "bob"):
        assert ctl(cluster, "user", "add", f"{user}@example.com", "s3cret").returncode == 0
    return cluster.start_run("--registrar", "example.com", "--auth-secret", "x" * 16, *extra)


def _register(cseq: int, user: str, contact: str, q: str, *, auth: bool) -> str:
    return f"""  <send retrans="500"><![CDATA[
REGISTER sip:example.com SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:{user}@example.com>;tag=[pid]r[call_number]
To: <sip:{user}@example.com>
Call-ID: [call_id]
CSeq: {cseq} REGISTER
Contact: <{contact}>{q}
Expires: 300
Max-Forwards: 70
{"[authentication]" if auth else "User-Agent: sipp"}
Content-Length: 0

]]></send>
"""


def register(
    cluster: Cluster, port: int, phone_port: int, contact: str, user: str = "alice", q: str = ""
) -> None:
    """sipp registers ``contact`` for ``user`` from 127.0.0.1:``phone_port`` (digest)."""
    qparam = f";q={q}" if q else ""
    text = (
        '<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="register">\n'
        + _register(1, user, contact, qparam, auth=False)
        + '  <recv response="401" auth="true"/>\n'
        + _register(2, user, contact, qparam, auth=True)
        + '  <recv response="200"/>\n</scenario>\n'
    )
    path = cluster.tmp / f"register-{phone_port}.xml"
    path.write_text(text)
    result = sipp(
        cluster.tmp,
        f"127.0.0.1:{port}",
        *("-sf", str(path), "-p", str(phone_port), "-i", "127.0.0.1", "-m", "1"),
        *("-nr", "-timeout", "30", "-au", user, "-ap", "s3cret"),
        timeout=40,
    )
    assert result.returncode == 0, result.stdout[-2000:]


def to_aor(scenario: str, user: str = "alice") -> str:
    """A caller scenario whose Request-URI and To are ``sip:<user>@example.com``."""
    return scenario.replace("[service]@[remote_ip]:[remote_port]", f"{user}@example.com")


def call(cluster: Cluster, port: int, scenario: str, name: str) -> subprocess.CompletedProcess[str]:
    path = cluster.tmp / f"{name}.xml"
    path.write_text(scenario)
    return sipp(
        cluster.tmp,
        f"127.0.0.1:{port}",
        *("-sf", str(path), "-p", str(free_port()), "-i", "127.0.0.1", "-m", "1"),
        *("-timeout", "30", "-mp", str(free_port())),
        timeout=40,
    )


def bound(port: int) -> bool:
    """Something holds UDP 127.0.0.1:``port`` (the phone's sipp is up)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


@contextlib.contextmanager
def phone(cluster: Cluster, phone_port: int, scenario: str, name: str) -> Iterator[Any]:
    """A sipp phone answering on the port it registered from (its messages traced)."""
    path = cluster.tmp / f"{name}.xml"
    path.write_text(scenario)
    args = ("-sf", str(path), "-p", str(phone_port), "-i", "127.0.0.1", "-m", "1")
    with background_sipp(cluster.tmp, *args, "-trace_msg", "-trace_err") as proc:
        assert wait_for(lambda: bound(phone_port))
        yield proc


def checks_request_uri(scenario: str, uri: str) -> str:
    """A callee scenario that also requires the INVITE's Request-URI and To."""
    check = (
        f'      <ereg regexp="^INVITE {uri} SIP/2.0" search_in="msg" check_it="true" '
        'assign_to="ruri"/>\n'
        '      <ereg regexp="sip:alice@example.com" search_in="hdr" header="To:" '
        'check_it="true" assign_to="to"/>\n'
    )
    scenario = scenario.replace("    <action>\n", "    <action>\n" + check, 1)
    return scenario.replace('<Reference variables="', '<Reference variables="ruri,to,', 1)


def test_a_call_to_a_registered_user_rings_its_contact_through_its_binding(
    cluster: Cluster,
) -> None:
    """alice registered a private Contact from 127.0.0.1:P; the call to sip:alice@example.com
    reaches the sipp phone answering on P, with that Contact as Request-URI and alice's AOR
    in To; the phone answers and hangs up; the caller sees the whole call."""
    port = start(cluster)
    phone_port = free_port()
    contact = f"sip:alice@{PRIVATE}:5999"
    register(cluster, port, phone_port, contact)
    scenario = checks_request_uri(callee("hangs_up"), contact)
    with phone(cluster, phone_port, scenario, "alice-phone") as alice:
        result = call(cluster, port, to_aor(caller("hung_up")), "caller")
        assert result.returncode == 0, (result.stdout[-2000:], cluster.log("run")[-3000:])
        out, _ = alice.communicate(timeout=30)
        assert alice.returncode == 0, out[-2000:]
    sessions = cluster.sessions()
    (outbound,) = [s for s in sessions if s["role"] == "UAC"]
    assert outbound["remote_target"].startswith("sip:bob@127.0.0.1")  # its 200's Contact
    assert outbound["destination"] == f"UDP 127.0.0.1:{phone_port}"
    assert outbound["remote_uri"] == "sip:alice@example.com"
    (inbound,) = [s for s in sessions if s["role"] == "UAS"]
    assert inbound["table"] == "gateway"
    assert inbound["forward_target"] == contact


def test_a_call_to_an_unregistered_user_is_480_and_others_keep_the_answer_mode(
    cluster: Cluster,
) -> None:
    """bob has an account but no binding: 480. A call to another domain is --answer's
    (auto: answered; the caller hangs up)."""
    port = start(cluster)
    result = call(cluster, port, to_aor(uac_refused(480), "bob"), "bob")
    assert result.returncode == 0, (result.stdout[-2000:], cluster.log("run")[-3000:])
    nobody = call(cluster, port, to_aor(uac_refused(480), "nobody"), "nobody")
    assert nobody.returncode == 0, nobody.stdout[-2000:]
    answered = caller("hangs_up").replace('"180"/>', '"180" optional="true"/>')
    answered = call(cluster, port, answered, "elsewhere")
    assert answered.returncode == 0, answered.stdout[-2000:]
    assert wait_for(lambda: all(s["state"] == "Terminated" for s in cluster.sessions()))


def test_a_route_rings_a_registered_user(cluster: Cluster) -> None:
    """``do: {user: alice}`` for sip:reception@example.com: alice's phone rings (To: her
    AOR), and a call to an unregistered user of the domain still gets 480."""
    (cluster.tmp / "routes.yaml").write_text(
        'rules:\n  - match: {to: "sip:reception@*"}\n    do: {user: alice}\n'
    )
    port = start(cluster, "--routes", "routes.yaml")
    phone_port = free_port()
    contact = f"sip:alice@127.0.0.1:{phone_port}"
    register(cluster, port, phone_port, contact)
    scenario = checks_request_uri(callee("hangs_up"), contact)
    with phone(cluster, phone_port, scenario, "alice-phone") as alice:
        result = call(cluster, port, to_aor(caller("hung_up"), "reception"), "caller")
        assert result.returncode == 0, (result.stdout[-2000:], cluster.log("run")[-3000:])
        out, _ = alice.communicate(timeout=30)
        assert alice.returncode == 0, out[-2000:]
    refused = call(cluster, port, to_aor(uac_refused(480), "bob"), "bob")
    assert refused.returncode == 0, refused.stdout[-2000:]


def two_phones(cluster: Cluster, port: int) -> tuple[int, int]:
    """alice registers two contacts: the first port with q=0.9, the second with q=0.5."""
    first, second = free_port(), free_port()
    register(cluster, port, first, f"sip:alice@{PRIVATE}:5001", q="0.9")
    register(cluster, port, second, f"sip:alice@{PRIVATE}:5002", q="0.5")
    return first, second


def test_sequential_forking_by_q_a_busy_contact_then_the_next_answers(
    cluster: Cluster,
) -> None:
    """Without a routes file alice's contacts are tried in q order: the q=0.9 phone answers
    486, the q=0.5 phone is called next and answers; the caller sees one call."""
    port = start(cluster)
    first, second = two_phones(cluster, port)
    busy = checks_request_uri(callee("refuses", 486), f"sip:alice@{PRIVATE}:5001")
    answers = checks_request_uri(callee("hangs_up"), f"sip:alice@{PRIVATE}:5002")
    with (
        phone(cluster, first, busy, "busy-phone") as one,
        phone(cluster, second, answers, "answering-phone") as two,
    ):
        result = call(cluster, port, to_aor(caller("hung_up")), "caller")
        assert result.returncode == 0, (result.stdout[-2000:], cluster.log("run")[-3000:])
        for proc in (one, two):
            out, _ = proc.communicate(timeout=30)
            assert proc.returncode == 0, out[-2000:]
    outbound = sorted(
        (s for s in cluster.sessions() if s["role"] == "UAC"), key=lambda s: s["destination"]
    )
    assert [s["destination"] for s in outbound] == sorted(
        [f"UDP 127.0.0.1:{first}", f"UDP 127.0.0.1:{second}"]
    )
    assert sorted(s["end_code"] for s in outbound) == ["200", "486"]


def test_a_6xx_stops_the_search(cluster: Cluster) -> None:
    """The q=0.9 phone declines (603): the caller gets 603 and the q=0.5 phone is never
    called (one outbound leg)."""
    port = start(cluster)
    first, _ = two_phones(cluster, port)
    declines = callee("refuses", 603)
    with phone(cluster, first, declines, "declining-phone") as one:
        result = call(cluster, port, to_aor(uac_refused(603)), "caller")
        assert result.returncode == 0, (result.stdout[-2000:], cluster.log("run")[-3000:])
        out, _ = one.communicate(timeout=30)
        assert one.returncode == 0, out[-2000:]
    assert wait_for(lambda: all(s["state"] == "Terminated" for s in cluster.sessions()))
    outbound = [s for s in cluster.sessions() if s["role"] == "UAC"]
    assert [(s["destination"], s["end_code"]) for s in outbound] == [
        (f"UDP 127.0.0.1:{first}", "603")
    ]


class TcpPhone:
    """A phone registered over one TCP connection it keeps open, with a Contact nobody can
    connect to: a call reaches it only over that connection."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.local = self.sock.getsockname()
        self.buffer = b""
        self.contact = f"sip:alice@{PRIVATE}:5003;transport=tcp"

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def receive(self) -> SipMessage:
        while True:
            head, sep, rest = self.buffer.partition(b"\r\n\r\n")
            if sep:
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() in (b"content-length", b"l"):
                        length = int(value.strip())
                if len(rest) >= length:
                    raw = head + sep + rest[:length]
                    self.buffer = rest[length:]
                    return parse_message(raw)
            chunk = self.sock.recv(65535)
            assert chunk, "the edge closed the phone's connection"
            self.buffer += chunk

    def register(self, cseq: int, authorization: str = "") -> SipMessage:
        host, port = self.local
        lines = [
            "REGISTER sip:example.com SIP/2.0",
            f"Via: SIP/2.0/TCP {host}:{port};branch=z9hG4bK-reg{cseq};rport",
            "From: <sip:alice@example.com>;tag=tcpphone",
            "To: <sip:alice@example.com>",
            f"Call-ID: tcp-phone-{port}",
            f"CSeq: {cseq} REGISTER",
            f"Contact: <{self.contact}>",
            "Expires: 300",
            "Max-Forwards: 70",
            *([f"Authorization: {authorization}"] if authorization else []),
            "Content-Length: 0",
        ]
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode())
        return self.receive()

    def registered(self) -> None:
        challenge = self.register(1)
        assert isinstance(challenge, SipResponse)
        assert challenge.status == 401, bytes(challenge)
        answer = DigestClient("alice", "s3cret").authorize(
            Challenge.parse(challenge.header("www-authenticate") or ""),
            "REGISTER",
            "sip:example.com",
        )
        ok = self.register(2, str(answer))
        assert isinstance(ok, SipResponse)
        assert ok.status == 200, bytes(ok)


def test_a_tcp_registered_phone_is_called_over_its_own_connection(cluster: Cluster) -> None:
    """alice registers over TCP a Contact no one can connect to and keeps the connection:
    the INVITE comes over that connection (to her Contact as Request-URI), her 486 reaches
    the caller, and the ACK comes over it too."""
    assert ctl(cluster, "user", "add", "alice@example.com", "s3cret").returncode == 0
    port = cluster.start_run("--registrar", "example.com", "--auth-secret", "x" * 16, tcp=True)
    alice = TcpPhone(port)
    try:
        alice.registered()
        path = cluster.tmp / "caller.xml"
        path.write_text(to_aor(uac_refused(486)))
        args = ("-sf", str(path), "-p", str(free_port()), "-i", "127.0.0.1", "-m", "1")
        with background_sipp(cluster.tmp, f"127.0.0.1:{port}", *args, "-timeout", "30") as caller_:
            invite = alice.receive()
            assert isinstance(invite, SipRequest)
            assert invite.method == "INVITE"
            assert str(invite.uri) == alice.contact
            assert "sip:alice@example.com" in str(invite.header("to"))
            alice.send(bytes(make_response(invite, 486, "Busy Here", to_tag="alicetag")))
            ack = alice.receive()
            assert isinstance(ack, SipRequest)
            assert ack.method == "ACK"
            out, _ = caller_.communicate(timeout=40)
            assert caller_.returncode == 0, out[-2000:]
    finally:
        alice.sock.close()


def test_no_answer_after_n_seconds_goes_to_the_then_target(cluster: Cluster) -> None:
    """``{user: {name: alice, no_answer: 2, then: URI}}``: alice's phone rings (180) and
    gets a CANCEL after 2 s (its scenario requires it: 200, 487, ACK), then the ``then``
    target (a sipp "voicemail") is called and answers; the caller's call completes."""
    voicemail = free_port()
    (cluster.tmp / "routes.yaml").write_text(
        'rules:\n  - match: {to: "sip:support@*"}\n'
        "    do: {user: {name: alice, no_answer: 2, "
        f'then: "sip:voicemail@127.0.0.1:{voicemail}"}}}}\n'
    )
    port = start(cluster, "--routes", "routes.yaml")
    phone_port = free_port()
    register(cluster, port, phone_port, f"sip:alice@{PRIVATE}:5004")
    with (
        phone(cluster, phone_port, callee("cancelled"), "ringing-phone") as ringing,
        phone(cluster, voicemail, callee("hangs_up"), "voicemail") as box,
    ):
        result = call(cluster, port, to_aor(caller("hung_up"), "support"), "caller")
        assert result.returncode == 0, (result.stdout[-2000:], cluster.log("run")[-3000:])
        for proc in (ringing, box):
            out, _ = proc.communicate(timeout=30)
            assert proc.returncode == 0, out[-2000:]


def test_a_sequential_hunt_group_of_users_and_a_uri(cluster: Cluster) -> None:
    """``{hunt: [alice, bob, URI]}``: alice's phone is busy (486), bob has no binding (he is
    passed over), the desk URI answers."""
    desk = free_port()
    (cluster.tmp / "routes.yaml").write_text(
        'rules:\n  - match: {to: "sip:sales@*"}\n'
        f'    do: {{hunt: [alice, bob, "sip:desk@127.0.0.1:{desk}"]}}\n'
    )
    port = start(cluster, "--routes", "routes.yaml")
    phone_port = free_port()
    register(cluster, port, phone_port, f"sip:alice@{PRIVATE}:5005")
    with (
        phone(cluster, phone_port, callee("refuses", 486), "busy-alice") as busy,
        phone(cluster, desk, callee("hangs_up"), "desk") as answering,
    ):
        result = call(cluster, port, to_aor(caller("hung_up"), "sales"), "caller")
        assert result.returncode == 0, (result.stdout[-2000:], cluster.log("run")[-3000:])
        for proc in (busy, answering):
            out, _ = proc.communicate(timeout=30)
            assert proc.returncode == 0, out[-2000:]
    outbound = [s for s in cluster.sessions() if s["role"] == "UAC"]
    assert sorted(s["end_code"] for s in outbound) == ["200", "486"]


def test_baresip_registered_over_udp_and_tcp_is_called_by_user_name(tmp_path: Path) -> None:
    """baresip registers alice (UDP) and bob (TCP) with digest auth and answers by itself; a
    sipp caller dials each by name: both calls are answered (bob's INVITE goes over the TCP
    connection baresip opened: its binding's source is that connection's ephemeral port).
    Everything runs in a private network namespace (netns_baresip_called.py)."""
    why_not = netns_missing()
    if why_not is not None:
        pytest.skip(why_not)
    result = run_driver(
        "netns_baresip_called.py", tmp_path, timeout=100,
        logs=("sessiond.log", "baresip.log", "sipp-alice.out", "sipp-bob.out"),
    )  # fmt: skip
    logs = result["logs"]
    assert result["calls"] == {"alice": 0, "bob": 0}, logs
    (bob,) = result["bindings"]["bob"]
    assert bob["transport"] == "TCP"
    assert not bob["source"].endswith(":5070")  # its connection, not its listening port
    baresip = (tmp_path / "baresip.log").read_text(errors="replace")
    assert "alice@127.0.0.1: Call established" in baresip
    assert "bob@127.0.0.1: Call established" in baresip
