"""Redis over TLS (rediss://): the store works end to end with certificate verification,
and a wrong CA or a plaintext client is refused (no silent downgrade)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from ports import free_port
from sessiond.core.types import Event
from sessiond.store import Keys, Store, new_sid
from sessiond.store.client import connect
from sessiond.store.tableset import TableSet
from sessiond.table import Table
from sessiond.worker.applier import Applier

pytestmark = [
    pytest.mark.redis,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl missing"),
]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_ca(directory: Path, name: str) -> None:
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.crt",
        "-days",
        "1",
        "-subj",
        f"/CN={name}",
        cwd=directory,
    )


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    _make_ca(tmp_path, "ca")
    _make_ca(tmp_path, "other-ca")
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
        cwd=tmp_path,
    )
    (tmp_path / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
        cwd=tmp_path,
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--tls-cert-file",
            "server.crt",
            "--tls-key-file",
            "server.key",
            "--tls-ca-cert-file",
            "ca.crt",
            "--tls-auth-clients",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    yield port, tmp_path
    proc.terminate()
    proc.wait(timeout=10)


async def test_store_over_tls(tls_redis: tuple[int, Path], default_table: Table) -> None:
    port, certs = tls_redis
    url = f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=required&ssl_ca_certs={certs / 'ca.crt'}"
    redis = connect(url)
    keys = Keys("tls")
    try:
        applier = Applier(Store(redis, keys), TableSet([default_table], redis, keys))
        sid = new_sid("tls@h")
        fields = {
            "sid": sid,
            "role": "UAS",
            "call_id": "tls@h",
            "local_tag": "l",
            "remote_tag": "r",
            "media_id": f"{sid}.m",
            "edge": "e",
        }
        created = await applier.create(
            fields, keys.registry_keys(fields), Event("i", "Invite", {"sdp": "v=0", "txn": "t"})
        )
        assert created.status == "created"
        handled = await applier.handle(sid, Event("c", "Cancel"))
        assert handled.state == "Terminated"
        assert len(await redis.xrange(keys.edge_commands("e"))) == 2  # 180, then 487
    finally:
        await redis.aclose()


@pytest.mark.parametrize("case", ["wrong-ca", "plaintext"])
async def test_no_downgrade(tls_redis: tuple[int, Path], case: str) -> None:
    port, certs = tls_redis
    if case == "wrong-ca":
        url = (
            f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=required"
            f"&ssl_ca_certs={certs / 'other-ca.crt'}"
        )
    else:
        url = f"redis://127.0.0.1:{port}/0"
    redis = connect(url, socket_timeout=2)
    try:
        with pytest.raises((RedisConnectionError, TimeoutError, OSError)):
            await redis.ping()
    finally:
        await redis.aclose()
