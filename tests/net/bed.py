"""A multi-host test bed out of network namespaces: real addresses, real NATs, no loopback.

::

     home 192.168.1.2 ── lan ── router (masquerade) 198.51.100.2 ─┐
                                                                   │ wan: a bridge in "inet"
     outside 198.51.100.10 ────────────────────────────────────────┤ (the internet)
                                                                   │
     pub 10.0.2.2 ── cloud (1:1 NAT: 198.51.100.7 <-> 10.0.2.2) ───┘

* ``pub`` runs sessiond bound to 0.0.0.0; its only address is the private 10.0.2.2, and
  the ``cloud`` namespace maps the public 198.51.100.7 one to one onto it (nftables DNAT in,
  SNAT out, ports kept), as a cloud VM's floating address works. Redis runs inside ``pub``
  on 127.0.0.1 (the deployment's own Redis; the test reaches it with ``ip netns exec``), so
  nothing crosses into the machine's own namespace.
* ``home`` is a phone's LAN behind ``router``, which masquerades (source NAT to its WAN
  address, ports kept where free) and drops what arrives from the WAN unless conntrack
  knows it as the answer to something sent out: a home router.
* ``outside`` is a host with a public address and no NAT (sipp's).

Names are unique per bed (``sdn<pid>-<hex>-<role>``); :meth:`Bed.close` kills every process
left in them and deletes them, and runs even when building the bed failed half-way; a bed
whose test process was killed outright is removed by the next one (:func:`sweep_stale`).
:func:`why_not` says why a bed cannot be built here (not root, no ``ip`` / ``nft``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.e2e.netns_run import REDIS_SERVER, stop

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "service")}

HOME = "192.168.1.2"
HOME_GW = "192.168.1.1"
ROUTER_WAN = "198.51.100.2"
OUTSIDE = "198.51.100.10"
PUBLIC = "198.51.100.7"  # the public host's address on the internet (the 1:1 NAT's)
PRIVATE = "10.0.2.2"  # the public host's own interface address
PRIVATE_GW = "10.0.2.1"
ROLES = ("inet", "home", "router", "outside", "cloud", "pub")
PREFIX = "sdn"  # the namespaces of these beds: sdn<pid of the test process>-<hex>-<role>

ROUTER_NFT = """
table ip nat {
  chain postrouting { type nat hook postrouting priority 100; oifname "wan" masquerade; }
}
table ip filter {
  chain forward {
    type filter hook forward priority 0; policy drop;
    ct state established,related accept
    iifname "lan" oifname "wan" accept
  }
}
"""
CLOUD_NFT = f"""
table ip nat {{
  chain prerouting {{
    type nat hook prerouting priority -100;
    iifname "wan" ip daddr {PUBLIC} dnat to {PRIVATE}
  }}
  chain postrouting {{
    type nat hook postrouting priority 100;
    oifname "wan" ip saddr {PRIVATE} snat to {PUBLIC}
  }}
}}
"""


def why_not() -> str | None:
    """None when a bed can be built here, else why not (the test skips with it)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"{tool} missing (apt-get install -y iproute2 nftables)"
    name = f"{PREFIX}{os.getpid()}-{secrets.token_hex(2)}-probe"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    try:
        for what, cmd in (
            ("nftables", ["nft", "add", "table", "ip", "probe"]),
            ("routing (sysctl)", ["sysctl", "-qw", "net.ipv4.ip_forward=1"]),
        ):
            probe = subprocess.run(
                ["ip", "netns", "exec", name, *cmd], capture_output=True, text=True, timeout=10
            )
            if probe.returncode != 0:
                return f"{what} unusable in a namespace: {probe.stderr.strip()}"
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


