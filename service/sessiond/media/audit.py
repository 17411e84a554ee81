"""Orphan media legs: legs a live media node serves that no live session owns.

A leg is an orphan when its session is gone or terminal (the session hash has ``ended_by``),
or when its owner record
(:mod:`sessiond.media.owner`) names another node or incarnation or says it was destroyed.
Nodes check their own legs this way at every heartbeat and close the orphans
(:meth:`sessiond.media.node.MediaNode.audit_once`); :func:`orphan_legs` (a sync client, for
tests and ops) and :func:`orphan_legs_async` list them across every live node from the
nodes' ``{media:NAME}:legs`` hashes, which trail the nodes' memory by one round trip.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sessiond.media.lost import leg_of
from sessiond.store import Keys, legs
from sessiond.store.legs import INCARNATION


@dataclass(frozen=True, slots=True, order=True)
class OrphanLeg:
    """A leg ``node`` serves for ``sid`` that it should not (``reason``)."""

    node: str
    media_id: str
    sid: str
    reason: str


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


def _fields(raw: Mapping[Any, Any] | None) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in (raw or {}).items()}


def orphan_reason(
    node: str,
    incarnation: str,
    sid: str,
    ended_by: Any,
    session_exists: Any,
    owner: Mapping[Any, Any] | None,
    *,
    missing_is_orphan: bool = True,
) -> str:
    """Why a leg (``node``/``incarnation`` serves it for ``sid``) is
    an orphan, given its session hash's ``ended_by`` (None while the session lives), whether
    that hash exists and its owner record; "" if it is not. A leg without an owner record
    (made before records existed) is judged by its session alone. A session without a hash
    is "missing": an orphan unless ``missing_is_orphan`` is False (a node judging its own
    legs closes them only on positive evidence)."""
    if session_exists and ended_by is not None:
        return "session ended"
    if not session_exists and missing_is_orphan:
        return "session missing"
    record = _fields(owner)
    if record.get("destroyed"):
        return "destroyed"
    if record.get("node") and record["node"] != node:
        return f"owned by {record['node']}"
    if incarnation and record.get("incarnation") and record["incarnation"] != incarnation:
        return "owned by an earlier incarnation"
    return ""


def _legs(node: str, raw: Mapping[Any, Any]) -> tuple[str, list[tuple[str, str, str]]]:
    """(incarnation, [(media id, sid, create id)]) from a legs hash as read."""
    legs = _fields(raw)
    incarnation = legs.pop(INCARNATION, "")
    out = []
    for media_id, entry in sorted(legs.items()):
        sid, create_id = leg_of(media_id, entry)
        out.append((media_id, sid, create_id))
    return incarnation, out


def _served(
    names: Sequence[str], replies: Sequence[Any]
) -> list[tuple[str, str, tuple[str, str, str]]]:
    """(node, incarnation, leg) for every leg of every live node."""
    served = []
    for i, name in enumerate(names):
        live, raw = replies[2 * i], replies[2 * i + 1]
        if not live:
            continue  # a dead node's legs are announced lost by the workers
        incarnation, held = _legs(name, raw or {})
        served += [(name, incarnation, leg) for leg in held]
    return served


def _orphans(
    served: Sequence[tuple[str, str, tuple[str, str, str]]], replies: Sequence[Any]
) -> list[OrphanLeg]:
    out = []
    for i, (node, incarnation, (media_id, sid, _)) in enumerate(served):
        ended_by, exists, owner = replies[3 * i : 3 * i + 3]
        reason = orphan_reason(node, incarnation, sid, ended_by, exists, owner)
        if reason:
            out.append(OrphanLeg(node, media_id, sid, reason))
    return out


def orphan_legs(client: Any, keys: Keys) -> list[OrphanLeg]:
    """Every orphan leg on the live media nodes, with a synchronous redis-py client."""
    served = _served(*legs.read_nodes_sync(client, keys))
    checks = [(m, sid) for _, _, (m, sid, _) in served]
    return _orphans(served, legs.read_leg_checks_sync(client, keys, checks) if served else [])


async def orphan_legs_async(client: Any, keys: Keys) -> list[OrphanLeg]:
    """:func:`orphan_legs` with an asyncio client."""
    served = _served(*await legs.read_nodes(client, keys))
    checks = [(m, sid) for _, _, (m, sid, _) in served]
    return _orphans(served, await legs.read_leg_checks(client, keys, checks) if served else [])


class LegAudit:
    """A node's check of its own legs (:meth:`sessiond.media.node.MediaNode.audit_once`):
    ``limit`` legs per call, in turn; a leg is condemned once every check for ``grace``
    seconds found it an orphan (the destroy of a call that just ended is on its way)."""

    def __init__(self, redis: Any, keys: Keys, node: str) -> None:
        self.redis = redis
        self.keys = keys
        self.node = node
        self._at = 0  # where the next audit starts in the legs
        #: legs ("media id origin") found orphaned, and when that was first seen
        self._suspects: dict[str, float] = {}

    def choose(self, legs: Sequence[Any], limit: int) -> list[Any]:
        if not legs:
            return []
        start = self._at % len(legs)
        chosen = (list(legs[start:]) + list(legs[:start]))[:limit]
        self._at = start + len(chosen)
        return chosen

    async def read(self, chosen: Sequence[Any]) -> list[Any]:
        checks = [(leg.media_id, leg.sid) for leg in chosen]
        return await legs.read_leg_checks(self.redis, self.keys, checks)

    def condemned(
        self,
        chosen: Sequence[Any],
        replies: Sequence[Any],
        held: Iterable[Any],
        incarnation: str,
        now: float,
        grace: float,
    ) -> list[tuple[Any, str]]:
        """(leg, reason) for the ``chosen`` legs (still ``held``) to close now."""
        checked = {f"{leg.media_id} {leg.origin}" for leg in chosen}
        holding = {f"{leg.media_id} {leg.origin}": leg for leg in held}
        suspects, self._suspects = (
            self._suspects,
            {
                leg: since  # not checked this time, and not ended since
                for leg, since in self._suspects.items()
                if leg in holding and leg not in checked
            },
        )
        out = []
        for i, leg in enumerate(chosen):
            ended_by, exists, owner = replies[3 * i : 3 * i + 3]
            reason = orphan_reason(
                self.node, incarnation, leg.sid, ended_by, exists, owner, missing_is_orphan=False
            )
            name = f"{leg.media_id} {leg.origin}"
            if not reason or holding.get(name) is not leg:
                continue
            since = self._suspects[name] = suspects.get(name, now)
            if now - since >= grace:
                del self._suspects[name]
                out.append((leg, reason))
        return out
