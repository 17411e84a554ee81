"""sipp scenarios that follow the dialog, for benches that put a proxy or a B2BUA between
the caller and the callee, and one run of them.

sipp's built-in ``uac`` sends its ACK and BYE to the Request-URI of the INVITE with no Route
header, so a record-routing proxy (Kamailio) never sees them, and it fails a call whose 180
arrives after the 200 (proxies with several receiving processes, and B2BUAs under load,
reorder them). The caller here takes the route set from the 200's Record-Route (``rrs``), sends
ACK and BYE to the 200's Contact (the URI alone: sipp's ``[next_url]`` keeps a display name),
treats 100/180/183 as optional, and ties its receptions to the INVITE's transaction
(``start_txn``/``response_txn``), which makes a 180 arriving after the 200 a late response of
that transaction instead of an unexpected message that fails the call. The callee answers
180 then 200 with SDP, copies Record-Route into its responses and answers the BYE. Neither
puts ``;transport=UDP`` in its Contact (sippy refuses it).
"""

from __future__ import annotations

import csv
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from sessiond.cli.bench.spawn import free_udp_port, stop

_SDP = """
      v=0
      o=bench 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000
"""

_CALLER_REQUEST = """
      {method} {uri} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      {route}From: bench <sip:bench@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      {to}
      Call-ID: [call_id]
      CSeq: {cseq}
      Contact: <sip:bench@[local_ip]:[local_port]>
      Max-Forwards: 70
"""


def caller_xml(hold_ms: int) -> str:
    """The caller: INVITE with SDP, optional 100/180/183, 200 (setup time ``setup``: INVITE
    sent -> 200 received), ACK, hold ``hold_ms``, BYE, 200."""
    invite = _CALLER_REQUEST.format(
        method="INVITE",
        uri="sip:[service]@[remote_ip]:[remote_port]",
        route="",
        to="To: <sip:[service]@[remote_ip]:[remote_port]>",
        cseq="1 INVITE",
    )
    in_dialog = {
        method: _CALLER_REQUEST.format(
            method=method, uri="[$target]", route="[routes]\n      ", to="[last_To:]", cseq=cseq
        )
        for method, cseq in (("ACK", "1 ACK"), ("BYE", "2 BYE"))
    }
    optional = "\n".join(
        f'  <recv response="{code}" optional="true" response_txn="invite"/>'
        for code in (100, 180, 183)
    )
    return f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="bench caller">
  <send retrans="500" start_rtd="setup" start_txn="invite">
    <![CDATA[
{invite}      Content-Type: application/sdp
      Content-Length: [len]
{_SDP}
    ]]>
  </send>
{optional}
  <recv response="200" rtd="setup" rrs="true" response_txn="invite">
    <action>
      <ereg regexp="sips?:[^> ]+" search_in="hdr" header="Contact:" check_it="true"
            assign_to="target"/>
    </action>
  </recv>
  <send ack_txn="invite">
    <![CDATA[
{in_dialog["ACK"]}      Content-Length: 0

    ]]>
  </send>
  <pause milliseconds="{hold_ms}"/>
  <send retrans="500" start_txn="bye">
    <![CDATA[
{in_dialog["BYE"]}      Content-Length: 0

    ]]>
  </send>
  <recv response="200" crlf="true" response_txn="bye"/>
</scenario>
"""


_CALLEE_RESPONSE = """
      SIP/2.0 {status}
      [last_Via:]
      [last_From:]
      [last_To:]{tag}
      [last_Call-ID:]
      [last_CSeq:]
      {record_route}Contact: <sip:callee@[local_ip]:[local_port]>
"""


def callee_xml() -> str:
    """The far end of a forwarded call: 180, 200 with SDP, then the BYE is answered."""
    tag = ";tag=[pid]SIPpTag01[call_number]"
    rr = "[last_Record-Route:]\n      "
    ringing = _CALLEE_RESPONSE.format(status="180 Ringing", tag=tag, record_route=rr)
    ok = _CALLEE_RESPONSE.format(status="200 OK", tag=tag, record_route=rr)
    bye_ok = _CALLEE_RESPONSE.format(status="200 OK", tag="", record_route="")
    return f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="bench callee">
  <recv request="INVITE" crlf="true"/>
  <send>
    <![CDATA[
{ringing}      Content-Length: 0

    ]]>
  </send>
  <send retrans="500">
    <![CDATA[
{ok}      Content-Type: application/sdp
      Content-Length: [len]
{_SDP}
    ]]>
  </send>
  <recv request="ACK" optional="true" crlf="true"/>
  <recv request="BYE"/>
  <send>
    <![CDATA[
{bye_ok}      Content-Length: 0

    ]]>
  </send>
  <pause milliseconds="2000"/>
</scenario>
"""


