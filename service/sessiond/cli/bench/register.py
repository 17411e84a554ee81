"""``sessiond bench register``: REGISTERs per second with digest authentication through one
``sessiond edge --registrar`` and a Redis server of the bench's own, stepped, next to the
ceiling of the load generator itself.

Setup: a private ``redis-server`` on a free loopback port (``--appendonly yes
--appendfsync everysec``, the persistence docs/deploy.md asks of a registrar), and one
``sessiond edge --registrar bench.example`` on it (no worker: a REGISTER never reaches one).
Accounts are written through the users store (as ``ctl user load`` does): one per
REGISTER of the whole run, so every REGISTER of every step creates a binding of a user of
its own (sipp injection file, ``SEQUENTIAL``, ``[field0]`` the user, also the digest
username: ``-au [field0]``).

Each step, sipp places ``rate * seconds`` registrations at ``rate``/s: REGISTER, 401,
REGISTER with ``[authentication]``, 200 (the response time is first REGISTER sent -> 200
received). A step is clean when none failed and the achieved rate is within 10% of the
target; the steps stop at the first unclean one. Reported per step: registrations/s
achieved, failed, CPU ms per registration of the edge process and of the bench's Redis
server (from /proc, by pid: other Redis servers on the machine are not counted), p50 and
p99 response time.

The ceiling: the same sipp scenario, same steps (and two beyond: twice and four times the
highest), against a sipp UAS that answers 401 then 200 itself (no sessiond): what sipp can
drive on this machine, with its own CPU per registration. Every step is bounded in calls and
time (sipp ``-m``, ``-timeout``, and a subprocess timeout).
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis

from sessiond.cli.bench.command import REGISTER_RATES
from sessiond.cli.bench.cps import _wait_sip
from sessiond.cli.bench.dialog_sipp import _fresh, _percentile, _sipp, read_stats, setup_times
from sessiond.cli.bench.spawn import (
    ATTEMPTS,
    ONE_SOURCE,
    listen_port,
    missing_tool,
    redis_server,
    sessiond,
    stop,
)
from sessiond.store.keys import Keys
from sessiond.store.users import Account, Users

DEFAULT_RATES = REGISTER_RATES
DOMAIN = "bench.example"
PASSWORD = "bench-s3cret"

_REGISTER = """  <send retrans="500"{rtd}><![CDATA[
REGISTER sip:{domain} SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:[field0]@{domain}>;tag=[pid]r[call_number]
To: <sip:[field0]@{domain}>
Call-ID: [call_id]
CSeq: {cseq} REGISTER
Contact: <sip:[field0]@[local_ip]:[local_port]>
Expires: 3600
Max-Forwards: 70
{auth}Content-Length: 0

]]></send>
"""


def uac_xml() -> str:
    """The phone side: REGISTER, 401, REGISTER with digest, 200."""
    first = _REGISTER.format(rtd=' start_rtd="1"', domain=DOMAIN, cseq=1, auth="")
    auth = "[authentication]\n"  # username -au [field0], password -ap (run_step)
    second = _REGISTER.format(rtd="", domain=DOMAIN, cseq=2, auth=auth)
    return (
        '<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="register">\n'
        + first
        + '  <recv response="401" auth="true"/>\n'
        + second
        + '  <recv response="200" rtd="1"/>\n</scenario>\n'
    )


def _answer(code: str, extra: str = "") -> str:
    return f"""  <send><![CDATA[
SIP/2.0 {code}
[last_Via:]
[last_From:]
[last_To:];tag=[pid]u[call_number]
[last_Call-ID:]
[last_CSeq:]
{extra}Content-Length: 0

]]></send>
"""


def uas_xml() -> str:
    """The ceiling's registrar: 401 with a fixed challenge, then 200 (nothing checked)."""
    challenge = f'WWW-Authenticate: Digest realm="{DOMAIN}", nonce="bench", algorithm=MD5\n'
    return (
        '<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="registrar">\n'
        '  <recv request="REGISTER"/>\n'
        + _answer("401 Unauthorized", challenge)
        + '  <recv request="REGISTER"/>\n'
        + _answer("200 OK", "Contact: [$contact]\n".replace("[$contact]", "<sip:x@[local_ip]>"))
        + "</scenario>\n"
    )


