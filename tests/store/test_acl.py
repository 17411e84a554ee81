"""The least-privilege Redis users of ops/redis-acl.conf, on the real Redis: a worker and an
edge running as their users handle a call; commands outside their rules are refused."""

from __future__ import annotations

import asyncio
import re
import secrets
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import redis.asyncio as aioredis
from redis.exceptions import NoPermissionError

from sessiond.core.ids import new_sid
from sessiond.edge.process import Edge
from sessiond.edge.registrar import RegistrarConfig
from sessiond.edge.transport import ListenSpec
from sessiond.media.lost import LegRegistry
from sessiond.media.node import MediaNode, available_codecs
from sessiond.media.ports import PortAllocator
from sessiond.sip.digest import DigestClient
from sessiond.sip.message import SipResponse, parse_message
from sessiond.sip.registrar import RegistrarPolicy
from sessiond.store import Keys, Store
from sessiond.store.client import connect
from sessiond.store.location import census
from sessiond.store.rooms import MemberFlags, RoomStore
from sessiond.store.store import delete_namespace
from sessiond.store.tableset import TableSet
from sessiond.store.users import Account, Users
from sessiond.table import Table
from sessiond.worker.applier import Applier
from sessiond.worker.process import Worker

pytestmark = pytest.mark.redis
ACL_FILE = Path(__file__).resolve().parents[2] / "ops" / "redis-acl.conf"


def acl_rules() -> dict[str, list[str]]:
    """user name -> its rules (without 'user NAME', the password and the key pattern)."""
    out = {}
    for line in ACL_FILE.read_text().splitlines():
        if line.startswith("user "):
            selectors = re.findall(r"\([^)]*\)", line)  # (~key-pattern +commands), kept whole
            _, name, *rules = re.sub(r"\([^)]*\)", "", line).split()
            out[name] = [r for r in rules if not r.startswith((">", "~"))] + selectors
    return out


@pytest.fixture
async def users(redis_url: str) -> AsyncIterator[tuple[Keys, dict[str, str]]]:
    """ACL users for this test, limited to a namespace of their own; their Redis URLs."""
    admin = aioredis.from_url(redis_url)
    keys = Keys(f"acl{uuid.uuid4().hex[:8]}")
    urls = {}
    names = []
    for kind, rules in acl_rules().items():
        name = f"{kind}-{keys.ns}"
        password = secrets.token_hex(8)
        rules = [r.replace("~sessiond:", f"~{keys.ns}:") for r in rules]
        await admin.execute_command(
            "ACL", "SETUSER", name, "reset", *rules, f">{password}", f"~{keys.ns}:*"
        )
        names.append(name)
        urls[kind] = redis_url.replace("redis://", f"redis://{name}:{password}@")
    yield keys, urls
    for name in names:
        await admin.execute_command("ACL", "DELUSER", name)
    await delete_namespace(admin, keys.ns)
    await admin.aclose()


def test_acl_file_defines_a_user_per_process() -> None:
    assert set(acl_rules()) == {
        "sessiond-worker",
        "sessiond-edge",
        "sessiond-media",
        "sessiond-ctl",
    }


async def test_worker_and_edge_work_as_least_privilege_users(
    users: tuple[Keys, dict[str, str]], default_table: Table
) -> None:
    keys, urls = users
    worker_redis = connect(urls["sessiond-worker"])
    edge_redis = connect(urls["sessiond-edge"])
    applier = Applier(Store(worker_redis, keys), TableSet([default_table], worker_redis, keys))
    worker = Worker(applier, name="acl-w", answer="reject", block_ms=10)
    edge = Edge(edge_redis, keys, "acl-e", [ListenSpec("UDP", "127.0.0.1", 0)])
    tasks = [asyncio.create_task(worker.run()), asyncio.create_task(edge.run())]
    loop = asyncio.get_running_loop()
    sock = __import__("socket").socket(2, 2)  # AF_INET, SOCK_DGRAM
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    try:
        for _ in range(100):
            if edge.locals:
                break
            await asyncio.sleep(0.01)
        port = sock.getsockname()[1]
        invite = (
            f"INVITE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};"
            f"branch=z9hG4bK-acl;rport\r\nFrom: <sip:a@127.0.0.1>;tag=a\r\n"
            f"To: <sip:bob@127.0.0.1>\r\nCall-ID: acl@h\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
            f"Content-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\n"
        ).encode()
        sock.sendto(invite, ("127.0.0.1", edge.address.port))
        codes = []
        while "603" not in codes:  # 100 from the edge, 180 and 603 from the table
            data = await asyncio.wait_for(loop.sock_recv(sock, 65535), 5)
            codes.append(data.split(b" ")[1].decode())
        assert codes[-1] == "603"
        assert "180" in codes
        # outside the rules: refused
        with pytest.raises(NoPermissionError):
            await worker_redis.flushall()
        with pytest.raises(NoPermissionError):
            await edge_redis.get("some-other-application:key")
        with pytest.raises(NoPermissionError):
            await edge_redis.flushall()
    finally:
        sock.close()
        worker.stop()
        edge.stop()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        await worker_redis.aclose()
        await edge_redis.aclose()


