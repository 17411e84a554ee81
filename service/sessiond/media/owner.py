"""Who owns a media leg: one node per create, known before any other command is sent.

Theory of operation
-------------------
A ``create`` goes to the pool stream (any node) or, pinned, to one node's stream. Before a
node makes the leg it claims it (``lua/media_claim.lua``, on ``{T}:media-owner:<media id>``
in the session's slot, so it sits beside the session's media registry entry): the record
names the node, its incarnation and the create command id, and lists every create id ever
claimed for the leg. The claim refuses

- a create whose session is gone or terminal (its media registry entry is deleted then), or
  whose leg was destroyed before anyone claimed it (``ENDED``);
- a create another node claimed (``OWNED``: a re-sent outbox, after the worker refused a
  duplicate event, sends the same create again, and the pool may hand it to another node);
- an older create of a leg a newer create replaced (``STALE``: a re-sent first create after
  the call moved);
- a relocation (a create with ``origin``) of a leg the claiming incarnation still holds
  (``FENCED``): this node was declared lost (it stalled) and the call is being moved; it
  closes its legs and starts a new incarnation first, then claims again.

A create re-read from a consumer's backlog or taken over with XAUTOCLAIM (its first node
died or stalled before acking it) may take over the claim of the same create id.

Commands other than ``create`` reach the pool only when the session did not know the leg's
node yet (the call ended, or moved, before MediaReady). The node that reads one asks the
record (``lua/media_route.lua``) and forwards the command to the owner's own stream; a
``destroy`` also marks the leg destroyed, so a create claimed later makes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sessiond.store import Keys
from sessiond.store.client import is_cluster
from sessiond.store.keys import sid_tag
from sessiond.store.scripts import source
from sessiond.store.store import eval_many


@dataclass(frozen=True, slots=True)
class Claim:
    """One create to claim: the session, the leg, the create command id, and whether the
    entry was taken over from a node that never acked it."""

    sid: str
    media_id: str
    create_id: str
    takeover: bool = False
    relocation: bool = False


def claimable(sid: str, media_id: str) -> bool:
    """Whether a leg has an owner record: its session id and media id are well formed and
    share a hash tag (a garbage command's leg has none, and is judged as before)."""
    try:
        return sid_tag(sid) == sid_tag(media_id)
    except ValueError:
        return False


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


class LegOwners:
    """The owner records of media legs, for one client and namespace."""

    def __init__(self, redis: Any, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._claim = redis.register_script(source("media_claim"))
        self._route = redis.register_script(source("media_route"))

    async def claim_many(
        self, node: str, incarnation: str, claims: Sequence[Claim]
    ) -> list[tuple[str, str]]:
        """Claim each create for ``node``/``incarnation`` in one round trip; one
        ``(status, detail)`` per claim (see ``lua/media_claim.lua``)."""
        calls = [
            (
                self._claim,
                [
                    self.keys.media(c.media_id),
                    self.keys.media_owner(c.media_id),
                    self.keys.session(c.sid),
                ],
                [
                    c.sid,
                    node,
                    incarnation,
                    c.create_id,
                    "1" if c.takeover else "0",
                    "1" if c.relocation else "0",
                ],
            )
            for c in claims
        ]
        replies = await self._eval_many(calls)
        return [(_text(status), _text(detail)) for status, detail in replies]

    async def route(self, media_id: str, *, destroy: bool) -> str:
        """The node that owns ``media_id`` ("" if none); a destroy marks the leg destroyed."""
        keys = [self.keys.media_owner(media_id)]
        return _text(await self._route(keys=keys, args=["1" if destroy else "0"]))

    async def _eval_many(self, calls: list[tuple[Any, list[str], list[Any]]]) -> list[Any]:
        replies = await eval_many(self.redis, calls, cluster=is_cluster(self.redis))
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies
