"""The systems ``sessiond bench peers`` compares, each started on loopback with its own
ports (and its own ``redis-server`` when it uses one), and the CPU time of exactly the
processes that belong to it.

- ``kamailio``: Kamailio, a record-routing stateful proxy (tm) with the dialog module,
  dialogs in shared memory; a sipp callee behind it.
- ``kamailio-redis``: the same, dialogs written to Redis through db_redis (realtime).
- ``sippy``: sippy's B2BUA, signaling only, one process; a sipp callee behind it.
- ``sessiond-forward``: ``sessiond run --redis``, 1 worker, a routes file forwarding every call
  to a sipp callee (the gateway table; media anchored on the media node).
- ``sessiond-bypass``: the same with ``media: bypass`` (SDP passed end to end, as sippy and
  Kamailio do; the media node stays up, idle, and is counted).
- ``sessiond-answer``: ``sessiond run --redis --answer auto``, 1 worker, no far end.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sessiond.cli.bench.cps import _wait_ready
from sessiond.cli.bench.dialog_sipp import port_is_free
from sessiond.cli.bench.spawn import (
    ONE_SOURCE,
    free_udp_port,
    popen_logged,
    redis_server,
    sessiond_env,
    stop,
)
from sessiond.store.client import LISTPACK_VALUE

SYSTEMS = (
    "kamailio",
    "kamailio-redis",
    "sippy",
    "sessiond-forward",
    "sessiond-bypass",
    "sessiond-answer",
)
DB_REDIS_SCHEMA = Path("/usr/share/kamailio/db_redis/kamailio")
SIPPY_VERSION = "2.5.0"


def kamailio_modules() -> Path:
    """Where Debian's packages put Kamailio's modules (``/usr/lib/<multiarch>/kamailio/
    modules``; ``/usr/lib/kamailio/modules`` for other builds)."""
    found = sorted(Path("/usr/lib").glob("*/kamailio/modules/tm.so"))
    return found[0].parent if found else Path("/usr/lib/kamailio/modules")


class PeerMissing(Exception):
    """A system cannot run here; the message says what to install."""


def kamailio_binary() -> str | None:
    return shutil.which("kamailio") or next(
        (p for p in ("/usr/sbin/kamailio",) if Path(p).exists()), None
    )


def sippy_binary() -> str | None:
    """sippy's B2BUA (the ``b2bua`` console script of ``pip install sippy``), beside this
    Python first."""
    beside = Path(sys.executable).parent / "b2bua"
    return str(beside) if beside.exists() else shutil.which("b2bua")


def why_missing(name: str) -> str | None:
    """None when ``name`` can run here, else the reason."""
    if name in ("kamailio", "kamailio-redis") and kamailio_binary() is None:
        return "kamailio is not installed (apt package kamailio)"
    if name == "kamailio-redis" and not (kamailio_modules() / "db_redis.so").exists():
        return "Kamailio's db_redis module is not installed (apt package kamailio-redis-modules)"
    if name == "sippy" and sippy_binary() is None:
        return f"sippy is not installed (pip install sippy=={SIPPY_VERSION})"
    if shutil.which("redis-server") is None and name != "kamailio" and name != "sippy":
        return "redis-server is not installed (apt package redis-server)"
    return None


def install(names: list[str]) -> None:
    """Install what the named systems need and this machine lacks: Kamailio (and its Redis
    modules) with apt, sippy with pip into this Python."""
    packages = []
    if any(n.startswith("kamailio") for n in names) and kamailio_binary() is None:
        packages.append("kamailio")
    if "kamailio-redis" in names and not (kamailio_modules() / "db_redis.so").exists():
        packages.append("kamailio-redis-modules")
    if packages:
        apt = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
        print("installing: " + " ".join(apt), flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if subprocess.run(apt, check=False, env=env).returncode:
            subprocess.run(["apt-get", "update"], check=False, env=env)
            subprocess.run(apt, check=True, env=env)
    if "sippy" in names and sippy_binary() is None:
        pip = [sys.executable, "-m", "pip", "install", f"sippy=={SIPPY_VERSION}"]
        print("installing: " + " ".join(pip), flush=True)
        subprocess.run(pip, check=True)


@dataclass
class Running:
    """A started system: where callers go, where its callee must answer, its processes."""

    name: str
    port: int
    callee_port: int | None
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    #: the private redis-server of the system, if it has one
    redis_url: str = ""
    #: pid -> role of every process to count (a system's tree, its one redis-server)
    roles: Callable[[], dict[int, str]] = dict

    def cpu(self) -> dict[str, float]:
        """CPU seconds by role, of the processes alive now (:func:`cpu_seconds`)."""
        total: dict[str, float] = {}
        for pid, role in self.roles().items():
            total[role] = total.get(role, 0.0) + cpu_seconds(pid)
        return total

    def stop(self) -> None:
        """Its processes, the last started first (sessiond before its redis-server)."""
        for proc in reversed(self.procs):
            stop(proc)


def cpu_seconds(pid: int) -> float:
    """CPU time of ``pid``: the run time of its threads in nanoseconds from
    ``/proc/PID/task/*/schedstat`` (a step of 75 calls through Kamailio's nine processes is
    well under the 10 ms ticks of ``/proc/PID/stat``, whose rounding would be +-1 ms per
    call), or user+system ticks where the kernel has no schedstat. A thread that exits
    between two readings takes its time with it (these systems keep their threads)."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
        return sum(int((t / "schedstat").read_text().split()[0]) for t in tasks) / 1e9
    except (OSError, ValueError, IndexError):
        pass
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        tree.setdefault(ppid, []).append(int(stat.parent.name))
    return tree


def process_tree(root: int) -> list[int]:
    """``root`` and its descendants, alive now."""
    tree, found, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(tree.get(pid, []))
    return found


def _sessiond_role(pid: int, root: int) -> str:
    if pid == root:
        return "edge"
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "other"
    return argv[3].decode() if len(argv) > 3 else "other"  # python -m sessiond ROLE


def _popen(cmd: list[str], work: Path, name: str, **kw: object) -> subprocess.Popen[bytes]:
    return popen_logged(cmd, work / f"{name}.log", cwd=work, **kw)


def _redis(work: Path, *config: str) -> tuple[subprocess.Popen[bytes], int]:
    """A private redis-server (no persistence, ``config`` added) on a free port, ready."""
    try:
        return redis_server(work, "--appendonly", "no", "--protected-mode", "no", *config)
    except TimeoutError as exc:
        raise PeerMissing(f"the private {exc}") from None


_PROBE = (
    "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bK-{n}\r\n"
    "From: <sip:bench@127.0.0.1>;tag=b\r\nTo: <sip:127.0.0.1>\r\nCall-ID: bench-probe-{n}\r\n"
    "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
)


def _wait_options(port: int, name: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Until ``port`` answers an OPTIONS with any response (sippy says 501)."""
    deadline = time.monotonic() + 20
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(0.3)
        n = 0
        while time.monotonic() < deadline and proc.poll() is None:
            n += 1
            s.sendto(_PROBE.format(p=s.getsockname()[1], n=n).encode(), ("127.0.0.1", port))
            with contextlib.suppress(OSError):
                if s.recv(4096).startswith(b"SIP/2.0 "):
                    return
    proc.kill()
    tail = log.read_text(errors="replace").strip().splitlines()[-3:] if log.exists() else []
    raise PeerMissing(f"{name} did not answer OPTIONS: {' | '.join(tail)}")


KAMAILIO_CFG = """#!KAMAILIO
debug=0
log_stderror=yes
children={children}
disable_tcp=yes
auto_aliases=no
listen=udp:127.0.0.1:{port}
mpath="{modules}/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "siputils.so"
loadmodule "textops.so"
loadmodule "dialog.so"
{redis}
request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (is_method("OPTIONS") && !has_totag()) {{ sl_send_reply("200", "OK"); exit; }}
    if (has_totag()) {{
        if (loose_route()) {{ t_relay(); exit; }}
        if (is_method("ACK") && t_check_trans()) {{ t_relay(); }}
        exit;
    }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
    if (is_method("INVITE")) {{ dlg_manage(); record_route(); }}
    $du = "sip:127.0.0.1:{callee}";
    if (!t_relay()) {{ sl_reply_error(); }}
    exit;
}}
"""

KAMAILIO_REDIS = """loadmodule "db_redis.so"
modparam("db_redis", "schema_path", "{schema}")
modparam("db_redis", "keys", "dialog=entry:hash_entry,hash_id")
modparam("db_redis", "keys", "dialog_vars=entry:hash_entry,hash_id,dialog_key")
modparam("db_redis", "keys", "version=entry:table_name")
modparam("dialog", "db_url", "redis://127.0.0.1:{redis_port}/0")
modparam("dialog", "db_mode", 1)
"""


def start_kamailio(work: Path, *, redis: bool, children: int = 4) -> Running:
    """Kamailio as a record-routing stateful proxy with dialogs (``dlg_manage``), in shared
    memory or, with ``redis``, written to a private redis-server at once (db_mode 1)."""
    binary = kamailio_binary()
    if binary is None:
        raise PeerMissing("kamailio is not installed")
    name = "kamailio-redis" if redis else "kamailio"
    running = Running(name, free_udp_port(), free_udp_port())
    extra = ""
    if redis:
        server, redis_port = _redis(work)
        running.procs.append(server)
        extra = KAMAILIO_REDIS.format(schema=DB_REDIS_SCHEMA, redis_port=redis_port)
    cfg = KAMAILIO_CFG.format(
        children=children,
        port=running.port,
        modules=kamailio_modules(),
        redis=extra,
        callee=running.callee_port,
    )
    return run_kamailio(work, running, cfg)


def run_kamailio(work: Path, running: Running, cfg: str) -> Running:
    """Kamailio with the configuration ``cfg`` (it listens on ``running.port`` and answers
    OPTIONS there), written to ``<work>/<name>.cfg``, its log ``<work>/<name>.log``;
    returned once it answers (else stopped, :class:`PeerMissing`)."""
    binary = kamailio_binary()
    if binary is None:
        raise PeerMissing("kamailio is not installed")
    name = running.name
    path = work / f"{name}.cfg"
    path.write_text(cfg)
    cmd = [binary, "-f", str(path), "-DD", "-E", "-m", "256", "-M", "8", "-w", str(work)]
    cmd += ["-P", str(work / f"{name}.pid")]
    servers = {p.pid: "redis" for p in running.procs}
    proc = _popen(cmd, work, name)
    running.procs.append(proc)
    running.roles = lambda: {
        **{pid: "kamailio" for pid in process_tree(proc.pid)},
        **servers,
    }
    try:
        _wait_options(running.port, name, proc, work / f"{name}.log")
    except PeerMissing:
        running.stop()
        raise
    return running


def start_sippy(work: Path) -> Running:
    """sippy's B2BUA with a static route to the callee, no RADIUS, no accounting."""
    binary = sippy_binary()
    if binary is None:
        raise PeerMissing("sippy is not installed")
    port = free_udp_port()
    if not port_is_free(port):  # sippy binds with SO_REUSEPORT and would share it
        raise PeerMissing(f"UDP port {port} is taken")
    running = Running("sippy", port, free_udp_port())
    cmd = [binary, "-f", "-l", "127.0.0.1", "-p", str(port)]
    cmd += ["-s", f"127.0.0.1:{running.callee_port}", "-a", "127.0.0.1", "-u", "-A", "0"]
    cmd += ["-P", str(work / "sippy.pid"), "-L", str(work / "sippy.out")]
    cmd += ["-c", str(work / "sippy.sock")]
    proc = _popen(cmd, work, "sippy", env={**os.environ, "SIPLOG_LVL": "ERR"})
    running.procs.append(proc)
    running.roles = lambda: dict.fromkeys(process_tree(proc.pid), "sippy")
    try:
        _wait_options(port, "sippy", proc, work / "sippy.log")
    except PeerMissing:
        running.stop()
        raise
    return running


def start_sessiond(
    work: Path,
    *,
    forward: bool,
    rtp_ports: str,
    namespace: str = "bench",
    bypass: bool = False,
    extra: Sequence[str] = (),
) -> Running:
    """``sessiond run --redis`` on a private redis-server configured as docs/deploy.md says
    (``hash-max-listpack-value``), one worker; ``forward``: every call forwarded to the
    callee by a routes file (``bypass``: with ``media: bypass``), else ``--answer auto``;
    ``extra``: more ``run`` options."""
    name = "sessiond-bypass" if bypass else "sessiond-forward" if forward else "sessiond-answer"
    server, redis_port = _redis(work, "--hash-max-listpack-value", str(LISTPACK_VALUE))
    running = Running(name, free_udp_port(), free_udp_port() if forward else None, [server])
    url = running.redis_url = f"redis://127.0.0.1:{redis_port}/0"
    cmd = [sys.executable, "-m", "sessiond", "run", "--redis", url, "--namespace", namespace]
    cmd += ["--workers", "1", "--listen", f"udp:127.0.0.1:{running.port}"]
    cmd += ["--rtp-ports", rtp_ports, "--rtp-timeout", "0", *ONE_SOURCE]
    if forward:
        routes = work / f"{name}-routes.yaml"
        target = f"sip:callee@127.0.0.1:{running.callee_port}"
        media = "bypass" if bypass else "anchor"
        routes.write_text(f'media: {media}\nrules: []\ndefault: {{forward: "{target}"}}\n')
        cmd += ["--routes", str(routes)]
    else:
        cmd += ["--answer", "auto"]
    cmd += extra
    proc = _popen(cmd, work, name, env=sessiond_env())
    running.procs.append(proc)
    running.roles = lambda: {
        **{pid: _sessiond_role(pid, proc.pid) for pid in process_tree(proc.pid)},
        server.pid: "redis",
    }
    try:
        _wait_options(running.port, name, proc, work / f"{name}.log")
        _wait_ready(url, namespace, 1)
    except (PeerMissing, TimeoutError) as exc:
        running.stop()
        raise PeerMissing(f"{name} did not come up: {exc}") from None
    return running


def start(name: str, work: Path, *, idle_rtp: str = "send") -> Running:
    """Start system ``name``; ``idle_rtp``: the sessiond systems' ``--idle-rtp``."""
    if name in ("kamailio", "kamailio-redis"):
        return start_kamailio(work, redis=name == "kamailio-redis")
    if name == "sippy":
        return start_sippy(work)
    extra = ["--idle-rtp", idle_rtp]
    if name == "sessiond-forward":
        return start_sessiond(work, forward=True, rtp_ports="30000-34999", extra=extra)
    if name == "sessiond-bypass":
        return start_sessiond(work, forward=True, rtp_ports="40000-44999", bypass=True, extra=extra)
    if name == "sessiond-answer":
        return start_sessiond(work, forward=False, rtp_ports="35000-39999", extra=extra)
    raise ValueError(name)