def users_file(path: Path, first: int, count: int) -> None:
    """sipp's injection file: users ``u<first>`` .. ``u<first+count-1>``, in order."""
    lines = ["SEQUENTIAL", *(f"u{n};" for n in range(first, first + count))]
    path.write_text("\n".join(lines) + "\n")


def cpu_of(pid: int) -> float:
    """User+system CPU seconds of process ``pid`` alone (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class Step:
    rate: int
    calls: int
    ok: int
    failed: int
    elapsed: float
    p50: float
    p99: float
    cpu_ms: dict[str, float]  # process role -> CPU ms per successful registration

    @property
    def achieved(self) -> float:
        return self.ok / self.elapsed if self.elapsed else 0.0

    @property
    def clean(self) -> bool:
        return self.failed == 0 and self.ok == self.calls and self.achieved >= 0.9 * self.rate


def run_step(
    port: int, rate: int, seconds: float, first: int, work: Path, pids: dict[str, int]
) -> Step:
    """``rate * seconds`` registrations at ``rate``/s to 127.0.0.1:``port`` for users from
    ``u<first>``; CPU of ``pids`` (role -> pid) and of sipp itself (``sipp``)."""
    calls = max(1, int(rate * seconds))
    work = _fresh(work)
    (work / "register.xml").write_text(uac_xml())
    users_file(work / "users.csv", first, calls)
    limit = int(seconds * 3 + 30)
    cmd = _sipp(work / "register.xml", f"127.0.0.1:{port}", "-inf", str(work / "users.csv"))
    # sipp 3.6 does not parse a keyword nested in [authentication username=...]; -au is
    # parsed per call like a message, so "[field0]" there is each call's own user
    cmd += ["-au", "[field0]", "-ap", PASSWORD]
    cmd += ["-p", str(listen_port()), "-m", str(calls), "-r", str(rate), "-rp", "1000"]
    cmd += ["-l", str(max(rate * 4, 100)), "-timeout", str(limit), "-timeout_error"]
    cmd += ["-recv_timeout", "10000", "-trace_rtt", "-rtt_freq", "20"]
    before = {role: cpu_of(pid) for role, pid in pids.items()}
    sipp_before = children_cpu()
    started = time.monotonic()
    subprocess.run(cmd, cwd=work, capture_output=True, check=False, timeout=limit + 30)
    elapsed = time.monotonic() - started
    used = {role: cpu_of(pid) - before[role] for role, pid in pids.items()}
    used["sipp"] = children_cpu() - sipp_before
    stats = read_stats(work)
    times = setup_times(work)
    ok = stats.ok
    return Step(
        rate=rate,
        calls=calls,
        ok=ok,
        failed=max(stats.failed, calls - ok),
        elapsed=elapsed,
        p50=_percentile(times, 0.5),
        p99=_percentile(times, 0.99),
        cpu_ms={role: 1000 * v / max(1, ok) for role, v in used.items()},
    )


@contextmanager
def private_redis(work: Path) -> Iterator[tuple[str, int]]:
    """A redis-server of the bench's own on a free loopback port: (URL, pid)."""
    config = ["--appendonly", "yes", "--appendfsync", "everysec"]
    proc, port = redis_server(work, *config, "--hash-max-listpack-value", "1024")
    try:
        yield f"redis://127.0.0.1:{port}/0", proc.pid
    finally:
        stop(proc, timeout=15)