async def test_ctl_user_reads_but_cannot_run_scripts(users: tuple[Keys, dict[str, str]]) -> None:
    keys, urls = users
    ctl: Any = connect(urls["sessiond-ctl"])
    try:
        assert [k async for k in ctl.scan_iter(match=f"{keys.ns}:*:session:*")] == []
        await ctl.xadd(keys.events(0), {"id": "x", "type": "Hangup", "sid": "s"})
        with pytest.raises(NoPermissionError):
            await ctl.evalsha("0" * 40, 0)
        with pytest.raises(NoPermissionError):
            await ctl.hset(f"{keys.ns}:{{t}}:session:x", "state", "Hacked")
        # the registrar's users: written by ctl user, and only those keys
        await ctl.hset(keys.user("alice", "example.com"), "ha1_md5", "0" * 32)
        assert await ctl.delete(keys.user("alice", "example.com")) == 1
        with pytest.raises(NoPermissionError):
            await ctl.delete(keys.registrar_domains())
    finally:
        await ctl.aclose()


async def test_media_node_and_loss_detection_work_as_their_users(
    users: tuple[Keys, dict[str, str]], redis_url: str
) -> None:
    """The media user claims a leg and routes a pool command (scripts), lists its legs
    (hash, script); the worker user announces a dead node's legs (claim, hash, script,
    zset)."""
    keys, urls = users
    admin = aioredis.from_url(redis_url)
    media_redis = connect(urls["sessiond-media"])
    worker_redis = connect(urls["sessiond-worker"])
    ports = PortAllocator("127.0.0.1", 39100, 39140)
    args = {"sdp_address": "127.0.0.1", "codecs": available_codecs()}
    node = MediaNode(media_redis, keys, args, name="acl-m", ports=ports, block_ms=20)
    task = asyncio.create_task(node.run())
    try:
        sid = new_sid("acl-media@h")
        await admin.hset(keys.session(sid), "state", "Ringing")
        await admin.expire(keys.session(sid), 60)
        data = msgpack.packb({"media_id": f"{sid}.m", "mode": "offer"})
        await admin.xadd(
            keys.media_pool(), {"id": "c1", "type": "create", "sid": sid, "data": data}
        )
        other = new_sid("acl-media-2@h")
        gone = msgpack.packb({"media_id": f"{other}.m"})
        await admin.xadd(
            keys.media_pool(), {"id": "d1", "type": "destroy", "sid": other, "data": gone}
        )
        legs = keys.media_legs("acl-m")
        for _ in range(250):
            if await admin.hexists(legs, f"{sid}.m"):
                break
            await asyncio.sleep(0.02)
        assert await admin.hget(legs, f"{sid}.m") == b"=c1"
        assert await admin.hget(keys.media_owner(f"{sid}.m"), "node") == b"acl-m"
        for _ in range(250):
            if await admin.hexists(keys.media_owner(f"{other}.m"), "destroyed"):
                break
            await asyncio.sleep(0.02)
        assert await admin.hget(keys.media_owner(f"{other}.m"), "destroyed") == b"1"
        # the node dies (its task cancelled: no drain, no farewell) and its heartbeat expires
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await admin.delete(keys.heartbeat("media", "acl-m"))
        assert await LegRegistry(worker_redis, keys).find_lost_nodes("acl-w") == 1
        assert not await admin.exists(legs)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        node.executor.close_all("test")
        await media_redis.aclose()
        await worker_redis.aclose()
        await admin.aclose()