def port_is_free(port: int) -> bool:
    """Nothing is bound to UDP ``port`` on loopback (a plain bind, no SO_REUSEPORT: sippy
    binds with it and would share the port with another listener silently)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass(frozen=True)
class SippStats:
    """What one sipp run counted (cumulative columns of its ``-trace_stat`` file)."""

    ok: int = 0
    failed: int = 0
    retransmissions: int = 0


def read_stats(work: Path) -> SippStats:
    """The last line of the ``-trace_stat`` file sipp wrote in ``work``."""
    for path in work.glob("*_.csv"):
        rows = list(csv.DictReader(path.read_text().splitlines(), delimiter=";"))
        if rows:
            last = rows[-1]
            return SippStats(
                ok=int(last.get("SuccessfulCall(C)") or 0),
                failed=int(last.get("FailedCall(C)") or 0),
                retransmissions=int(last.get("Retransmissions(C)") or 0),
            )
    return SippStats()


def setup_times(work: Path) -> list[float]:
    """Setup times (ms) sipp wrote with ``-trace_rtt``."""
    times: list[float] = []
    for path in work.glob("*_rtt.csv"):
        for line in path.read_text().splitlines()[1:]:
            parts = line.split(";")
            if len(parts) >= 2:
                times.append(float(parts[1]))
    return times


def _sipp(scenario: Path, *args: str) -> list[str]:
    return [
        *("sipp", "-sf", str(scenario), "-i", "127.0.0.1", "-nostdin"),
        *("-buff_size", "4194304", "-trace_stat", "-fd", "1", *args),
    ]


@dataclass(frozen=True)
class Step:
    """One step of calls: counts from both ends, setup percentiles, wall time."""

    calls: int
    ok: int
    failed: int
    retransmissions: int
    elapsed: float
    p50: float
    p99: float


def _fresh(work: Path) -> Path:
    work.mkdir(parents=True, exist_ok=True)
    for old in work.glob("*"):
        old.unlink()
    return work


def run_step(
    target: int,
    rate: int,
    seconds: float,
    hold: float,
    work: Path,
    callee_port: int | None = None,
) -> Step:
    """Place ``rate * seconds`` calls at ``rate``/s to 127.0.0.1:``target``, each held
    ``hold`` seconds; with ``callee_port``, a sipp callee answers there for the duration."""
    calls = max(1, int(rate * seconds))
    hold_ms = max(1, int(hold * 1000))
    caller_dir, callee_dir = _fresh(work / "caller"), _fresh(work / "callee")
    (caller_dir / "caller.xml").write_text(caller_xml(hold_ms))
    limit = int(seconds * 3 + hold + 30)
    callee = None
    if callee_port is not None:
        (callee_dir / "callee.xml").write_text(callee_xml())
        cmd = _sipp(callee_dir / "callee.xml", "-p", str(callee_port), "-mp", "0")
        cmd += ["-m", str(calls), "-timeout", str(limit)]
        callee = subprocess.Popen(
            cmd, cwd=callee_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(0.3)
    cmd = _sipp(caller_dir / "caller.xml", f"127.0.0.1:{target}", "-s", "bench")
    cmd += ["-p", str(free_udp_port()), "-mp", str(free_udp_port())]
    cmd += ["-m", str(calls), "-r", str(rate), "-l", str(max(int(rate * (hold + 4)), 100))]
    cmd += ["-timeout", str(limit), "-timeout_error", "-trace_rtt", "-rtt_freq", "20"]
    started = time.monotonic()
    try:
        subprocess.run(cmd, cwd=caller_dir, capture_output=True, check=False, timeout=limit + 30)
        elapsed = time.monotonic() - started
    finally:
        if callee is not None:
            _stop_callee(callee, hold)
    caller = read_stats(caller_dir)
    far = read_stats(callee_dir)
    times = setup_times(caller_dir)
    return Step(
        calls=calls,
        ok=caller.ok,
        failed=max(caller.failed, calls - caller.ok),
        retransmissions=caller.retransmissions + far.retransmissions,
        elapsed=elapsed,
        p50=_percentile(times, 0.5),
        p99=_percentile(times, 0.99),
    )


def _stop_callee(callee: subprocess.Popen[bytes], hold: float) -> None:
    """The callee ends by itself after its last call (its 2 s pause); one whose calls did not
    all arrive is stopped."""
    try:
        callee.wait(timeout=hold + 5)
    except subprocess.TimeoutExpired:
        stop(callee, timeout=5)
