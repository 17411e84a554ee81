"""A real Redis Cluster (3 masters on loopback): every script touches one slot, and calls
work across shards (store, worker, edge)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from sessiond.core.types import Event
from sessiond.edge.process import Edge
from sessiond.edge.transport import ListenSpec
from sessiond.media.audit import orphan_legs_async
from sessiond.media.owner import Claim, LegOwners
from sessiond.store import Keys, Store, new_sid
from sessiond.store.client import connect
from sessiond.store.location import Binding, Location, all_locations, census
from sessiond.store.store import delete_namespace
from sessiond.store.tableset import TableSet
from sessiond.table import Table
from sessiond.table.engine import decide
from sessiond.worker.applier import Applier
from sessiond.worker.process import Worker

pytestmark = [
    pytest.mark.redis,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server missing"),
]


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    # the cluster bus uses port + 10000: keep it below 65536
    return ports if all(p + 10000 < 65536 for p in ports) else _free_ports(n)


@pytest.fixture(scope="module")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    base = tmp_path_factory.mktemp("cluster")
    ports = _free_ports(3)
    procs = []
    for port in ports:
        d = base / str(port)
        d.mkdir()
        procs.append(
            subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ],
                cwd=d,
                stdout=subprocess.DEVNULL,
            )
        )
    try:
        for port in ports:
            _wait_port(port)
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        for port in ports:
            _wait_cluster_ok(port)
        yield f"redis-cluster://127.0.0.1:{ports[0]}"
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=10)


def _wait_port(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"redis on {port} did not start")


def _wait_cluster_ok(port: int) -> None:
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            if b"cluster_state:ok" in client.execute_command("CLUSTER", "INFO"):
                return
            time.sleep(0.1)
    finally:
        client.close()
    raise TimeoutError("cluster did not become ok")


def uas(keys: Keys, call_id: str) -> dict[str, str]:
    sid = new_sid(call_id)
    return {
        "sid": sid,
        "role": "UAS",
        "call_id": call_id,
        "local_tag": "l",
        "remote_tag": "r",
        "media_id": f"{sid}.m",
        "edge": "e",
    }


async def test_store_across_shards(cluster_url: str, default_table: Table) -> None:
    client = connect(cluster_url)
    keys = Keys(f"c{uuid.uuid4().hex[:6]}")
    applier = Applier(Store(client, keys), TableSet([default_table], client, keys))
    try:
        nodes = set()
        for n in range(30):
            fields = uas(keys, f"shard{n}@h")
            invite = Event(f"i{n}", "Invite", {"sdp": "v=0", "txn": "t"})
            created = await applier.create(fields, keys.registry_keys(fields), invite)
            assert created.status == "created"
            handled = await applier.handle(fields["sid"], Event(f"c{n}", "Cancel"))
            assert handled.state == "Terminated"
            nodes.add(client.get_node_from_key(keys.session(fields["sid"])).port)
        assert len(nodes) == 3  # the sessions really are spread over the three masters
        # duplicate refusal and timers across slots
        again = await applier.handle(fields["sid"], Event(f"c{n}", "Cancel"))
        assert again.status == "duplicate"
        assert await applier.store.pop_all_timers(time.time() + 1000) == 0
    finally:
        await delete_namespace(client, keys.ns)
        await client.aclose()


async def test_call_through_edge_and_worker_on_the_cluster(
    cluster_url: str, default_table: Table
) -> None:
    keys = Keys(f"c{uuid.uuid4().hex[:6]}")
    worker_client, edge_client = connect(cluster_url), connect(cluster_url)
    applier = Applier(Store(worker_client, keys), TableSet([default_table], worker_client, keys))
    worker = Worker(applier, name="cw", answer="reject", block_ms=20)
    edge = Edge(edge_client, keys, "ce", [ListenSpec("UDP", "127.0.0.1", 0)])
    tasks = [asyncio.create_task(worker.run()), asyncio.create_task(edge.run())]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        for _ in range(200):
            if edge.locals:
                break
            await asyncio.sleep(0.01)
        port = sock.getsockname()[1]
        for n in range(6):  # Call-IDs hash to different partitions and nodes
            invite = (
                f"INVITE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};"
                f"branch=z9hG4bK-cl{n};rport\r\nFrom: <sip:a@127.0.0.1>;tag=a{n}\r\n"
                f"To: <sip:bob@127.0.0.1>\r\nCall-ID: cl{n}@h\r\nCSeq: 1 INVITE\r\n"
                f"Max-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: 4\r\n"
                f"\r\nv=0\n"
            ).encode()
            sock.sendto(invite, ("127.0.0.1", edge.address.port))
        declined = set()
        while len(declined) < 6:
            data = await asyncio.wait_for(loop.sock_recv(sock, 65535), 10)
            if data.startswith(b"SIP/2.0 603"):
                call_id = next(line for line in data.split(b"\r\n") if line.startswith(b"Call-ID"))
                declined.add(call_id)
        assert len(declined) == 6
    finally:
        sock.close()
        worker.stop()
        edge.stop()
        await asyncio.wait_for(asyncio.gather(*tasks), 15)
        await delete_namespace(worker_client, keys.ns)
        await worker_client.aclose()
        await edge_client.aclose()


async def test_media_leg_claims_and_the_orphan_audit_across_shards(cluster_url: str) -> None:
    """The claim script goes to each leg's slot (cluster pipelines refuse scripts); the
    audit reads sessions and owner records of many slots at once."""
    client = connect(cluster_url)
    keys = Keys(f"c{uuid.uuid4().hex[:6]}")
    owners = LegOwners(client, keys)
    try:
        sids = [new_sid(f"leg{n}@h") for n in range(12)]
        for sid in sids:
            await client.hset(keys.session(sid), "state", "Ringing")
        claims = [Claim(sid, f"{sid}.m", f"{sid}/1") for sid in sids]
        assert await owners.claim_many("m1", "i", claims) == [("OK", "")] * len(sids)
        assert await owners.claim_many("m2", "j", claims[:2]) == [("OWNED", "m1")] * 2
        assert await owners.route(f"{sids[0]}.m", destroy=True) == "m1"
        await client.hset(keys.session(sids[1]), "ended_by", "e-bye")  # that call ended
        legs = {f"{sid}.m": f"{sid} {sid}/1" for sid in sids}
        await client.hset(keys.media_legs("m1"), mapping={**legs, "@incarnation": "i"})
        await client.zadd(keys.processes("media"), {"m1": 1})
        await client.set(keys.heartbeat("media", "m1"), "1", ex=30)
        found = {(o.media_id, o.reason) for o in await orphan_legs_async(client, keys)}
        assert found == {(f"{sids[0]}.m", "destroyed"), (f"{sids[1]}.m", "session ended")}
    finally:
        await delete_namespace(client, keys.ns)
        await client.aclose()


async def test_registrar_bindings_across_shards(cluster_url: str) -> None:
    """register.lua touches one key (one slot) per AOR; lookups, the census and the
    operators' scan read every shard."""
    client = connect(cluster_url)
    keys = Keys(f"c{uuid.uuid4().hex[:6]}")
    location = Location(client, keys)
    now = time.time()
    try:
        nodes = set()
        users = [uuid.uuid4().hex[:8] for _ in range(30)]  # varied: CRC16 spreads them
        for n, user in enumerate(users):
            contact = f"sip:{user}@10.0.0.{n}"
            binding = Binding(
                contact=contact,
                expires_at=now + 60,
                call_id=f"r{n}",
                cseq=1,
                edge="e",
                transport="UDP",
                source=f"10.0.0.{n}:5060",
                registered_at=now,
            )
            done = await location.apply(
                user,
                "example.com",
                now=now,
                call_id=f"r{n}",
                cseq=1,
                wildcard=False,
                changes=[(contact, 60, binding)],
                most=10,
            )
            assert done.status == "OK"
            assert [b.contact for b in await location.lookup(user, "example.com", now)] == [contact]
            nodes.add(client.get_node_from_key(keys.location(user, "example.com")).port)
        assert len(nodes) == 3  # the AORs really are spread over the three masters
        assert await census(client, keys) == (30, 30)
        assert len(await all_locations(client, keys, now)) == 30
    finally:
        await delete_namespace(client, keys.ns)
        await client.aclose()


