"""A phone registered through an edge proxy is called through it (RFC 3327 Path), end to end
with a real Kamailio: ``sessiond run --registrar example.com`` on real Redis, a Kamailio in
front of it adding ``Path`` (``add_path_received()``) to the REGISTERs it relays, a sipp phone
registering through that Kamailio with digest auth, then a sipp caller dialling
``sip:alice@example.com`` at sessiond.

The phone registers a Contact on a private address nobody can reach (``10.99.0.7``, as a
phone behind NAT writes): the INVITE reaches it only because sessiond sends it to the first
Path URI with the Path as Route headers, and Kamailio, consuming its own Route, sends it to
the address the REGISTER came from (the Path's ``received``, ``use_received``). The phone
sees Kamailio's Via on top; Kamailio's log shows each request sessiond sent it with its
Route. Kamailio record-routes, so the in-dialog requests both ways go through it too.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator

import pytest

from sessiond.cli.bench.peer_systems import Running, kamailio_binary, kamailio_modules, run_kamailio
from sipp_scenarios import OK_TO_LAST, caller

from .harness import Cluster, background_sipp, free_port, sipp, wait_for
from .test_registered_calls import bound, call, ctl, start, to_aor

pytestmark = [
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.timeout(120),
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) missing"),
    pytest.mark.skipif(kamailio_binary() is None, reason="kamailio (apt kamailio) missing"),
]
CONTACT = "sip:alice@10.99.0.7:5999"

# The edge proxy: REGISTERs get a Path (with the phone's received address) and go to
# sessiond; an initial request carrying our Route (the Path sessiond preloads) goes to that
# received address, record-routed; in-dialog requests follow their Route. Every request is
# logged first ("EDGE method R-URI from source route=[Route]").
EDGE_CFG = """#!KAMAILIO
debug=1
log_stderror=yes
children=2
disable_tcp=yes
auto_aliases=no
listen=udp:127.0.0.1:{port}
mpath="{modules}/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "path.so"
loadmodule "pv.so"
loadmodule "xlog.so"
loadmodule "maxfwd.so"
loadmodule "siputils.so"
loadmodule "textops.so"
modparam("path", "use_received", 1)
request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (is_method("OPTIONS") && !has_totag()) {{ sl_send_reply("200", "OK"); exit; }}
    xlog("L_NOTICE", "EDGE $rm $ru from $si:$sp route=[$hdr(Route)]\\n");
    if (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
    if (has_totag()) {{
        if (is_method("ACK") && t_check_trans()) {{ exit; }}
        if (loose_route()) {{ t_relay(); exit; }}
        sl_send_reply("404", "Not Here");
        exit;
    }}
    if (is_method("REGISTER")) {{
        add_path_received();
        $du = "sip:127.0.0.1:{sessiond}";
        t_relay();
        exit;
    }}
    if (is_present_hf("Route")) {{
        # a request preloaded with our Route (the Path): loose_route() consumes it (false,
        # -3: no next hop) and sets $du to the Path's received address (use_received)
        loose_route();
        if ($du == $null) {{ sl_send_reply("403", "No Received In The Route"); exit; }}
        record_route();
        t_relay();
        exit;
    }}
    sl_send_reply("403", "No Route Through This Edge");
    exit;
}}
"""


@pytest.fixture
def edge(cluster: Cluster) -> Iterator[tuple[int, Running]]:
    """sessiond's registrar and a Kamailio edge in front of it: (sessiond port, edge)."""
    port = start(cluster)
    running = Running("kamailio-edge", free_port(), None)
    cfg = EDGE_CFG.format(port=running.port, modules=kamailio_modules(), sessiond=port)
    run_kamailio(cluster.tmp, running, cfg)
    try:
        yield port, running
    finally:
        running.stop()


def edge_log(cluster: Cluster) -> str:
    return (cluster.tmp / "kamailio-edge.log").read_text(errors="replace")


def _register(cseq: int, supported: bool, contact: str, q: str, *, auth: bool) -> str:
    return f"""  <send retrans="500"><![CDATA[
REGISTER sip:example.com SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:alice@example.com>;tag=[pid]r[call_number]
To: <sip:alice@example.com>
Call-ID: [call_id]
CSeq: {cseq} REGISTER
Contact: <{contact}>{f";q={q}" if q else ""}
Expires: 300
{"Supported: path" if supported else "User-Agent: sipp"}
Max-Forwards: 70
{"[authentication]" if auth else "User-Agent: sipp"}
Content-Length: 0

]]></send>
"""


