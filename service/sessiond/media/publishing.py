"""What a media node writes besides heartbeats: the changes its executor made to the legs
hash (``{media:NAME}:legs``), and the events its commands and legs caused.

Both go in one round, changes first: a leg is listed before the MediaReady that announces it
(:mod:`sessiond.media.lost`). Changes are forgotten only once their round succeeded, and only
if the leg did not change again meanwhile.
"""

from __future__ import annotations

import logging
from typing import Any

from sessiond.core import metrics as process_metrics
from sessiond.core.types import Event
from sessiond.media import node_metrics as metrics
from sessiond.store.consumer import Consumer
from sessiond.store.legs import LegStore
from sessiond.store.round import Round

log = logging.getLogger("sessiond.media")
Changes = dict[str, str | None]  # media id -> legs hash entry, or None: the leg is gone


class NodeOutbox:
    """One node's writes of leg changes and events (``executor.changes`` pending)."""

    def __init__(self, legs: LegStore, consumer: Consumer, executor: Any, node: str) -> None:
        self.legs = legs
        self.consumer = consumer
        self.executor = executor
        self.node = node

    def queue(self, pipe: Round, events: list[Event]) -> Changes:
        """Queue on ``pipe``: the legs hash changes, then the events. Returns the changes
        queued (for :meth:`sent` once the round succeeded)."""
        changes = dict(self.executor.changes)
        self.legs.queue_changes(pipe, self.node, changes)
        queued = {id(event) for event in self.legs.queue_events(pipe, events)}
        for event in events:
            if id(event) in queued:
                process_metrics.child(metrics.EVENTS, event.type).inc()
            else:
                log.warning("dropped %s %s: no session id", event.type, event.id)
        return changes

    def sent(self, changes: Changes) -> None:
        """The legs hash has ``changes``: drop those not changed again since."""
        pending = self.executor.changes
        for media_id, entry in changes.items():
            if media_id in pending and pending[media_id] == entry:
                del pending[media_id]

    async def publish(
        self, events: list[Event], ack: tuple[str, list[bytes]] | None = None
    ) -> None:
        """XADD events to their sessions' partition streams, then (optionally) XACK command
        entries, in one round."""
        if not events and not (ack and ack[1]) and not self.executor.changes:
            return
        pipe = Round(self.legs.redis)
        changes = self.queue(pipe, events)
        if ack:
            self.consumer.queue_ack(pipe, *ack)
        await pipe.execute()
        self.sent(changes)
