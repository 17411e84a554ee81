"""Who owns a media leg: one node per create, known before any other command is sent.

Theory of operation
-------------------
A ``create`` goes to the pool stream (any node) or, pinned, to one node's stream. Before a
node makes the leg it claims it (``lua/media_claim.lua``, on ``{T}:media-owner:<media id>``
in the session's slot, so it sits beside the session hash): the record
names the node, its incarnation and the create command id, and lists every create id a later
one replaced. The claim refuses

- a create whose session is terminal (its hash has ``ended_by``), or
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

import logging
from collections.abc import Awaitable, Callable, Collection, Container, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from redis.exceptions import ResponseError

from sessiond.core.ids import sid_tag
from sessiond.core.messages import CreateLeg
from sessiond.media.commands import CommandError, decode_command
from sessiond.store import Keys
from sessiond.store.client import is_cluster
from sessiond.store.scripts import script
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


log = logging.getLogger("sessiond.media")


def creates_to_claim(
    entries: Sequence[tuple[bytes, Any]],
    *,
    done: Container[str],
    held: Collection[str],
    makes_none: Callable[[bytes], Any],
    takeover: bool,
) -> dict[str, Claim]:
    """The creates of a batch a node claims before running it (create id -> claim): well
    formed, not run already (``done``), and either for a leg the node ``held`` or one it
    would make (``makes_none(entry id)``: draining, or too old)."""
    claims: dict[str, Claim] = {}
    for entry_id, fields in entries:
        try:
            cmd = decode_command(fields or {})
        except CommandError:
            continue
        media_id = cmd.data.media_id
        if cmd.type != "create" or cmd.id in done:
            continue
        if not claimable(cmd.sid, media_id):
            continue  # a malformed create: made (or refused) as before, without a record
        if media_id not in held and makes_none(entry_id):
            continue  # not executed (left for another node, refused or dropped)
        relocation = isinstance(cmd.data, CreateLeg) and bool(cmd.data.origin)
        claims[cmd.id] = Claim(cmd.sid, media_id, cmd.id, takeover, relocation)
    return claims


def claim_allows(executor: Any, cmd: Any, status: str, owner: str) -> bool:
    """Whether a create whose claim answered ``status`` may make its leg; a copy of the
    leg the node holds (``executor``) is closed when the leg is not (or no longer) its."""
    if status == "OK":
        return True
    media_id = cmd.data.media_id
    log.info("create %s for %s refused: %s %s", cmd.id, media_id, status, owner)
    leg = executor.legs.get(media_id)
    if leg is not None and (status == "ENDED" or status == "OWNED" and leg.origin == cmd.id):
        executor.end(leg, f"{cmd.id}:{status.lower()}")
    return False


def routable(cmd: Any) -> bool:
    """A command (not a create) for a leg that may have an owner record."""
    return claimable(cmd.sid, cmd.data.media_id)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


class LegOwners:
    """The owner records of media legs, for one client and namespace."""

    def __init__(self, redis: Any, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._claim = script(redis, "media_claim")
        self._route = script(redis, "media_route")

    async def claim_many(
        self, node: str, incarnation: str, claims: Sequence[Claim]
    ) -> list[tuple[str, str]]:
        """Claim each create for ``node``/``incarnation`` in one round trip; one
        ``(status, detail)`` per claim (see ``lua/media_claim.lua``)."""
        calls = [
            (
                self._claim,
                [self.keys.session(c.sid), self.keys.media_owner(c.media_id)],
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

    async def claim_batch(
        self,
        node: str,
        incarnation: Callable[[], str],
        claims: Mapping[str, Claim],
        fenced: Callable[[], Awaitable[None]],
    ) -> dict[str, tuple[str, str]]:
        """:meth:`claim_many` for a batch's creates (create id -> claim); the answers by
        create id. A FENCED answer means the node's incarnation was declared lost: after
        ``fenced()`` (it closes its legs and starts a new incarnation) the batch is claimed
        again. A claim the server refuses (say, an ACL without the script's commands)
        leaves the creates unclaimed."""
        if not claims:
            return {}
        try:
            answers = await self.claim_many(node, incarnation(), list(claims.values()))
        except ResponseError as exc:
            log.error("claiming legs failed, creating them unclaimed: %s", exc)
            return {}
        if any(status == "FENCED" for status, _ in answers):
            await fenced()
            again = [replace(c, takeover=True) for c in claims.values()]
            answers = await self.claim_many(node, incarnation(), again)
        return dict(zip(claims, answers, strict=True))

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
