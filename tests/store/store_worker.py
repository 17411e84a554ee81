"""A separate OS process for the store concurrency test: applies its share of events.

Usage: python store_worker.py URL NAMESPACE WORKER SID... (events: WORKER:SID:n for n < COUNT)
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "service"))

from sessiond.core.types import Event  # noqa: E402
from sessiond.store import Keys, Store  # noqa: E402
from sessiond.store.client import connect  # noqa: E402
from sessiond.store.tableset import TableSet  # noqa: E402
from sessiond.table import load_table  # noqa: E402
from sessiond.worker.applier import Applier, Work  # noqa: E402

COUNT = 40


async def main(url: str, namespace: str, worker: str, sids: list[str]) -> None:
    redis = connect(url)
    keys = Keys(namespace)
    table = load_table(Path(__file__).parents[1] / "tables" / "counter.yaml")
    applier = Applier(Store(redis, keys, worker=worker), TableSet([table], redis, keys))
    for n in range(COUNT):
        batch = [Work(sid, Event(f"{worker}:{sid}:{n}", "Hangup"), None, False) for sid in sids]
        for handled in await applier.run(batch):
            assert handled.status == "applied", handled
    await redis.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]))