def register(
    cluster: Cluster,
    kamailio: int,
    phone_port: int,
    final: str,
    contact: str = CONTACT,
    q: str = "",
) -> None:
    """sipp registers alice's private ``contact`` from ``phone_port`` through the edge
    (digest auth answered); ``final`` is what the answer to the authenticated REGISTER must
    be: ``path`` (200 echoing the edge's Path) or ``420`` (no Supported: path)."""
    supported = final == "path"
    if supported:
        check = (
            f'  <recv response="200"><action><ereg regexp="&lt;sip:127.0.0.1:{kamailio};'
            f'[^>]*lr" search_in="hdr" header="Path:" check_it="true" assign_to="path"/>'
            '</action></recv>\n  <Reference variables="path"/>\n'
        )
    else:
        check = (
            '  <recv response="420"><action><ereg regexp="path" search_in="hdr" '
            'header="Unsupported:" check_it="true" assign_to="u"/></action></recv>\n'
            '  <Reference variables="u"/>\n'
        )
    text = (
        '<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="register">\n'
        + _register(1, supported, contact, q, auth=False)
        + '  <recv response="401" auth="true"/>\n'
        + _register(2, supported, contact, q, auth=True)
        + check
        + "</scenario>\n"
    )
    path = cluster.tmp / f"register-{phone_port}.xml"
    path.write_text(text)
    result = sipp(
        cluster.tmp,
        f"127.0.0.1:{kamailio}",
        *("-sf", str(path), "-p", str(phone_port), "-i", "127.0.0.1", "-m", "1"),
        *("-nr", "-timeout", "30", "-au", "alice", "-ap", "s3cret", "-mp", str(free_port())),
        timeout=40,
    )
    assert result.returncode == 0, (result.stdout[-2000:], edge_log(cluster)[-2000:])


def _through_edge(kamailio: int, name: str) -> str:
    """sipp actions: the top Via of the message just received is the edge's."""
    return (
        f'<ereg regexp="^ *SIP/2.0/UDP 127.0.0.1:{kamailio};" search_in="hdr" header="Via:" '
        f'check_it="true" assign_to="{name}"/>'
    )


def _answer(code: int, reason: str, *, sdp: bool = False, via: str = "[last_Via:]") -> str:
    """The phone's response to the INVITE (its CSeq whatever came since; ``via``: its Via
    lines, the INVITE's when it was the last message)."""
    body, ctype = "", ""
    if sdp:
        ctype = "Content-Type: application/sdp\n"
        body = (
            "v=0\no=alice 1 1 IN IP[local_ip_type] [local_ip]\ns=-\n"
            "c=IN IP[media_ip_type] [media_ip]\nt=0 0\n"
            "m=audio [media_port] RTP/AVP 0\na=rtpmap:0 PCMU/8000\n"
        )
    rr = "[last_Record-Route:]\n" if code < 300 else ""
    return f"""  <send><![CDATA[
SIP/2.0 {code} {reason}
{via}
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
CSeq: [$cseq] INVITE
{rr}Contact: <sip:alice@[local_ip]:[local_port]>
{ctype}Content-Length: [len]

{body}]]></send>
"""


_PHONE_BYE = """  <send retrans="500"><![CDATA[
BYE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:alice@example.com>;tag=[pid]SIPpTag01[call_number]
To: [$caller]
Call-ID: [call_id]
CSeq: 1 BYE
[routes]
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200"/>
"""


