"""Apply one event to one session: read, decide, compare-and-set, emit. Retries on conflict.

This is the whole per-event job of a worker, minus reading the stream. The order matters:

1. Read the session and, in the same round trip, whether this event id was applied already.
   If it was, a previous attempt died after its transition and maybe before its emission:
   re-emit the stored outbox (receivers drop repeated command ids) and stop.
2. Decide on the snapshot (pure).
3. Compare-and-set. CONFLICT means another worker moved the session first: go to 1.
4. Emit the outbox. The caller acknowledges the stream entry only after this returns.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from sessiond.engine import Event, Outcome, decide
from sessiond.errors import ConflictRetriesExhausted
from sessiond.store import Store
from sessiond.tables import TableSet

Status = Literal["applied", "created", "duplicate", "ignored", "no_transition", "missing"]


@dataclass(frozen=True, slots=True)
class Handled:
    status: Status
    sid: str
    state: str = ""
    reason: str = ""
    commands: int = 0
    conflicts: int = 0


class Applier:
    def __init__(
        self,
        store: Store,
        tables: TableSet,
        *,
        clock: Callable[[], float] = time.time,
        max_conflicts: int = 16,
    ) -> None:
        self.store = store
        self.tables = tables
        self.clock = clock
        self.max_conflicts = max_conflicts

    async def handle(self, sid: str, event: Event) -> Handled:
        conflicts = 0
        while True:
            session, done = await self.store.read(sid, event.id)
            if done is not None:
                sent = await self.store.emit(done)
                return Handled("duplicate", sid, (session or {}).get("state", ""), "", sent)
            if session is None:
                return Handled("missing", sid, reason="no such session")
            table = await self.tables.for_session(session)
            decision = decide(table, session, event, self.clock())
            if decision.outcome is not Outcome.TRANSITION:
                return Handled(_status(decision.outcome), sid, decision.state, decision.reason)
            result = await self.store.apply(session, event.id, decision)
            if result.status == "CONFLICT":
                conflicts += 1
                if conflicts >= self.max_conflicts:
                    raise ConflictRetriesExhausted(f"{sid}: {conflicts} conflicts on {event.id}")
                continue
            if result.status == "MISSING":
                return Handled("missing", sid, reason="session expired while deciding")
            sent = await self.store.emit(result.outbox)
            status: Status = "applied" if result.status == "OK" else "duplicate"
            return Handled(status, sid, decision.state, decision.reason, sent, conflicts)

    async def create(
        self,
        fields: Mapping[str, str],
        registry: Sequence[str],
        event: Event,
        table_name: str = "default",
    ) -> Handled:
        """Create a session for ``event`` (create-if-absent on the registry entries). If
        another worker created it first, the event is applied to that session instead."""
        table = self.tables.current(table_name)
        session = {
            **fields,
            "state": table.initial,
            "version": "0",
            "table": table.name,
            "table_rev": table.rev,
        }
        decision = decide(table, session, event, self.clock())
        if decision.outcome is not Outcome.TRANSITION:
            status = _status(decision.outcome)
            return Handled(status, fields["sid"], table.initial, decision.reason)
        result = await self.store.create(session, registry, event, decision)
        if not result.created:
            return await self.handle(result.sid, event)
        sent = await self.store.emit(result.outbox)
        return Handled("created", result.sid, decision.state, decision.reason, sent)


def _status(outcome: Outcome) -> Status:
    return "ignored" if outcome is Outcome.IGNORED else "no_transition"