async def test_rooms_as_the_media_and_ctl_users(users: tuple[Keys, dict[str, str]]) -> None:
    """The media user joins, changes and leaves a conference room (scripts, the index); the
    ctl user lists and reads rooms."""
    keys, urls = users
    media_redis = connect(urls["sessiond-media"])
    ctl_redis = connect(urls["sessiond-ctl"])
    try:
        rooms = RoomStore(media_redis, keys)
        joined = await rooms.join("acl-room", "acl-m", "s1", MemberFlags(muted=True))
        assert (joined.status, joined.flags.muted, joined.members) == ("OK", True, 1)
        elsewhere = await rooms.join("acl-room", "acl-m2", "s2", MemberFlags())
        assert (elsewhere.status, elsewhere.node) == ("ELSEWHERE", "acl-m")
        assert not await rooms.alive("acl-m")
        taken = await rooms.join("acl-room", "acl-m2", "s2", MemberFlags(), dead="acl-m")
        assert taken.status == "OK"
        assert await rooms.set_flags("acl-room", "s2", MemberFlags(deaf=True))
        await rooms.set_field("acl-room", "recording", "/tmp/r.wav")
        reader = RoomStore(ctl_redis, keys)
        assert await reader.names() == ["acl-room"]
        record = await reader.record("acl-room")
        assert (record["media_node"], record["moves"]) == ("acl-m2", "1")
        assert (await reader.members("acl-room"))["s2"].deaf
        assert await rooms.leave("acl-room", "s1") == ("LEFT", 1)
        assert await rooms.leave("acl-room", "s2") == ("EMPTY", 0)
        assert await reader.names() == []
    finally:
        await media_redis.aclose()
        await ctl_redis.aclose()


async def test_a_worker_user_without_info_still_heartbeats(
    users: tuple[Keys, dict[str, str]], redis_url: str, default_table: Table
) -> None:
    """An ACL written before the worker asked INFO (for Redis' run_id): the worker warns once
    and tells a Redis restart by errors and gaps only; its heartbeat goes on."""
    keys, urls = users
    admin = aioredis.from_url(redis_url)
    name = urls["sessiond-worker"].split("//", 1)[1].split(":", 1)[0]
    await admin.execute_command("ACL", "SETUSER", name, "-info")
    worker_redis = connect(urls["sessiond-worker"])
    applier = Applier(Store(worker_redis, keys), TableSet([default_table], worker_redis, keys))
    worker = Worker(applier, name="acl-noinfo", block_ms=10)
    try:
        await worker.ensure_groups()
        await worker.heartbeat_once()
        assert not worker._ask_run_id
        await worker.heartbeat_once()  # no longer asks
        assert await admin.exists(keys.heartbeat("worker", "acl-noinfo")) == 1
    finally:
        await worker_redis.aclose()
        await admin.aclose()


async def test_registrar_works_as_the_edge_user(users: tuple[Keys, dict[str, str]]) -> None:
    """ctl user adds an account; an edge with --registrar, as the edge user, challenges a
    REGISTER, checks the answer (HGET), stores the binding (register.lua) and counts it."""
    keys, urls = users
    ctl_redis: Any = connect(urls["sessiond-ctl"])
    edge_redis = connect(urls["sessiond-edge"])
    await Users(ctl_redis, keys).put([Account("alice", "example.com", "s3cret")])
    config = RegistrarConfig(RegistrarPolicy(frozenset({"example.com"})))
    edge = Edge(edge_redis, keys, "acl-r", [ListenSpec("UDP", "127.0.0.1", 0)], registrar=config)
    task = asyncio.create_task(edge.run())
    loop = asyncio.get_running_loop()
    sock = __import__("socket").socket(2, 2)  # AF_INET, SOCK_DGRAM
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    port = sock.getsockname()[1]

    async def register(cseq: int, auth: str = "") -> SipResponse:
        text = (
            f"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};"
            f"branch=z9hG4bK-r{cseq};rport\r\nFrom: <sip:alice@example.com>;tag=a\r\n"
            f"To: <sip:alice@example.com>\r\nCall-ID: acl-reg@h\r\nCSeq: {cseq} REGISTER\r\n"
            f"Contact: <sip:alice@127.0.0.1:{port}>\r\nMax-Forwards: 70\r\n{auth}"
            "Content-Length: 0\r\n\r\n"
        )
        sock.sendto(text.encode(), ("127.0.0.1", edge.address.port))
        reply = parse_message(await asyncio.wait_for(loop.sock_recv(sock, 65535), 5))
        assert isinstance(reply, SipResponse)
        return reply

    try:
        for _ in range(100):
            if edge.locals:
                break
            await asyncio.sleep(0.01)
        challenge = await register(1)
        assert challenge.status == 401
        name, value = DigestClient("alice", "s3cret").answer(
            challenge, "REGISTER", "sip:example.com"
        )
        ok = await register(2, f"{name}: {value}\r\n")
        assert ok.status == 200, bytes(ok)
        assert ok.header("contact") == f"<sip:alice@127.0.0.1:{port}>;expires=3600"
        assert await census(edge_redis, keys) == (1, 1)
    finally:
        sock.close()
        edge.stop()
        await asyncio.wait_for(task, 10)
        await edge_redis.aclose()
        await ctl_redis.aclose()
