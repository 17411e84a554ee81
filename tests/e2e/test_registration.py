"""End to end: the edge registers with sipp as the registrar (digest, refresh, 423, unregister
on stop), sends OPTIONS keepalives to sipp, and answers OPTIONS in and out of dialogs."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from sipp_scenarios import SIPP_INVITE

from .harness import (
    ENV,
    Cluster,
    background_sipp,
    finished,
    free_port,
    wait_for,
)

pytestmark = [
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.timeout(90),
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) missing"),
]

# sipp fails the call (a recv that times out without a label) when a check did not hold
FAIL = '  <recv request="NEVER" timeout="100"/>\n'


def reply(status: str, *headers: str, to_tag: bool = True) -> str:
    """A response to the request sipp received last."""
    to = "[last_To:];tag=[pid]reg[call_number]" if to_tag else "[last_To:]"
    lines = ["[last_Via:]", "[last_From:]", to, "[last_Call-ID:]", "[last_CSeq:]", *headers]
    return "  <send><![CDATA[\nSIP/2.0 {}\n{}\nContent-Length: 0\n\n]]></send>\n".format(
        status, "\n".join(lines)
    )


def expect_register(var: str, regexp: str, *, auth: bool) -> str:
    """Receive a REGISTER whose message matches ``regexp`` (and whose digest answer is right,
    with ``auth``); otherwise the call fails."""
    checks = f'      <ereg regexp="{regexp}" search_in="msg" check_it="true" assign_to="{var}e"/>\n'
    if auth:
        checks += f'      <verifyauth assign_to="{var}" username="alice" password="secret"/>\n'
    out = f'  <recv request="REGISTER">\n    <action>\n{checks}    </action>\n  </recv>\n'
    if auth:
        out += f'  <nop hide="true" test="{var}" next="{var}ok"/>\n{FAIL}  <label id="{var}ok"/>\n'
    return out


CHALLENGE = 'WWW-Authenticate: Digest realm="sipp.test", nonce="n[pid][call_number]", algorithm=MD5'

# REGISTER -> 401 -> REGISTER with credentials -> 200 (4 s, in our Contact) -> the refresh,
# with credentials -> 200 (Expires: 60) -> on the edge's stop: Expires: 0 -> 200
REGISTRAR = (
    '<?xml version="1.0"?>\n<scenario name="registrar with digest">\n'
    + expect_register("r1", "Expires: 3600", auth=False)
    + reply("401 Unauthorized", CHALLENGE)
    + expect_register("r2", "Expires: 3600", auth=True)
    + reply("200 OK", "[last_Contact:];expires=4")
    + expect_register("r3", "Expires: 3600", auth=True)
    + reply("200 OK", "[last_Contact:]", "Expires: 60")
    + expect_register("r4", "Expires: 0", auth=True)
    + reply("200 OK")
    + '  <Reference variables="r1e,r2e,r3e,r4e"/>\n</scenario>\n'
)

# REGISTER (30 s) -> 423 Min-Expires: 120 -> REGISTER (120 s) -> 200 -> Expires: 0 -> 200
TOO_BRIEF = (
    '<?xml version="1.0"?>\n<scenario name="registrar with Min-Expires">\n'
    + expect_register("a", "Expires: 30", auth=False)
    + reply("423 Interval Too Brief", "Min-Expires: 120")
    + expect_register("b", "Expires: 120", auth=False)
    + reply("200 OK", "Expires: 120")
    + expect_register("c", "Expires: 0", auth=False)
    + reply("200 OK")
    + '  <Reference variables="ae,be,ce"/>\n</scenario>\n'
)

OPTIONS_UAS = (
    '<?xml version="1.0"?>\n<scenario name="answers OPTIONS">\n'
    '  <recv request="OPTIONS"/>\n' + reply("200 OK", "Allow: INVITE, OPTIONS") + "</scenario>\n"
)


def start_edge(cluster: Cluster, *extra: str) -> int:
    port = free_port()
    listen = ["--listen", f"udp:127.0.0.1:{port}", "--name", "e1"]
    cluster.start("edge", "edge", *cluster.common(), *listen, *extra)
    return port


def hash_of(cluster: Cluster, key: str) -> dict[str, str]:
    raw = cluster.redis().hgetall(f"{cluster.namespace}:{key}")
    return {k.decode(): v.decode() for k, v in raw.items()}


def registrar(tmp_path: Path, scenario: str, port: int, calls: int = 1) -> list[str]:
    path = tmp_path / "registrar.xml"
    path.write_text(scenario)
    args = ["-sf", str(path), "-i", "127.0.0.1", "-p", str(port), "-m", str(calls)]
    return [*args, "-timeout", "60", "-trace_err", "-error_file", str(tmp_path / "sipp_err.log")]


def sipp_errors(tmp_path: Path) -> str:
    path = tmp_path / "sipp_err.log"
    return path.read_text(errors="replace")[-2000:] if path.exists() else ""


def test_register_with_digest_refresh_and_unregister_on_stop(
    cluster: Cluster, tmp_path: Path
) -> None:
    reg_port = free_port()
    aor = f"sip:alice@127.0.0.1:{reg_port}"
    creds = tmp_path / "credentials"
    creds.write_text("# the test registrar\nuser=alice password=secret realm=sipp.test\n")
    metrics_port = free_port(1)  # SOCK_STREAM
    with background_sipp(tmp_path, *registrar(tmp_path, REGISTRAR, reg_port)) as sipp:
        edge_port = start_edge(
            cluster,
            *("--register", aor, "--credentials", str(creds), "--metrics-port", str(metrics_port)),
        )
        key = f"registration:{aor}"
        # the first 200 grants 4 s; its refresh gets 60 s
        refreshed = wait_for(lambda: hash_of(cluster, key).get("expires") == "60", timeout=30)
        state = hash_of(cluster, key)
        assert refreshed, f"{state}\n{cluster.log('edge')}\n{sipp_errors(tmp_path)}"
        assert state["state"] == "registered"
        assert state["registrations"] == "2"
        assert state["last_code"] == "200"
        assert state["contact"] == f"sip:alice@127.0.0.1:{edge_port}"
        assert float(state["expires_at"]) > float(state["updated_at"])
        page = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read().decode()
        assert f'sessiond_registered{{aor="{aor}"}} 1.0' in page
        assert f'sessiond_register_responses_total{{aor="{aor}",code="401"}} 1.0' in page
        ctl = subprocess.run(
            [sys.executable, "-m", "sessiond", "ctl", *cluster.common(), "registrations"],
            capture_output=True,
            text=True,
            env=ENV,
            check=False,
        )
        assert ctl.returncode == 0, ctl.stderr
        assert aor in ctl.stdout
        assert "registered" in ctl.stdout
        cluster.kill("edge", signal.SIGTERM)  # unregisters before it exits
        out, _ = sipp.communicate(timeout=30)
    assert finished(out) == (1, 0), out[-2000:] + sipp_errors(tmp_path) + cluster.log("edge")
    state = hash_of(cluster, key)
    assert (state["state"], state["last_code"], state["expires"]) == ("unregistered", "200", "0")


def test_423_interval_too_brief_registers_for_min_expires(cluster: Cluster, tmp_path: Path) -> None:
    reg_port = free_port()
    aor = f"sip:bob@127.0.0.1:{reg_port}"
    with background_sipp(tmp_path, *registrar(tmp_path, TOO_BRIEF, reg_port)) as sipp:
        start_edge(cluster, "--register", aor, "--register-expires", "30")
        key = f"registration:{aor}"
        assert wait_for(lambda: hash_of(cluster, key).get("state") == "registered", timeout=20), (
            hash_of(cluster, key),
            sipp_errors(tmp_path),
        )
        assert hash_of(cluster, key)["expires"] == "120"
        cluster.kill("edge", signal.SIGTERM)
        out, _ = sipp.communicate(timeout=30)
    assert finished(out) == (1, 0), out[-2000:] + sipp_errors(tmp_path) + cluster.log("edge")
    assert hash_of(cluster, key)["state"] == "unregistered"


def test_options_keepalive_records_reachability(cluster: Cluster, tmp_path: Path) -> None:
    peer_port = free_port()
    target = f"sip:127.0.0.1:{peer_port}"
    with background_sipp(tmp_path, *registrar(tmp_path, OPTIONS_UAS, peer_port, calls=2)) as sipp:
        start_edge(cluster, "--ping", target, "--keepalive", "0.5")
        out, _ = sipp.communicate(timeout=30)  # sipp ends after answering two OPTIONS
        assert finished(out) == (2, 0), out[-2000:] + sipp_errors(tmp_path) + cluster.log("edge")
        key = f"keepalive:{target}"
        assert wait_for(lambda: hash_of(cluster, key).get("pings_answered") == "2", timeout=10)
    state = hash_of(cluster, key)
    assert state["reachable"] == "1"
    assert state["ping_code"] == "200"
    assert float(state["rtt_ms"]) >= 0
    assert state["edge"] == "e1"


# A call in which the caller sends OPTIONS inside the dialog and outside any dialog (no To
# tag, a From tag of its own), each answered 200 with Allow, then hangs up.
OPTIONS_IN_AND_OUT_OF_DIALOG = (
    """<?xml version="1.0"?>
