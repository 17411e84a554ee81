"""Shared fixtures: a real Redis (SESSIOND_TEST_REDIS, default db 15) and the embedded store.

Tests that need Redis fail, not skip, when it is unreachable: CI starts one.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sessiond.core.resources import default_table_path
from sessiond.store import Keys, Store
from sessiond.store.client import connect
from sessiond.store.store import delete_namespace
from sessiond.table import Table, load_table

sys.path.insert(0, str(Path(__file__).parent))  # shared helpers: sipp_scenarios

REDIS_URL = os.environ.get("SESSIOND_TEST_REDIS", "redis://127.0.0.1:6379/15")
TABLES = Path(__file__).parent / "tables"


@pytest.fixture(scope="session")
def redis_url() -> str:
    return REDIS_URL


@pytest.fixture(scope="session")
def default_table() -> Table:
    return load_table(default_table_path())


@pytest.fixture(scope="session")
def counter_table() -> Table:
    return load_table(TABLES / "counter.yaml")


@pytest.fixture(params=["redis", "embedded"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, Any, Keys]]:
    """(url, client, keys) on a real Redis and on the embedded store, isolated by namespace."""
    url = REDIS_URL if request.param == "redis" else "embedded"
    client = connect(url)
    keys = Keys(f"t{uuid.uuid4().hex[:8]}")
    yield url, client, keys
    await delete_namespace(client, keys.ns)
    await client.aclose()


@pytest.fixture
def store(backend: tuple[str, Any, Keys]) -> Store:
    _, client, keys = backend
    return Store(client, keys, worker="test", ttl=300, ended_ttl=60)
