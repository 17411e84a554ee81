"""Redis Sentinel failover: a master, a replica and a Sentinel on loopback; after a forced
failover the old master answers READONLY, the client re-asks the Sentinel and calls go on."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from ports import free_ports
from sessiond.core.types import Event
from sessiond.store import Keys, Store, new_sid
from sessiond.store.client import connect
from sessiond.store.streams import retrying
from sessiond.store.tableset import TableSet
from sessiond.table import Table
from sessiond.worker.applier import Applier

pytestmark = [
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("redis-sentinel") is None and shutil.which("redis-server") is None,
        reason="redis missing",
    ),
]


def _wait(predicate: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():  # type: ignore[operator]
                return
        except redis.RedisError:
            pass
        time.sleep(0.1)
    raise TimeoutError("condition not met")


def _replica_ready(s: redis.Redis) -> bool:
    """The Sentinel knows the replica, its link to the master is up, and it is promotable."""
    for entry in s.sentinel_slaves("mymaster"):  # parsed into dicts by redis-py
        if entry.get("master-link-status") == "ok" and entry.get("is_slave"):
            return not entry.get("is_sdown") and not entry.get("is_odown")
    return False


@pytest.fixture
def sentinel(tmp_path: Path) -> Iterator[tuple[str, int, int, int]]:
    master, replica, sentinel_port = free_ports(3)
    common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    procs = [
        subprocess.Popen(
            ["redis-server", "--port", str(master), *common],
            stdout=subprocess.DEVNULL,
            cwd=tmp_path,
        ),
        subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(replica),
                "--replicaof",
                "127.0.0.1",
                str(master),
                *common,
            ],
            stdout=subprocess.DEVNULL,
            cwd=tmp_path,
        ),
    ]
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {sentinel_port}\nbind 127.0.0.1\n"
        f"sentinel monitor mymaster 127.0.0.1 {master} 1\n"
        "sentinel down-after-milliseconds mymaster 1000\n"
        "sentinel failover-timeout mymaster 5000\n"
    )
    procs.append(
        subprocess.Popen(
            ["redis-server", str(conf), "--sentinel"], stdout=subprocess.DEVNULL, cwd=tmp_path
        )
    )
    try:
        s = redis.Redis(port=sentinel_port)
        _wait(lambda: _replica_ready(s), timeout=40)
        s.close()
        url = f"redis-sentinel://127.0.0.1:{sentinel_port}/mymaster/0"
        yield url, master, replica, sentinel_port
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=10)


async def test_calls_go_on_after_a_sentinel_failover(
    sentinel: tuple[str, int, int, int], default_table: Table
) -> None:
    url, master, replica, sentinel_port = sentinel
    client = connect(url)
    keys = Keys("sent")
    applier = Applier(Store(client, keys), TableSet([default_table], client, keys))
    stop = asyncio.Event()

    async def handle(sid: str, event: Event) -> str:
        result = await retrying(
            lambda: applier.handle(sid, event),
            stopping=stop,
            recreate_groups=lambda: asyncio.sleep(0),
            log=__import__("logging").getLogger("test"),
        )
        assert result is not None
        return result.state

    try:
        sid = new_sid("sent@h")
        fields = {
            "sid": sid,
            "role": "UAS",
            "call_id": "sent@h",
            "local_tag": "l",
            "remote_tag": "r",
            "media_id": f"{sid}.m",
            "edge": "e",
        }
        created = await applier.create(
            fields, keys.registry_keys(fields), Event("i", "Invite", {"sdp": "v=0", "txn": "t"})
        )
        assert created.status == "created"
        old = redis.Redis(port=master)
        assert old.execute_command("WAIT", 1, 2000) == 1  # the replica has the session
        s = redis.Redis(port=sentinel_port)
        s.execute_command("SENTINEL", "FAILOVER", "mymaster")
        _wait(
            lambda: (
                s.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster")[1]
                == str(replica).encode()
            )
        )
        _wait(lambda: old.info("replication")["role"] == "slave")  # the old master demoted
        # the client still holds connections to the old master: READONLY, reconnect, retry
        assert await handle(sid, Event("m", "MediaReady", {"sdp": "x", "media_node": "n"}))
        assert await handle(sid, Event("c", "Cancel")) == "Terminated"
        new = redis.Redis(port=replica)
        assert new.hget(keys.session(sid), "state") == b"Terminated"
        for c in (old, s, new):
            c.close()
    finally:
        await client.aclose()
