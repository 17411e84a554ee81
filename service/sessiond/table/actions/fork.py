"""Forking: a forwarded call that rings several targets at once (RFC 3261 16.6, 16.7).

The inbound leg of the gateway table keeps its fork in its own session hash, so any worker
continues it and a kill -9 loses nothing:

- ``forward_target`` / ``forward_edge`` / ``forward_destination``: the first target of the
  group being placed; ``forward_next``: the targets after it (JSON, in order), each with
  ``"parallel": true`` when it rings together with the target before it (a group: a
  registered user's contacts of equal q, or a ring-all hunt group), and ``to`` when its To
  is not ``forward_to`` (another member's AOR);
- ``branches``: the outbound legs (session ids, JSON) of the group that rings now, the
  ones that have not failed, been cancelled or answered;
- ``fork_best``: the best final response of the branches that failed so far (16.7: the
  lowest class; the first of that class).

A branch tells the inbound leg what happened with Peer* events carrying its ``from_sid``;
the guard ``branch`` (:mod:`sessiond.table.guards`) says whether that is a live branch,
the last one, or a failure beaten by an earlier one. A session written before ``branches``
existed has its one outbound leg in ``peer``, which then counts as the fork's one branch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sessiond.table.actions.sessions import place_call
from sessiond.table.argspec import Fields, NoArgs, Registry, anything, flag, session_field
from sessiond.table.model import ActionFn

if TYPE_CHECKING:
    from sessiond.core.types import Context

action = Registry[ActionFn]()


def live_branches(session: Mapping[str, str]) -> list[str]:
    """The session ids of the fork's live branches (``peer`` for a session that predates
    ``branches``)."""
    raw = session.get("branches") or ""
    if not raw:
        peer = session.get("peer") or ""
        return [peer] if peer else []
    try:
        sids = json.loads(raw)
    except ValueError:
        return []
    return [s for s in sids if isinstance(s, str)] if isinstance(sids, list) else []


def rank(code: int) -> int:
    """RFC 3261 16.7: a lower rank is a better final response to pass on when every branch
    failed (6xx first; else the lowest class)."""
    return 0 if 600 <= code <= 699 else code // 100


def outdone(session: Mapping[str, str], code: int) -> bool:
    """An earlier branch's failure is a better final response than ``code``."""
    best = session.get("fork_best") or ""
    return best.isdigit() and rank(int(best)) < rank(code)


def _code(ctx: Context) -> int:
    value = ctx.event.data.get("code", 0)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _set_branches(ctx: Context, sids: list[str]) -> None:
    ctx.set("branches", json.dumps(sids, separators=(",", ":")))


def _targets(raw: str) -> list[dict[str, Any]]:
    try:
        found = json.loads(raw or "[]")
    except ValueError:
        return []
    if not isinstance(found, list):
        return []
    return [t for t in found if isinstance(t, dict) and isinstance(t.get("target"), str)]


_CALL = Fields(
    {},
    {
        "from": session_field(),
        "table": anything("name"),
        "pin_media": flag(),
        "srtp_field": session_field(),
        "take": flag(),
    },
)


@action("fork.call", _CALL)
def fork_call(ctx: Context, args: Any) -> None:
    """Place the group that starts at ``forward_target`` (with ``take: true``: at the first
    of ``forward_next``, which becomes ``forward_target``): one outbound leg per target of
    the group, each a :func:`~sessiond.table.actions.sessions.place_call` (``from``,
    ``table``, ``pin_media``, ``srtp_field`` as in ``session.call``; To is the entry's
    ``to``, else ``forward_to``, else the target), whose session ids become ``branches``,
    the first also ``peer``.
    Condition ``more_targets`` then says whether a group remains after this one."""
    remaining = _targets(ctx.get("forward_next"))
    default_to = ctx.get("forward_to")
    first: dict[str, Any] = {
        "target": ctx.get("forward_target"),
        "edge": ctx.get("forward_edge"),
        "destination": ctx.get("forward_destination"),
    }
    if args.get("take") and remaining:
        first = remaining.pop(0)
        ctx.set("forward_target", first["target"])
        ctx.set("forward_edge", str(first.get("edge") or ""))
        ctx.set("forward_destination", str(first.get("destination") or ""))
    group = [first]
    while remaining and remaining[0].get("parallel") is True:
        group.append(remaining.pop(0))
    ctx.set("forward_next", json.dumps(remaining, separators=(",", ":")))
    sids = [
        place_call(
            ctx,
            args,
            t["target"],
            str(t.get("to") or default_to or t["target"]),
            str(t.get("edge") or ""),
            str(t.get("destination") or ""),
            index,
        )
        for index, t in enumerate(group)
    ]
    _set_branches(ctx, sids)
    ctx.set("peer", sids[0])
    ctx.set("cond.more_targets", "1" if remaining else "")


