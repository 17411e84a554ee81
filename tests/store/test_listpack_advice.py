"""The worker's advice at start when Redis would keep session hashes as hashtables."""

from __future__ import annotations

import pytest

from sessiond.store import Store
from sessiond.store.client import LISTPACK_VALUE, is_embedded, listpack_advice

pytestmark = pytest.mark.redis


async def test_the_advice_names_the_setting_when_it_is_low(store: Store) -> None:
    advice = await listpack_advice(store.redis)
    if is_embedded(store.redis):
        assert advice == ""  # fakeredis: no such setting to read
        return
    reply = await store.redis.config_get("hash-max-listpack-value")
    value = int(reply["hash-max-listpack-value"])
    if value < LISTPACK_VALUE // 2:
        assert f"hash-max-listpack-value is {value}" in advice
        assert f"set it to {LISTPACK_VALUE}" in advice
    else:
        assert advice == ""