async def test_a_transition_keeps_its_outbox_until_the_worker_sent_it(
    cluster_url: str, default_table: Table
) -> None:
    """In a cluster the commands' streams are on other slots: the script keeps the outbox
    (no direct emission), and the worker sends it, then deletes it; a redelivery of a
    transition whose worker died before that sends it."""
    client = connect(cluster_url)
    keys = Keys(f"c{uuid.uuid4().hex[:6]}")
    store = Store(client, keys)
    applier = Applier(store, TableSet([default_table], client, keys))
    try:
        assert not store.direct
        fields = uas(keys, "outbox@h")
        sid = fields["sid"]
        invite = Event("i-out", "Invite", {"sdp": "v=0", "txn": "t"})
        assert (await applier.create(fields, keys.registry_keys(fields), invite)).status == (
            "created"
        )
        assert not await client.exists(keys.outboxes(sid))  # run() sent it, then deleted it
        edge = keys.edge_commands("e")
        assert await client.xlen(edge) == 1  # the 180
        session = await store.get(sid)
        assert session is not None
        cancel = Event("c-out", "Cancel")
        decision = decide(default_table, session, cancel, 1.0)
        result = await store.apply(session, cancel.id, decision)  # then the worker died
        assert result.status == "OK"
        assert result.outbox
        assert await client.hget(keys.outboxes(sid), cancel.id) == result.outbox
        assert await client.xlen(edge) == 1  # nothing sent by the script
        handled = await applier.handle(sid, cancel)  # the redelivery
        assert handled.status == "duplicate"
        assert await client.xlen(edge) == 2  # the 487
        assert not await client.exists(keys.outboxes(sid))
    finally:
        await delete_namespace(client, keys.ns)
        await client.aclose()
