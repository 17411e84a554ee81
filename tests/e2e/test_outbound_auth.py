"""End to end: a call placed with the Client API through a sipp "proxy" that challenges the
INVITE (407 Proxy-Authenticate, 401 WWW-Authenticate): retried once with credentials from
``--credentials``, the digest checked by sipp; a second challenge fails the call."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from sessiond import Client
from sessiond.sip.digest import Credentials, compute_ha1, digest_response
from sipp_scenarios import SIPP_SDP

from .harness import Cluster, background_sipp, finished, free_port, free_rtp_range, wait_listening
from .test_registration import FAIL, reply, sipp_errors

pytestmark = [
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.timeout(90),
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) missing"),
]

HEADERS = {
    401: 'WWW-Authenticate: Digest realm="proxy.test", nonce="p[pid]", qop="auth", algorithm=MD5',
    407: 'Proxy-Authenticate: Digest realm="proxy.test", nonce="p[pid]", qop="auth"',
}
REASONS = {401: "401 Unauthorized", 407: "407 Proxy Authentication Required"}
ANSWERS = {401: "Authorization", 407: "Proxy-Authorization"}

OK_WITH_SDP = (
    """  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]uas[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[local_ip]:[local_port];transport=[transport]>
Content-Type: application/sdp
Content-Length: [len]

"""
    + SIPP_SDP
    + """]]></send>
"""
)


def challenge(code: int) -> str:
    """Receive an INVITE, challenge it, receive the ACK of the challenge."""
    return (
        '  <recv request="INVITE"/>\n'
        + reply(REASONS[code], HEADERS[code], to_tag=True)
        + '  <recv request="ACK"/>\n'
    )


# sipp checks an Authorization itself (not a Proxy-Authorization): the test checks both
# from sipp's message trace too
VERIFY = {401: '      <verifyauth assign_to="ok" username="alice" password="secret"/>\n'}


def digest_ok(tmp_path: Path, header: str) -> bool:
    """The digest answer in the INVITE sipp received is right for alice's password."""
    (trace,) = tmp_path.glob("*_messages.log")
    prefix = f"{header}: "
    values = [ln[len(prefix) :] for ln in trace.read_text().splitlines() if ln.startswith(prefix)]
    assert len(values) == 1, values
    cred = Credentials.parse(values[0])
    ha1 = compute_ha1("MD5", "alice", "proxy.test", "secret")
    expected = digest_response(
        algorithm=cred.algorithm,
        ha1=ha1,
        nonce=cred.nonce,
        method="INVITE",
        uri=cred.uri,
        qop=cred.qop,
        nc=cred.nc,
        cnonce=cred.cnonce,
    )
    return (cred.username, cred.realm, cred.response) == ("alice", "proxy.test", expected)


def authorized_call(code: int) -> str:
    """Challenge; the INVITE again with a right digest answer and CSeq 2 (else the call
    fails); answer 200; ACK; the caller's BYE."""
    answer = ANSWERS[code]
    return (
        f'<?xml version="1.0"?>\n<scenario name="{code} then the call">\n'
        + challenge(code)
        + '  <recv request="INVITE">\n    <action>\n'
        f'      <ereg regexp="{answer}: Digest username=.alice." search_in="msg"'
        ' check_it="true" assign_to="h"/>\n'
        '      <ereg regexp="CSeq: 2 INVITE" search_in="msg" check_it="true" assign_to="c"/>\n'
        + VERIFY.get(code, "")
        + "    </action>\n  </recv>\n"
        + ('  <nop hide="true" test="ok" next="good"/>\n' + FAIL + '  <label id="good"/>\n')
        * (code in VERIFY)
        + OK_WITH_SDP
        + '  <recv request="ACK"/>\n  <recv request="BYE"/>\n'
        + reply("200 OK", to_tag=False)
        + '  <Reference variables="h,c"/>\n</scenario>\n'
    )


TWICE = (
    '<?xml version="1.0"?>\n<scenario name="407 twice">\n'
    + challenge(407)
    + challenge(407)
    + "</scenario>\n"
)
ONCE = '<?xml version="1.0"?>\n<scenario name="407">\n' + challenge(407) + "</scenario>\n"


