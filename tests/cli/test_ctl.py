"""``sessiond ctl`` against a real Redis: list, show, hangup, drain, workers."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from sessiond.cli.main import main
from sessiond.core.types import Event
from sessiond.store import Keys, Store, new_sid
from sessiond.store.client import connect
from sessiond.store.store import decode_event, delete_namespace
from sessiond.store.tableset import TableSet
from sessiond.table import Table
from sessiond.worker.applier import Applier

pytestmark = pytest.mark.redis


def test_ctl_commands(
    redis_url: str, default_table: Table, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = Keys(f"tc{uuid.uuid4().hex[:8]}")
    sid = new_sid("ctl@h")

    async def setup() -> None:
        redis = connect(redis_url)
        applier = Applier(Store(redis, keys), TableSet([default_table], redis, keys))
        fields = {
            "sid": sid,
            "role": "UAS",
            "call_id": "ctl@h",
            "local_tag": "l",
            "remote_tag": "r",
            "remote_uri": "sip:alice@127.0.0.1",
            "media_id": f"{sid}.m",
        }
        await applier.create(
            fields, keys.registry_keys(fields), Event("i", "Invite", {"sdp": "v=0", "txn": "t"})
        )
        await redis.aclose()

    asyncio.run(setup())
    base = ["ctl", "--redis", redis_url, "--namespace", keys.ns]
    try:
        assert main([*base, "list"]) == 0
        out = capsys.readouterr().out
        assert sid in out
        assert "Ringing" in out
        assert "1 session(s)" in out
        assert main([*base, "list", "--state", "Established"]) == 0
        assert "0 session(s)" in capsys.readouterr().out
        assert main([*base, "show", sid]) == 0
        out = capsys.readouterr().out
        assert "Idle --Invite--> Ringing" in out
        assert "possible next events: AcceptCall," in out
        assert main([*base, "show", new_sid("nope")]) == 1
        assert main([*base, "hangup", sid]) == 0
        assert main([*base, "hold", sid]) == 0
        assert main([*base, "resume", sid]) == 0
        assert main([*base, "transfer", sid, "sip:carol@127.0.0.1:5090"]) == 0
        assert main([*base, "dtmf", "--info", sid, "12"]) == 0
        assert main([*base, "drain", "w-x"]) == 0
        assert main([*base, "workers"]) == 0
        assert main([*base, "orphans"]) == 0
        assert capsys.readouterr().out.endswith("0 orphan media legs\n")

        async def orphan() -> str:  # a live media node serving a leg of no session
            redis = connect(redis_url)
            gone = new_sid("gone@h")
            await redis.zadd(keys.processes("media"), {"m-x": 1.0})
            await redis.set(keys.heartbeat("media", "m-x"), "1", ex=60)
            await redis.hset(keys.media_legs("m-x"), f"{gone}.m", f"{gone} c/1")
            await redis.aclose()
            return gone

        gone = asyncio.run(orphan())
        assert main([*base, "orphans"]) == 1
        assert f"{gone}.m" in capsys.readouterr().out

        async def lease() -> None:  # what a live worker holding partitions 0-2 and 5 leaves
            redis = connect(redis_url)
            await redis.zadd(keys.processes("worker"), {"w-x": 1.0})
            for p in (0, 1, 2, 5):
                await redis.set(keys.leases()[p], "w-x", px=60_000)
            await redis.aclose()

        asyncio.run(lease())
        assert main([*base, "workers"]) == 0
        line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("w-x"))
        assert line.split()[-1] == "0-2,5"

        async def check() -> None:
            redis = connect(redis_url)
            entries = await redis.xrange(keys.events(keys.partition_of(sid)))
            events = [decode_event(fields) for _, fields in entries]
            assert [(e.type, e.sid) for e in events] == [
                ("Hangup", sid),
                ("Hold", sid),
                ("Resume", sid),
                ("Transfer", sid),
                ("SendDtmf", sid),
            ]
            assert events[3].data == {"target": "sip:carol@127.0.0.1:5090"}
            assert events[4].data == {"digits": "12", "method": "info"}
            assert await redis.exists(keys.drain("w-x")) == 1
            await redis.aclose()

        asyncio.run(check())
    finally:

        async def cleanup() -> None:
            redis = connect(redis_url)
            await delete_namespace(redis, keys.ns)
            await redis.aclose()

        asyncio.run(cleanup())