<scenario name="OPTIONS in and out of a dialog">
"""
    + SIPP_INVITE
    + """  <recv response="200" rrs="true"/>
  <send><![CDATA[
ACK [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
  <send retrans="500"><![CDATA[
OPTIONS [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 2 OPTIONS
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200">
    <action>
      <ereg regexp="Allow: .*OPTIONS" search_in="msg" check_it="true" assign_to="in"/>
    </action>
  </recv>
  <send retrans="500"><![CDATA[
OPTIONS sip:[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]ood[call_number]
To: <sip:[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 OPTIONS
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200">
    <action>
      <ereg regexp="Allow: .*INVITE" search_in="msg" check_it="true" assign_to="out"/>
    </action>
  </recv>
  <send retrans="500"><![CDATA[
BYE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 3 BYE
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200"/>
  <Reference variables="in,out"/>
</scenario>
"""
)


def test_options_are_answered_in_and_out_of_a_dialog(cluster: Cluster, tmp_path: Path) -> None:
    port = cluster.start_run()
    scenario = tmp_path / "options.xml"
    scenario.write_text(OPTIONS_IN_AND_OUT_OF_DIALOG)
    args = ["-sf", str(scenario), f"127.0.0.1:{port}", "-i", "127.0.0.1", "-p", str(free_port())]
    with background_sipp(tmp_path, *args, "-m", "1", "-timeout", "30") as caller:
        out, _ = caller.communicate(timeout=40)
    assert finished(out) == (1, 0), out[-2000:] + cluster.log("run")
    assert wait_for(lambda: [s["state"] for s in cluster.sessions()] == ["Terminated"])
