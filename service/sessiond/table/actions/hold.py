"""Hold state (field ``hold``: local, remote, both) and the outcome of our re-offers."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from sessiond.table.actions.timers import timer_start
from sessiond.table.argspec import Registry
from sessiond.table.model import ActionFn

if TYPE_CHECKING:
    from sessiond.core.types import Context

action = Registry[ActionFn]()


def holding(ctx: Context) -> bool:
    return ctx.get("hold") in ("local", "both")


def _set_hold(ctx: Context, local: bool, remote: bool) -> None:
    ctx.set(
        "hold", "both" if local and remote else "local" if local else "remote" if remote else ""
    )


@action("hold.apply")
def hold_apply(ctx: Context, args: Any) -> None:
    """Our re-INVITE succeeded: a hold or resume takes effect (field ``hold``)."""
    why = ctx.get("reoffer")
    remote = ctx.get("hold") in ("remote", "both")
    if why in ("hold", "resume"):
        _set_hold(ctx, why == "hold", remote)
    ctx.set("reoffer", "")


@action("reoffer.failed")
def reoffer_failed(ctx: Context, args: Any) -> None:
    """Our re-offer failed (media or a final error): the session stays as it was."""
    ctx.set("reoffer", "")


@action("hold.remote")
def hold_remote(ctx: Context, args: Any) -> None:
    """The far end's offer put us on hold, or off it (the event's ``held``)."""
    _set_hold(ctx, holding(ctx), bool(ctx.event.data.get("held")))


@action("sip.glare_retry")
def glare_retry(ctx: Context, args: Any) -> None:
    """After 491 to our re-INVITE, retry after RFC 3261 14.1's delay: 2.1-4 s when we chose
    the Call-ID (we placed the call), else 0-2 s; pseudo-random from the event id so a
    redelivered event decides the same."""
    digest = hashlib.blake2b(ctx.get("_event_id").encode(), digest_size=2).digest()
    fraction = int.from_bytes(digest, "big") / 65535
    seconds = 2.1 + 1.9 * fraction if ctx.get("role") == "UAC" else 2.0 * fraction
    timer_start(ctx, {"event": "ReinviteRetry", "seconds": max(seconds, 0.05)})