class Bed:
    """The namespaces above, built on entry and removed on exit (see the module)."""

    def __init__(self, work: Path) -> None:
        self.work = work
        sweep_stale()
        self.prefix = f"{PREFIX}{os.getpid()}-{secrets.token_hex(2)}"
        self.ns = {role: f"{self.prefix}-{role}" for role in ROLES}
        self.procs: list[subprocess.Popen[Any]] = []
        self._logs: list[Any] = []

    # -- building -------------------------------------------------------------------------
    def __enter__(self) -> Bed:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _build(self) -> None:
        for role in ROLES:
            _ip("netns", "add", self.ns[role])
            self.sh(role, "ip link set lo up")
        self.sh("inet", "ip link add br0 type bridge && ip link set br0 up")
        # the internet: router, outside and cloud on one bridge
        for role, address in (("router", ROUTER_WAN), ("outside", OUTSIDE), ("cloud", PUBLIC)):
            port = f"to-{role}"
            _ip("-n", self.ns["inet"], "link", "add", port, "type", "veth", "peer", "name",
                "wan", "netns", self.ns[role])  # fmt: skip
            self.sh("inet", f"ip link set {port} master br0 && ip link set {port} up")
            self.sh(role, f"ip addr add {address}/24 dev wan && ip link set wan up")
        # the home LAN behind the router, the public host behind the cloud's 1:1 NAT
        for inner, gateway, host, host_address in (
            ("router", HOME_GW, "home", HOME),
            ("cloud", PRIVATE_GW, "pub", PRIVATE),
        ):
            _ip("-n", self.ns[inner], "link", "add", "lan", "type", "veth", "peer", "name",
                "eth0", "netns", self.ns[host])  # fmt: skip
            self.sh(inner, f"ip addr add {gateway}/24 dev lan && ip link set lan up")
            self.sh(inner, "sysctl -qw net.ipv4.ip_forward=1")
            self.sh(host, f"ip addr add {host_address}/24 dev eth0 && ip link set eth0 up")
            self.sh(host, f"ip route add default via {gateway}")
        self.nft("router", ROUTER_NFT)
        self.nft("cloud", CLOUD_NFT)

    def nft(self, role: str, rules: str) -> None:
        path = self.work / f"{role}.nft"
        path.write_text(rules)
        self.sh(role, f"nft -f {path}")

    # -- running things in a host ---------------------------------------------------------
    def argv(self, role: str, cmd: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns[role], *cmd]

    def sh(self, role: str, script: str, timeout: float = 30) -> str:
        """Run a shell line in ``role``; its stdout (CalledProcessError with stderr)."""
        done = subprocess.run(
            self.argv(role, ["sh", "-c", script]),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=ENV,
        )
        if done.returncode != 0:
            raise subprocess.CalledProcessError(
                done.returncode, script, done.stdout, f"[{role}] {done.stderr.strip()}"
            )
        return done.stdout

    def run(
        self, role: str, cmd: Sequence[str], timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` in ``role`` to its end (bounded), output captured."""
        return subprocess.run(
            self.argv(role, cmd), capture_output=True, text=True, timeout=timeout, env=ENV,
            cwd=self.work,
        )  # fmt: skip

    def start(
        self, role: str, name: str, cmd: Sequence[str], *, stdin: bool = False
    ) -> subprocess.Popen[Any]:
        """Start ``cmd`` in ``role`` in the background; output in WORK/<name>.log. With
        ``stdin`` its standard input is a pipe (``proc.stdin``) for commands to it."""
        log = open(self.work / f"{name}.log", "wb")  # noqa: SIM115 - closed in close()
        self._logs.append(log)
        proc = subprocess.Popen(
            self.argv(role, cmd),
            stdin=subprocess.PIPE if stdin else None,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=ENV,
            cwd=self.work,
        )
        self.procs.append(proc)
        return proc

    def log(self, name: str, tail: int = 3000) -> str:
        path = self.work / f"{name}.log"
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""

    def python(self, role: str, code: str, timeout: float = 30) -> str:
        """Run Python ``code`` in ``role`` with the test helpers importable; its stdout."""
        done = self.run(role, [sys.executable, "-c", code], timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"[{role}] {done.stderr.strip()[-2000:]}")
        return done.stdout

    # -- the deployment on the public host ------------------------------------------------
    def start_redis(self) -> str:
        """redis-server inside ``pub`` on 127.0.0.1; its URL (as seen from ``pub``)."""
        self.start("pub", "redis", REDIS_SERVER)
        wait = "import time,socket\nfor _ in range(100):\n try:\n  socket.create_connection(('127.0.0.1',6379),0.2).close();break\n except OSError: time.sleep(0.1)\nelse: raise SystemExit('redis did not start')"  # noqa: E501
        self.python("pub", wait)
        return "redis://127.0.0.1:6379/0"

    def start_sessiond(self, args: Sequence[str], port: int = 5060) -> subprocess.Popen[Any]:
        """``sessiond run ARGS`` in ``pub``; returns once it answers OPTIONS on ``port``."""
        proc = self.start("pub", "sessiond", [sys.executable, "-m", "sessiond", "run", *args])
        probe = (
            f"import sys; sys.path.insert(0, {str(ROOT / 'tests')!r})\n"
            f"from sessiond_run import wait_listening; wait_listening({port}, 20)"
        )
        try:
            self.python("pub", probe, timeout=40)
        except RuntimeError as exc:
            raise RuntimeError(f"sessiond did not start: {exc}\n{self.log('sessiond')}") from exc
        return proc

    def ctl(self, redis_url: str, *args: str, namespace: str = "sessiond") -> str:
        cmd = [sys.executable, "-m", "sessiond", "ctl", "--redis", redis_url]
        done = self.run("pub", [*cmd, "--namespace", namespace, *args], timeout=30)
        if done.returncode != 0:
            raise RuntimeError(f"sessiond ctl {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def session(self, redis_url: str, sid: str) -> dict[str, Any]:
        """The session hash ``sid`` ({} when there is none), read inside ``pub``."""
        found: dict[str, Any] = json.loads(self.python("pub", session_code(redis_url, sid)))
        return found

    def wait_session(
        self, redis_url: str, sid: str, field: str, value: str, timeout: float = 20
    ) -> dict[str, Any]:
        """Poll the session until ``field`` is ``value``; the session (AssertionError with
        the last one seen after ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        seen: dict[str, Any] = {}
        while time.monotonic() < deadline:
            seen = self.session(redis_url, sid)
            if str(seen.get(field, "")) == value:
                return seen
            time.sleep(0.3)
        raise AssertionError(f"{sid}: {field} never became {value!r}: {seen}")

    # -- removing -------------------------------------------------------------------------
    def close(self) -> None:
        """Stop what was started (SIGTERM, then SIGKILL), kill anything else left in the
        namespaces, delete them."""
        for proc in reversed(self.procs):  # one by one: Redis outlives sessiond's drain
            stop(proc, timeout=10)
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
        for role in ROLES:  # and children of ours that outlived their parent
            _remove(self.ns[role])
        for log in self._logs:
            log.close()
        self._logs.clear()


def kill_tree(proc: subprocess.Popen[Any]) -> None:
    """SIGKILL a process :meth:`Bed.start` started and its children: ``ip netns exec``
    execs the command, but a ``timeout`` bounding it forks the program it runs."""
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    for pid in children.read_text().split() if children.exists() else []:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
    proc.kill()
    proc.wait(timeout=10)


def _remove(name: str) -> None:
    """Kill what runs in namespace ``name`` (ours: a bed's), then delete it."""
    pids = subprocess.run(
        ["ip", "netns", "pids", name], capture_output=True, text=True
    ).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    subprocess.run(["ip", "netns", "del", name], capture_output=True)


def sweep_stale() -> None:
    """Remove the namespaces of beds whose test process is gone (killed before its
    cleanup ran)."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for line in listed.splitlines():
        name = line.split(" ")[0]
        found = re.fullmatch(rf"{PREFIX}(\d+)-[0-9a-f]{{4}}-[a-z]+", name)
        if found is None or int(found.group(1)) == os.getpid():
            continue
        try:
            os.kill(int(found.group(1)), 0)
        except ProcessLookupError:
            _remove(name)
        except PermissionError:
            pass


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def session_code(redis_url: str, sid: str, namespace: str = "sessiond") -> str:
    """Python that prints the session hash ``sid`` as JSON ({} when there is none)."""
    return (
        "import asyncio, json\n"
        "from sessiond.store import Keys, Store\n"
        "from sessiond.store.client import connect\n"
        "async def main():\n"
        f"    redis = connect({redis_url!r})\n"
        f"    found = await Store(redis, Keys({namespace!r})).get({sid!r})\n"
        "    print(json.dumps(found or {}, default=str))\n"
        "    await redis.aclose()\n"
        "asyncio.run(main())\n"
    )
