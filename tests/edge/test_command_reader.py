"""The edge's command reader on a real Redis: the backlog and its stale-entry rule."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from sessiond.edge.commands import CommandReader
from sessiond.store.entries import fields, pack
from sessiond.store.keys import EDGE_GROUP


async def test_a_stale_backlog_entry_is_acked_and_newer_commands_run(
    backend: tuple[str, Any, Any],
) -> None:
    """A command delivered to this edge name long ago and never acked (an edge restarted
    under the same name) is acked without running, and the reader goes on to new ones."""
    _, redis, keys = backend
    stream = keys.edge_commands("e1")
    ran: list[str] = []

    async def execute(cid: str, kind: str, data: Mapping[str, Any]) -> None:
        ran.append(cid)

    reader = CommandReader(
        redis, [stream], "e1", execute, batch=10, max_age=1.0, poll=0.0, stopping=asyncio.Event()
    )
    await reader.start_groups()
    old = f"{int((time.time() - 10) * 1000)}-0"
    await redis.xadd(stream, fields("old", "respond", "", pack({})), id=old)
    await redis.xreadgroup(EDGE_GROUP, "e1", {stream: ">"})  # delivered, never acked
    await redis.xadd(stream, fields("new", "respond", "", pack({})))
    for _ in range(4):
        await reader.once(stream, block=None)
    assert ran == ["new"]
    assert (await redis.xpending(stream, EDGE_GROUP))["pending"] == 0
