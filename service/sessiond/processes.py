"""Process entry points: wiring from command-line arguments to running loops.

Each process installs uvloop when present, logs to stderr, and turns SIGTERM/SIGINT into a
graceful stop (stop reading, finish the work in hand, exit).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from sessiond import metrics
from sessiond.applier import Applier
from sessiond.errors import TableError
from sessiond.redis_client import connect
from sessiond.resources import default_table_path
from sessiond.store import Keys, Store
from sessiond.table import Table, load_table
from sessiond.tables import TableSet
from sessiond.worker import Worker, default_name


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")


def load_tables(paths: list[str]) -> list[Table] | None:
    try:
        return [load_table(p) for p in paths or [str(default_table_path())]]
    except TableError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return None


def run_async(main: Callable[[], Coroutine[Any, Any, int]]) -> int:
    with contextlib.suppress(ImportError):
        import uvloop

        return uvloop.run(main())
    return asyncio.run(main())


def on_signals(stop: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)


def run_edge(args: argparse.Namespace) -> int:
    from sessiond.edge.process import Edge
    from sessiond.edge.transport import ListenSpec

    setup_logging()
    try:
        specs = [ListenSpec.parse(text) for text in args.listen or ["udp:127.0.0.1:5060"]]
    except ValueError as exc:
        print(f"sessiond edge: {exc}", file=sys.stderr)
        return 2
    metrics.serve(args.metrics_port)

    async def main() -> int:
        redis = connect(args.redis)
        edge = Edge(
            redis, Keys(partitions=args.partitions), args.name or default_name("edge"), specs
        )
        on_signals(edge.stop)
        await edge.run()
        await redis.aclose()
        return 0

    return run_async(main)


def run_worker(args: argparse.Namespace) -> int:
    setup_logging()
    tables = load_tables(args.table)
    if tables is None:
        return 2

    metrics.serve(args.metrics_port)

    async def main() -> int:
        redis = connect(args.redis)
        keys = Keys(partitions=args.partitions)
        workers = []
        for n in range(args.concurrency):
            store = Store(redis, keys, worker=args.name or "")
            applier = Applier(store, TableSet(tables, redis, keys))
            name = f"{args.name}-{n}" if args.name and args.concurrency > 1 else args.name
            workers.append(Worker(applier, name=name, answer=args.answer))
        for w in workers:
            w.store.worker = w.name

        def stop() -> None:
            for w in workers:
                w.stop()

        on_signals(stop)
        await asyncio.gather(*(w.run() for w in workers))
        await redis.aclose()
        return 0

    return run_async(main)