def phone_scenario(kamailio: int, flow: str, contact: str = CONTACT) -> str:
    """The registered phone: the INVITE must come through the edge (its Via on top, the
    Request-URI the registered Contact, no Route left), with Record-Route echoed; then
    ``hangs_up`` (ACK through the edge, then the phone's BYE along the route set),
    ``hung_up`` (the caller's BYE arrives through the edge), ``cancelled`` (a CANCEL
    through the edge, 200 and 487, the edge's ACK) or ``refuses`` (486, the edge's ACK)."""
    invite = f"""  <recv request="INVITE" crlf="true" rrs="true">
    <action>
      <ereg regexp=".*" search_in="hdr" header="From:" assign_to="caller"/>
      <ereg regexp="^ *[0-9]+" search_in="hdr" header="CSeq:" assign_to="cseq"/>
      <ereg regexp=".*" search_in="hdr" header="Via:" occurrence="1" assign_to="via1"/>
      <ereg regexp=".*" search_in="hdr" header="Via:" occurrence="2" check_it="true"
            assign_to="via2"/>
      <ereg regexp="^INVITE {re.escape(contact)} SIP/2.0" search_in="msg" check_it="true"
            assign_to="ruri"/>
      {_through_edge(kamailio, "via")}
      <ereg regexp="[^-]Route:" search_in="msg" check_it_inverse="true"
            assign_to="noroute"/>
    </action>
  </recv>
"""
    if flow == "refuses":
        body = invite + _answer(486, "Busy Here") + '  <recv request="ACK"/>\n'
        used = "ruri,via,noroute,via1,via2,caller,cseq"
        body += f'  <Reference variables="{used}"/>\n'
        return f'<?xml version="1.0"?>\n<scenario name="phone {flow}">\n{body}</scenario>\n'
    body = invite + _answer(180, "Ringing")
    used = "ruri,via,noroute,via1,via2"
    if flow == "hangs_up":
        body += _answer(200, "OK", sdp=True)
        body += f'  <recv request="ACK"><action>{_through_edge(kamailio, "ackvia")}</action>'
        body += '</recv>\n  <pause milliseconds="300"/>\n' + _PHONE_BYE
        used += ",ackvia"
    elif flow == "hung_up":
        body += _answer(200, "OK", sdp=True) + '  <recv request="ACK"/>\n'
        body += f'  <recv request="BYE"><action>{_through_edge(kamailio, "byevia")}</action>'
        body += "</recv>\n" + OK_TO_LAST
        used += ",byevia,caller"
    elif flow == "cancelled":
        body += f'  <recv request="CANCEL"><action>{_through_edge(kamailio, "cvia")}'
        # the 487 carries the INVITE's Vias (the edge's CANCEL has only the edge's)
        body += "</action></recv>\n" + OK_TO_LAST
        body += _answer(487, "Request Terminated", via="Via:[$via1]\nVia:[$via2]")
        body += '  <recv request="ACK"/>\n'
        used += ",cvia,caller"
    else:
        raise ValueError(flow)
    body += f'  <Reference variables="{used}"/>\n'
    return f'<?xml version="1.0"?>\n<scenario name="phone {flow}">\n{body}</scenario>\n'


def run_call(cluster: Cluster, port: int, kamailio: int, flow: str) -> None:
    """alice registers through the edge, then a sipp caller calls her at sessiond; the
    phone's and the caller's scenarios must both pass."""
    phone_port = free_port()
    register(cluster, kamailio, phone_port, "path")
    with_caller = {"hangs_up": "hung_up", "hung_up": "hangs_up", "cancelled": "cancels"}[flow]
    scenario = cluster.tmp / f"phone-{flow}.xml"
    scenario.write_text(phone_scenario(kamailio, flow))
    args = ("-sf", str(scenario), "-p", str(phone_port), "-i", "127.0.0.1", "-m", "1")
    with background_sipp(cluster.tmp, *args, "-trace_msg", "-trace_err") as phone:
        assert wait_for(lambda: bound(phone_port))
        result = call(cluster, port, to_aor(caller(with_caller)), f"caller-{flow}")
        assert result.returncode == 0, (
            result.stdout[-2000:],
            cluster.log("run")[-3000:],
            edge_log(cluster)[-3000:],
        )
        out, _ = phone.communicate(timeout=30)
        assert phone.returncode == 0, (out[-2000:], edge_log(cluster)[-3000:])
    ended = wait_for(lambda: all(s["state"] == "Terminated" for s in cluster.sessions()))
    states = [(s["role"], s["state"], s.get("end_code")) for s in cluster.sessions()]
    assert ended, (states, edge_log(cluster)[-3000:])


def sent_by_sessiond(cluster: Cluster, port: int, method: str) -> list[str]:
    """The Route of each ``method`` sessiond sent the edge, as the edge logged it."""
    found = re.findall(
        rf"EDGE {method} (\S+) from 127\.0\.0\.1:{port} route=\[([^\]]*)\]", edge_log(cluster)
    )
    return [route for _, route in found]


def test_a_call_to_a_phone_registered_through_an_edge_goes_through_it(
    cluster: Cluster, edge: tuple[int, Running]
) -> None:
    """The INVITE goes to the Path's edge with the Path as Route (Request-URI the private
    Contact), reaches the phone with the edge's Via on top; the phone answers, the ACK and
    the phone's BYE go through the edge (it record-routed)."""
    port, kamailio = edge
    run_call(cluster, port, kamailio.port, "hangs_up")
    shown = ctl_registrations(cluster)
    assert re.search(rf"sip:alice@example.com .* path <sip:127\.0\.0\.1:{kamailio.port};", shown)
    (route,) = sent_by_sessiond(cluster, port, "INVITE")
    assert route.startswith(f"<sip:127.0.0.1:{kamailio.port};")
    assert ";lr" in route
    assert "received=sip:127.0.0.1:" in route
    (ack,) = sent_by_sessiond(cluster, port, "ACK")
    assert ack.startswith(f"<sip:127.0.0.1:{kamailio.port};")  # the dialog's route set
    (outbound,) = [s for s in cluster.sessions() if s["role"] == "UAC"]
    assert outbound["invite_route"] == route
    assert "destination" not in outbound  # the Path, not the REGISTER's source, decides
    assert outbound["end_code"] == "200"
    assert re.search(
        rf"EDGE BYE \S+ from 127\.0\.0\.1:\d+ route=\[<sip:127\.0\.0\.1:"
        rf"{kamailio.port};",
        edge_log(cluster),
    )