@action("fork.cancel", NoArgs("the live branches, less the event's own"))
def fork_cancel(ctx: Context, args: Any) -> None:
    """PeerCancel to every live branch but the one this event came from (a 2xx's winner, a
    6xx's sender: it has its final response); no branch remains. A branch that has
    answered already gets it too and ends its dialog with ACK and BYE (the gateway table's
    UAC entries), so a second 2xx never reaches the caller."""
    sender = str(ctx.event.data.get("from_sid", ""))
    own = ctx.get("sid")
    for sid in live_branches(_view(ctx)):
        if sid != sender:
            ctx.command("session", "PeerCancel", {"sid": sid, "data": {"from_sid": own}})
    _set_branches(ctx, [])


@action("fork.answered", NoArgs("the answering branch is the event's from_sid"))
def fork_answered(ctx: Context, args: Any) -> None:
    """The branch this event came from answered first: it becomes ``peer`` (bridged,
    answered to the caller), every other live branch gets PeerCancel (:func:`fork_cancel`)."""
    winner = str(ctx.event.data.get("from_sid", "")) or ctx.get("peer")
    fork_cancel(ctx, None)
    ctx.set("peer", winner)


@action("fork.early", NoArgs("the branch is the event's from_sid"))
def fork_early(ctx: Context, args: Any) -> None:
    """The branch this event came from is the caller's one early-media source: ``peer``
    (bridge it with ``media.bridge: {with: peer}``); condition ``early_source`` set."""
    ctx.set("peer", str(ctx.event.data.get("from_sid", "")) or ctx.get("peer"))
    ctx.set("cond.early_source", "1")


@action("fork.failed", NoArgs("the failed branch is the event's from_sid, its code the event's"))
def fork_failed(ctx: Context, args: Any) -> None:
    """The branch this event came from failed: it is no longer live; its code is kept in
    ``fork_best`` when it is the best failure yet (RFC 3261 16.7); the early-media source
    cleared when it was this branch (the next group's may take its place)."""
    sender = str(ctx.event.data.get("from_sid", ""))
    view = _view(ctx)
    _set_branches(ctx, [s for s in live_branches(view) if s != sender])
    code = _code(ctx)
    best = ctx.get("fork_best")
    if 300 <= code <= 699 and not (best.isdigit() and rank(int(best)) <= rank(code)):
        ctx.set("fork_best", str(code))
    if sender and sender == ctx.get("peer"):
        ctx.set("cond.early_source", "")


@action("fork.verdict", NoArgs("fork_best"))
def fork_verdict(ctx: Context, args: Any) -> None:
    """Every branch failed and an earlier one's failure is the best (``fork_best``): send
    this session a PeerFailed with that code, from itself, which the table answers the
    caller with as it answers any branch's failure."""
    own = ctx.get("sid")
    data = {"code": int(ctx.get("fork_best")), "from_sid": own, "reason": "best of the fork"}
    ctx.command("session", "PeerFailed", {"sid": own, "data": data})


def _view(ctx: Context) -> Mapping[str, str]:
    """The fields :func:`live_branches` reads, as the action sees them now."""
    return {"branches": ctx.get("branches"), "peer": ctx.get("peer")}
