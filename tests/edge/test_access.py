"""Access control at the edge: allow lists and digest authentication (sipp authenticates)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.harness import Cluster, free_port, sipp
from sessiond.edge.access import AccessConfigError, AccessPolicy, load_users, parse_networks
from sessiond.sip.digest import DigestClient
from sessiond.sip.message import SipRequest, SipResponse, make_response, parse_message
from sipp_scenarios import SIPP_SDP, uac_refused

INVITE = (
    b"INVITE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-a\r\n"
    b"From: <sip:alice@127.0.0.1>;tag=a\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: acc@h\r\n"
    b"CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
)


def invite() -> SipRequest:
    msg = parse_message(INVITE)
    assert isinstance(msg, SipRequest)
    return msg


def test_allow_list() -> None:
    policy = AccessPolicy(parse_networks(["10.0.0.0/8", "127.0.0.1/32", "::1"]))
    assert policy.check(invite(), "127.0.0.1", 0.0) is None
    assert policy.check(invite(), "::1", 0.0) is None
    refused = policy.check(invite(), "192.0.2.7", 0.0)
    assert refused is not None
    assert refused.status == 403
    with pytest.raises(AccessConfigError, match="not-a-net"):
        parse_networks(["not-a-net"])


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_digest_challenge_and_answer(tmp_path: Path, algorithm: str) -> None:
    users_file = tmp_path / "users"
    users_file.write_text("# users\nalice:secret\n\nbob:other\n")
    policy = AccessPolicy(
        users=load_users(users_file, "sessiond", algorithm), realm="sessiond", algorithm=algorithm
    )
    challenge = policy.check(invite(), "127.0.0.1", 100.0)
    assert challenge is not None
    assert challenge.status == 401
    resp = make_response(invite(), 401, headers=challenge.headers)
    header, value = DigestClient("alice", "secret").answer(resp, "INVITE", "sip:bob@127.0.0.1")
    assert header == "Authorization"
    authed = invite().with_header("Authorization", value)
    assert policy.check(authed, "127.0.0.1", 101.0) is None
    wrong = DigestClient("alice", "wrong").answer(resp, "INVITE", "sip:bob@127.0.0.1")[1]
    refused = policy.check(invite().with_header("Authorization", wrong), "127.0.0.1", 101.0)
    assert refused is not None
    assert refused.status == 403
    stale = policy.check(authed, "127.0.0.1", 100.0 + 10_000)
    assert stale is not None
    assert stale.status == 401
    assert "stale=true" in dict(stale.headers)["WWW-Authenticate"].lower()
    assert isinstance(resp, SipResponse)


def test_auth_file_errors_name_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "users"
    bad.write_text("alice:secret\nno-colon\nalice:again\n")
    with pytest.raises(AccessConfigError) as info:
        load_users(bad, "r", "MD5")
    assert f"{bad}:2: expected username:password" in str(info.value)
    assert f"{bad}:3: user 'alice' listed twice" in str(info.value)


UAC_AUTH = (
    """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="uac with digest authentication">
  <send retrans="500"><![CDATA[
INVITE sip:service@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:alice@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:service@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: sip:alice@[local_ip]:[local_port]
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="100" optional="true"/>
  <recv response="401" auth="true"/>
  <send><![CDATA[
ACK sip:service@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:alice@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:service@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
  <send retrans="500"><![CDATA[
INVITE sip:service@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:alice@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:service@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 2 INVITE
Contact: sip:alice@[local_ip]:[local_port]
[authentication]
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

"""
    + SIPP_SDP
    + """]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="{final}"/>
  <send><![CDATA[
ACK sip:service@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:alice@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:service@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 2 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
{bye}
</scenario>
"""
)

BYE = """  <send retrans="500"><![CDATA[
BYE sip:service@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:alice@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:service@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 3 BYE
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200"/>"""


@pytest.fixture
def cluster(redis_url: str, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(redis_url, tmp_path)
    yield c
    c.stop_all()
    c.cleanup()


def _call(tmp_path: Path, port: int, password: str, final: int) -> subprocess.CompletedProcess[str]:
    scenario = tmp_path / f"uac_auth_{final}.xml"
    scenario.write_text(
        UAC_AUTH.replace("{final}", str(final)).replace("{bye}", BYE if final == 200 else "")
    )
    login = ["-au", "alice", "-ap", password]
    ports = ["-p", str(free_port()), "-mp", str(free_port())]
    args = ["-sf", str(scenario), f"127.0.0.1:{port}", "-m", "1", *login, *ports]
    return sipp(tmp_path, *args, "-timeout", "20", timeout=60)


@pytest.mark.redis
@pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp missing")
def test_sipp_authenticates_with_digest(cluster: Cluster, tmp_path: Path) -> None:
    users = tmp_path / "users"
    users.write_text("alice:s3cret\n")
    port = cluster.start_run("--auth-file", str(users))
    ok = _call(tmp_path, port, "s3cret", 200)
    assert ok.returncode == 0, ok.stdout[-2000:]
    assert "Failed call" in ok.stdout
    wrong = _call(tmp_path, port, "guess", 403)
    assert wrong.returncode == 0, wrong.stdout[-2000:]
    # nothing secret in the logs
    time.sleep(0.2)
    assert "s3cret" not in cluster.log("run")
    sessions = cluster.sessions()
    assert [s["state"] for s in sessions] == ["Terminated"]  # only the authenticated call


@pytest.mark.redis
@pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp missing")
def test_source_outside_the_allow_list_is_refused(cluster: Cluster, tmp_path: Path) -> None:
    # OPTIONS from 127.0.0.1 gets a 403 too
    port = cluster.start_run("--allow", "127.0.0.2/32", any_answer=True)
    (tmp_path / "uac_403.xml").write_text(uac_refused(403))
    ports = ["-p", str(free_port()), "-mp", str(free_port())]
    args = ["-sf", "uac_403.xml", f"127.0.0.1:{port}", "-m", "1", *ports, "-timeout", "20"]
    result = sipp(tmp_path, *args, timeout=60)
    assert result.returncode == 0, result.stdout[-2000:]
    assert cluster.sessions() == []
