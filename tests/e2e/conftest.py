"""The fixture every e2e test module shares: a Cluster of sessiond processes on the test
Redis, in its own namespace, stopped and cleaned up after the test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import Cluster


@pytest.fixture
def cluster(redis_url: str, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(redis_url, tmp_path)
    yield c
    c.stop_all()
    c.cleanup()
