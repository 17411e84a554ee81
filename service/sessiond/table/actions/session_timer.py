"""Session timers (RFC 4028): negotiate the interval and the refresher, run the timers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sessiond.sip import session_timer as st
from sessiond.table.actions.timers import timer_start, timer_stop
from sessiond.table.argspec import Fields, Registry, anything, integer
from sessiond.table.model import ActionFn

if TYPE_CHECKING:
    from sessiond.core.types import Context

action = Registry[ActionFn]()


def _session_timer(ctx: Context, interval: int, refresher: str) -> None:
    ctx.set("session_expires", str(interval) if interval else "")
    ctx.set("refresher", refresher)
    for name in ("RefreshDue", "SessionExpired"):
        timer_stop(ctx, {"event": name})
    if interval:
        event, seconds = st.due_in(interval, refresher)
        timer_start(ctx, {"event": event, "seconds": seconds})


_REQUEST = Fields(optional={"start": anything("bool"), "min_se": anything("seconds")}, none_ok=True)


@action("session_timer.request", _REQUEST)
def session_timer_request(ctx: Context, args: Any) -> None:
    """RFC 4028 9, as the UAS of this INVITE/re-INVITE/UPDATE: take the interval and the
    refresher it asks for (none: no session timer) and (re)start our timer; ``start: false``
    (an initial INVITE) leaves the start to :func:`session_timer_start` once answered."""
    data = ctx.event.data
    args = args or {}
    interval, refresher = st.negotiate_request(
        str(data.get("session_expires", "")),
        str(data.get("min_se", "")),
        str(data.get("supported", "")),
        int(args.get("min_se", st.MIN_SE)),
    )
    if args.get("start", True):
        _session_timer(ctx, interval, refresher)
    else:
        ctx.set("session_expires", str(interval) if interval else "")
        ctx.set("refresher", refresher)


@action("session_timer.start")
def session_timer_start(ctx: Context, args: Any) -> None:
    """Start the session timer negotiated earlier (the call is now established)."""
    if ctx.get("session_expires") and ctx.get("refresher"):
        _session_timer(ctx, int(ctx.get("session_expires")), ctx.get("refresher"))


@action("session_timer.response")
def session_timer_response(ctx: Context, args: Any) -> None:
    """RFC 4028 7.2, as the UAC: the 2xx to our request says the interval and who refreshes
    (no Session-Expires: the far end does not do session timers; ours stop)."""
    interval, refresher = st.negotiate_response(str(ctx.event.data.get("session_expires", "")))
    _session_timer(ctx, interval, refresher)


@action("session_timer.offer", Fields({"seconds": integer(st.MIN_SE)}))
def session_timer_offer(ctx: Context, args: Any) -> None:
    """Ask for session timers in our INVITE: Session-Expires ``seconds``, refresher left to
    the far end (RFC 4028 7.1)."""
    ctx.set("session_expires", str(args["seconds"]))
    ctx.set("refresher", "")
