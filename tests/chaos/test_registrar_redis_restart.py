"""Registrations survive Redis restarts with the append-only file: a private redis-server
(``--appendonly yes``) on a free port, ``sessiond run --registrar example.com`` on it, sipp
phones registering with digest auth.

* ``appendfsync everysec`` and SIGTERM: Redis writes the AOF out on shutdown; alice's
  binding comes back with its remaining expiry.
* ``appendfsync always`` and kill -9: bob registers right before the kill (every write is
  on disk before its reply); his binding comes back too.

Then sessiond, reconnected, rings alice's phone and the call completes; and bob's short
binding still expires by itself afterwards (it leaves ``ctl registrations`` and its key
leaves Redis: no leak)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sipp_scenarios import callee, caller

from .deploy import Cluster, RedisServer, free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.e2e.harness import ENV, sipp  # noqa: E402
from tests.e2e.test_registered_calls import (  # noqa: E402
    PRIVATE,
    _register,
    call,
    phone,
    to_aor,
)
from tests.ports import free_udp_range  # noqa: E402

pytestmark = [pytest.mark.timeout(180)]
BOB_EXPIRES = 12  # seconds: short, so that the test sees it expire after the restart


def ctl(cluster: Cluster, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "sessiond", "ctl", *cluster.common(), *args],
        capture_output=True,
        text=True,
        env=ENV,
        check=False,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def register(cluster: Cluster, port: int, phone_port: int, user: str, expires: int) -> None:
    """sipp registers ``sip:<user>@PRIVATE:5999`` from 127.0.0.1:``phone_port`` (digest)."""
    contact = f"sip:{user}@{PRIVATE}:5999"

    def step(cseq: int, *, auth: bool) -> str:
        return _register(cseq, user, contact, "", auth=auth).replace(
            "Expires: 300", f"Expires: {expires}"
        )

    path = cluster.tmp / f"register-{user}.xml"
    path.write_text(
        '<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="register">\n'
        + step(1, auth=False)
        + '  <recv response="401" auth="true"/>\n'
        + step(2, auth=True)
        + '  <recv response="200"/>\n</scenario>\n'
    )
    result = sipp(
        cluster.tmp,
        f"127.0.0.1:{port}",
        *("-sf", str(path), "-p", str(phone_port), "-i", "127.0.0.1", "-m", "1"),
        *("-nr", "-timeout", "30", "-au", user, "-ap", "s3cret", "-mp", str(free_port())),
        timeout=40,
    )
    assert result.returncode == 0, result.stdout[-2000:]


def bindings(cluster: Cluster) -> dict[str, int]:
    """``ctl registrations``' bindings: AOR -> seconds it expires in."""
    rows = re.findall(
        r"^(sip:\S+@example\.com)\s+\S+\s+(\d+)s\s", ctl(cluster, "registrations"), re.M
    )
    return {aor: int(left) for aor, left in rows}


def edge_heard_since(cluster: Cluster, since: float) -> bool:
    """The edge wrote a heartbeat after ``since`` (unix s): it is back on Redis."""
    try:
        scores = cluster.redis().zrange(
            f"{cluster.namespace}:processes:edge", 0, -1, withscores=True
        )
    except Exception:  # noqa: BLE001 - the test's own client reconnects at the next try
        return False
    return any(score > since for _, score in scores)


def test_bindings_survive_redis_restarts_with_aof(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, "--appendfsync", "everysec")
    server.start()
    cluster = Cluster(server.url, tmp_path)
    try:
        for user in ("alice", "bob"):
            ctl(cluster, "user", "add", f"{user}@example.com", "s3cret")
        port = cluster.start_run(
            *("--registrar", "example.com", "--registrar-min-expires", "5"),
            *("--auth-secret", "x" * 16),
            rtp_ports=free_udp_range(100),
        )
        alice_port, bob_port = free_port(), free_port()
        register(cluster, port, alice_port, "alice", 300)
        before = bindings(cluster)
        assert list(before) == ["sip:alice@example.com"]

        # everysec, SIGTERM: Redis writes the AOF out as it stops
        server.stop()
        stopped = time.time()
        server.start()
        assert wait_for(lambda: edge_heard_since(cluster, stopped), 30, 0.2), cluster.log("run")
        after = bindings(cluster)
        assert list(after) == ["sip:alice@example.com"], after
        assert 0 < after["sip:alice@example.com"] <= before["sip:alice@example.com"]

        # always, kill -9: bob's REGISTER, answered just before the kill, is on disk
        cluster.redis().config_set("appendfsync", "always")
        register(cluster, port, bob_port, "bob", BOB_EXPIRES)
        server.kill9()
        killed = time.time()
        server.start()
        assert wait_for(lambda: edge_heard_since(cluster, killed), 30, 0.2), cluster.log("run")
        after = bindings(cluster)
        assert sorted(after) == ["sip:alice@example.com", "sip:bob@example.com"], after
        assert 0 < after["sip:bob@example.com"] <= BOB_EXPIRES

        # sessiond, reconnected, rings alice's phone where her REGISTER came from
        with phone(cluster, alice_port, callee("hangs_up"), "alice-phone") as alice:
            result = call(cluster, port, to_aor(caller("hung_up")), "caller")
            assert result.returncode == 0, (result.stdout[-2000:], cluster.log("run")[-3000:])
            out, _ = alice.communicate(timeout=30)
            assert alice.returncode == 0, out[-2000:]

        # bob's binding still expires by itself: gone from ctl and from Redis
        key = f"{cluster.namespace}:location:bob@example.com"
        assert wait_for(lambda: not cluster.redis().exists(key), BOB_EXPIRES + 10, 0.5)
        assert list(bindings(cluster)) == ["sip:alice@example.com"]
    finally:
        cluster.stop_all()
        if cluster._redis is not None:
            cluster._redis.close()
        server.stop()
