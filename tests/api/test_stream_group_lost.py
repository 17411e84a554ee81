"""An application's event stream outlives its consumer group: Redis restarted without its
data (or someone ran XGROUP DESTROY). Both the read and the claim of idle entries find the
group gone (NOGROUP) and make it again, instead of ending the application's loop."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from sessiond import Client
from sessiond.store.client import connect
from sessiond.store.store import delete_namespace

pytestmark = [pytest.mark.redis, pytest.mark.timeout(30)]


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Client]:
    namespace = f"grp{uuid.uuid4().hex[:8]}"
    async with Client(redis_url, namespace=namespace, claim_idle=0.1) as c:
        yield c
    redis = connect(redis_url)
    await delete_namespace(redis, namespace)
    await redis.aclose()


async def _group_exists(client: Client) -> bool:
    groups = await client.redis.xinfo_groups(client.keys.app_events())
    return any(g["name"] in (client.group, client.group.encode()) for g in groups)


@pytest.mark.parametrize("step", ["_claim", "_read"])
async def test_a_lost_group_is_made_again(client: Client, step: str) -> None:
    stream = client.events()
    await client.redis.xgroup_destroy(client.keys.app_events(), client.group)
    assert not await _group_exists(client)
    entries = await (stream._claim() if step == "_claim" else stream._read(">"))
    assert entries == []
    assert await _group_exists(client)