def start_run(cluster: Cluster, tmp_path: Path, realm: str = "proxy.test") -> None:
    creds = tmp_path / "credentials"
    creds.write_text(f"user=alice password=secret realm={realm}\n")
    port = free_port()
    listen = ["--listen", f"udp:127.0.0.1:{port}", "--rtp-ports", free_rtp_range()]
    cluster.start(
        "run", "run", *cluster.common(), *listen, "--answer", "app", "--credentials", str(creds)
    )
    wait_listening(port)


def uas(tmp_path: Path, scenario: str, port: int) -> list[str]:
    path = tmp_path / "uas.xml"
    path.write_text(scenario)
    return [
        *("-sf", str(path), "-i", "127.0.0.1", "-p", str(port), "-m", "1", "-timeout", "60"),
        *("-trace_err", "-error_file", str(tmp_path / "sipp_err.log"), "-trace_msg"),
    ]


@pytest.mark.parametrize("code", [407, 401])
async def test_challenged_invite_is_retried_once_with_credentials(
    cluster: Cluster, tmp_path: Path, code: int
) -> None:
    start_run(cluster, tmp_path)
    port = free_port()
    async with Client(cluster.redis_url, namespace=cluster.namespace, group="t") as client:
        with background_sipp(tmp_path, *uas(tmp_path, authorized_call(code), port)) as sipp:
            sid = await client.make_call(
                f"sip:svc@127.0.0.1:{port}", from_uri="sip:alice@127.0.0.1"
            )
            try:
                await client.wait_for_state(sid, "Established", timeout=20)
            except Exception:
                sipp.kill()
                out = sipp.communicate()[0]
                pytest.fail(out[-1500:] + sipp_errors(tmp_path) + cluster.log("run")[-3000:])
            await client.hangup(sid)
            session = await client.wait_for_state(sid, "Terminated", timeout=20)
            out = (await asyncio.to_thread(sipp.communicate, timeout=30))[0]
        assert finished(out) == (1, 0), out[-2000:] + sipp_errors(tmp_path)
        steps = [(h["from"], h["event"], h["to"]) for h in await client.history(sid)]
    assert digest_ok(tmp_path, ANSWERS[code])
    assert steps == [
        ("Idle", "MakeCall", "Preparing"),
        ("Preparing", "MediaReady", "Calling"),
        ("Calling", "Rejected", "Calling"),
        ("Calling", "Answered", "Established"),
        ("Established", "Hangup", "Terminating"),
        ("Terminating", "ByeDone", "Terminated"),
    ]
    assert session["local_cseq"] == "3"  # INVITE 1, INVITE 2 with credentials, BYE 3
    assert session["cond.auth_tried"] == "1"


@pytest.mark.parametrize("realm", ["proxy.test", "elsewhere"])
async def test_a_second_challenge_or_one_without_credentials_fails_the_call_with_its_code(
    cluster: Cluster, tmp_path: Path, realm: str
) -> None:
    """With credentials for the challenge's realm: retried once, the second 407 fails the
    call; with none for it: the first 407 does."""
    start_run(cluster, tmp_path, realm)
    port = free_port()
    scenario = TWICE if realm == "proxy.test" else ONCE
    async with Client(cluster.redis_url, namespace=cluster.namespace, group="t") as client:
        await client.ensure_group()
        with background_sipp(tmp_path, *uas(tmp_path, scenario, port)) as sipp:
            sid = await client.make_call(
                f"sip:svc@127.0.0.1:{port}", from_uri="sip:alice@127.0.0.1"
            )
            session = await client.wait_for_state(sid, "Terminated", timeout=20)
            out = (await asyncio.to_thread(sipp.communicate, timeout=30))[0]
            async for event in client.events():
                if event.sid == sid and event.type in ("Failed", "Ended"):
                    break
        assert finished(out) == (1, 0), out[-2000:] + sipp_errors(tmp_path)
    assert event.type == "Failed"
    assert event.code == 407
    assert session["end_code"] == "407"
    assert session["local_cseq"] == ("2" if realm == "proxy.test" else "1")