async def _accounts(redis_url: str, namespace: str, count: int) -> None:
    """``count`` accounts ``u0``.. of DOMAIN through the users store, in chunks."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        users = Users(client, Keys(namespace))
        for start in range(0, count, 2000):
            end = min(count, start + 2000)
            await users.put([Account(f"u{n}", DOMAIN, PASSWORD) for n in range(start, end)])
    finally:
        await client.aclose()


def _edge_on(redis_url: str, namespace: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    args = ["edge", "--redis", redis_url, "--namespace", namespace, "--name", "bench-edge"]
    args += ["--listen", f"udp:127.0.0.1:{port}", "--registrar", DOMAIN]
    return sessiond([*args, *ONE_SOURCE], log)


def _edge(redis_url: str, namespace: str, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """The edge, answering OPTIONS on a free port: (process, port)."""
    for _ in range(ATTEMPTS):
        port = listen_port()
        edge = _edge_on(redis_url, namespace, port, log)
        deadline = time.monotonic() + 30
        while edge.poll() is None and time.monotonic() < deadline:
            try:
                _wait_sip(port, 1.0)
                return edge, port
            except TimeoutError:
                continue
        stop(edge, timeout=15)
    last = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
    raise TimeoutError(f"the edge did not answer ({ATTEMPTS} tries): {' '.join(last)}")


def _header(roles: tuple[str, ...]) -> str:
    cpu = " ".join(f"{r:>7}" for r in roles)
    return (
        f"{'target':>7} {'achieved':>9} {'failed':>7} {'p50':>7} {'p99':>7}   "
        f"CPU ms/REGISTER: {cpu}"
    )


def _row(step: Step, roles: tuple[str, ...]) -> str:
    cpu = " ".join(f"{step.cpu_ms.get(r, 0.0):7.3f}" for r in roles)
    return (
        f"{step.rate:7d} {step.achieved:9.1f} {step.failed:7d} {step.p50:6.1f}ms "
        f"{step.p99:6.1f}ms                    {cpu}"
    )


def _steps(
    port: int, rates: list[int], seconds: float, work: Path, pids: dict[str, int], first: int = 0
) -> tuple[list[Step], int]:
    """Run ``rates`` in order until one is not clean; (steps, highest clean rate)."""
    roles = (*pids, "sipp")
    print(_header(roles))
    steps: list[Step] = []
    best = 0
    for rate in rates:
        step = run_step(port, rate, seconds, first, work, pids)
        first += step.calls
        steps.append(step)
        print(_row(step, roles), flush=True)
        if not step.clean:
            break
        best = rate
        time.sleep(1.0)
    return steps, best


def ceiling(rates: list[int], seconds: float, work: Path) -> int:
    """The same scenario against a sipp UAS answering 401 then 200: sipp's own limit."""
    port = listen_port()
    uas_dir = _fresh(work / "uas")
    (uas_dir / "uas.xml").write_text(uas_xml())
    total = sum(max(1, int(r * seconds)) for r in rates)
    limit = int(seconds * 3 * len(rates) + 60 + len(rates) * 2)
    cmd = _sipp(uas_dir / "uas.xml", "-p", str(port), "-m", str(total), "-timeout", str(limit))
    uas = subprocess.Popen(cmd, cwd=uas_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        _, best = _steps(port, rates, seconds, work / "uac", {"uas": uas.pid})
    finally:
        stop(uas, timeout=5)
    return best


def bench_register(rates: list[int], seconds: float) -> int:
    if missing_tool("register", {"sipp": "sip-tester", "redis-server": "redis-server"}):
        return 2
    work = Path(tempfile.mkdtemp(prefix="sessiond-bench-register-"))
    namespace = f"benchreg{uuid.uuid4().hex[:6]}"
    accounts = sum(max(1, int(r * seconds)) for r in rates)
    try:
        with private_redis(work) as (redis_url, redis_pid):
            asyncio.run(_accounts(redis_url, namespace, accounts))
            edge, port = _edge(redis_url, namespace, work / "edge.log")
            try:
                print(
                    f"\nsessiond edge --registrar {DOMAIN} (pid {edge.pid}) on a redis-server "
                    f"of its own (pid {redis_pid}, appendonly yes, appendfsync everysec), "
                    f"{accounts} accounts; {seconds:g} s per step; REGISTER, 401, REGISTER "
                    "with digest (MD5), 200; response time: first REGISTER -> 200"
                )
                pids = {"edge": edge.pid, "redis": redis_pid}
                _, best = _steps(port, rates, seconds, work / "uac", pids)
            finally:
                stop(edge, timeout=15)
        print(f"highest clean step through sessiond: {best} REGISTERs/s")
        more = [*rates, max(rates) * 2, max(rates) * 4]
        print("\nceiling: the same sipp scenario against a sipp UAS (401, then 200), no sessiond")
        top = ceiling(more, seconds, work / "ceiling")
        reached = "" if top < more[-1] else " (its highest step: the limit is higher)"
        print(f"highest clean step of sipp alone: {top} REGISTERs/s{reached}")
    except (OSError, TimeoutError, subprocess.SubprocessError) as exc:
        print(f"sessiond bench register: {exc} (logs in {work})", file=sys.stderr)
        return 1
    shutil.rmtree(work, ignore_errors=True)
    return 0
