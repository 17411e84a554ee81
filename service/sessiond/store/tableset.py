"""The tables a process runs, by name and by revision.

A session records the table name and revision (content hash) it started with. When a table
file changes, calls in progress keep running the revision they started on: every process
publishes the source of its tables to Redis, and a worker that meets a session on a revision
it has not loaded fetches that source and compiles it once. A table with ``include:`` files
publishes its expanded text, which names no other file (``Table.source``, table/include.py),
and its revision hashes that text, so a change to an included file is a new revision too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sessiond.core.errors import StoreError, TableError
from sessiond.store.keys import Keys
from sessiond.table import Table, load_table_text


class TableSet:
    def __init__(self, tables: Iterable[Table], redis: Any = None, keys: Keys | None = None):
        self._current = {t.name: t for t in tables}
        self._by_rev = {(t.name, t.rev): t for t in self._current.values()}
        self.redis = redis
        self.keys = keys or Keys()

    def current(self, name: str) -> Table:
        try:
            return self._current[name]
        except KeyError:
            raise StoreError(f"no table named {name!r} is loaded") from None

    def names(self) -> list[str]:
        return sorted(self._current)

    async def publish(self) -> None:
        """Store each current table's source under its revision (kept: they are small)."""
        for t in self._current.values():
            await self.redis.set(self.keys.table_source(t.name, t.rev), t.source, nx=True)

    async def for_session(self, session: Mapping[str, str]) -> Table:
        name, rev = session.get("table", ""), session.get("table_rev", "")
        table = self._by_rev.get((name, rev))
        if table is not None:
            return table
        if self.redis is None:
            raise StoreError(f"session {session.get('sid')} runs table {name}@{rev}, not loaded")
        text = await self.redis.get(self.keys.table_source(name, rev))
        if text is None:
            raise StoreError(
                f"session {session.get('sid')} runs table {name}@{rev}, "
                "whose source is not in Redis"
            )
        try:
            table = load_table_text(text.decode(), f"redis:{name}@{rev}")
        except TableError as exc:
            raise StoreError(f"stored table {name}@{rev} no longer loads: {exc}") from exc
        self._by_rev[(name, rev)] = table
        return table