def test_the_callers_bye_reaches_the_phone_through_the_edge(
    cluster: Cluster, edge: tuple[int, Running]
) -> None:
    """The caller hangs up: sessiond's BYE to the phone follows the dialog's route set
    (the edge's Record-Route) and arrives with the edge's Via on top."""
    port, kamailio = edge
    run_call(cluster, port, kamailio.port, "hung_up")
    assert len(sent_by_sessiond(cluster, port, "BYE")) == 1


def test_cancel_and_the_ack_of_the_487_carry_the_path(
    cluster: Cluster, edge: tuple[int, Running]
) -> None:
    """The caller cancels while the phone rings: sessiond's CANCEL and its ACK of the 487
    carry the INVITE's Route (the Path) to the edge, which cancels the phone's branch."""
    port, kamailio = edge
    run_call(cluster, port, kamailio.port, "cancelled")
    (invite,) = sent_by_sessiond(cluster, port, "INVITE")
    assert sent_by_sessiond(cluster, port, "CANCEL") == [invite]
    assert sent_by_sessiond(cluster, port, "ACK") == [invite]


def test_a_path_without_supported_path_is_refused_420(
    cluster: Cluster, edge: tuple[int, Running]
) -> None:
    """RFC 3327 5.3: the phone did not say Supported: path, the edge added a Path anyway:
    420 Bad Extension with Unsupported: path, and no binding is made."""
    _, kamailio = edge
    register(cluster, kamailio.port, free_port(), "420")
    out = ctl_registrations(cluster)
    assert "alice" not in out, out


def ctl_registrations(cluster: Cluster) -> str:
    result = ctl(cluster, "registrations")
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_sequential_forking_through_the_edge(cluster: Cluster, edge: tuple[int, Running]) -> None:
    """Two phones registered through the edge (q 0.9 and 0.5): the first answers 486, the
    next is called through its own Path (its own received address) and answers; the
    caller sees one call."""
    port, kamailio = edge
    busy_port, answering_port = free_port(), free_port()
    busy, answering = "sip:alice@10.99.0.7:5001", "sip:alice@10.99.0.7:5002"
    register(cluster, kamailio.port, busy_port, "path", busy, q="0.9")
    register(cluster, kamailio.port, answering_port, "path", answering, q="0.5")
    phones = []
    for name, phone_port, flow, contact in (
        ("busy", busy_port, "refuses", busy),
        ("answering", answering_port, "hangs_up", answering),
    ):
        scenario = cluster.tmp / f"phone-{name}.xml"
        scenario.write_text(phone_scenario(kamailio.port, flow, contact))
        phones.append(
            (phone_port, ("-sf", str(scenario), "-p", str(phone_port), "-i", "127.0.0.1"))
        )
    (first, first_args), (second, second_args) = phones
    with (
        background_sipp(cluster.tmp, *first_args, "-m", "1", "-trace_err") as one,
        background_sipp(cluster.tmp, *second_args, "-m", "1", "-trace_err") as two,
    ):
        assert wait_for(lambda: bound(first) and bound(second))
        result = call(cluster, port, to_aor(caller("hung_up")), "caller-fork")
        assert result.returncode == 0, (result.stdout[-2000:], edge_log(cluster)[-3000:])
        for proc in (one, two):
            out, _ = proc.communicate(timeout=30)
            assert proc.returncode == 0, (out[-2000:], edge_log(cluster)[-3000:])
    routes = sent_by_sessiond(cluster, port, "INVITE")
    assert len(routes) == 2, routes
    assert f"received=sip:127.0.0.1:{busy_port}" in routes[0]
    assert f"received=sip:127.0.0.1:{answering_port}" in routes[1]
    assert routes[0] in sent_by_sessiond(cluster, port, "ACK")  # the 486's, along the Path
    outbound = [s for s in cluster.sessions() if s["role"] == "UAC"]
    assert sorted(s["end_code"] for s in outbound) == ["200", "486"]
