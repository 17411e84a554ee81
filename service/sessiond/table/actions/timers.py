"""Named timers: they outlive states, and a restart or stop makes the earlier one stale."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sessiond.table.argspec import Either, Fields, Registry, Value, anything, name
from sessiond.table.model import ActionFn

if TYPE_CHECKING:
    from sessiond.core.types import Context

action = Registry[ActionFn]()


def _timer_member(ctx: Context, event: str) -> dict[str, Any]:
    return {"sid": ctx.get("sid"), "event": event, "epoch": ctx.get(f"timer.{event}")}


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and value > 0


_TIMER = Either(
    (
        Fields({"event": name(), "seconds": Value(_positive, "N", "{key} must be > 0")}),
        Fields(
            {"event": name(), "field": name("F")},
            {"scale": anything("x"), "margin": anything("s")},
        ),
    )
)


@action("timer.start", _TIMER)
def timer_start(ctx: Context, args: Any) -> None:
    """(Re)start the named timer ``event``: fires once after ``seconds``, or after the number
    in session field ``field`` times ``scale`` minus ``margin``. It outlives states (unlike
    a state timeout); restarting or :func:`timer_stop` makes the earlier one stale."""
    event = args["event"]
    if ctx.get(f"timer.{event}"):
        ctx.command("timer", "cancel", _timer_member(ctx, event))
    if "seconds" in args:
        seconds = float(args["seconds"])
    else:
        try:
            seconds = float(ctx.get(args["field"])) * float(args.get("scale", 1))
        except ValueError:
            return  # the field is not set: no timer
        seconds -= float(args.get("margin", 0))
    ctx.set(f"timer.{event}", f"t{int(ctx.get('version') or '0') + 1}")
    ctx.command("timer", "arm", {**_timer_member(ctx, event), "due": ctx.now + max(seconds, 0.1)})


@action("timer.stop", Fields({"event": name()}))
def timer_stop(ctx: Context, args: Any) -> None:
    """Cancel the named timer ``event`` (if running)."""
    event = args["event"]
    if ctx.get(f"timer.{event}"):
        ctx.command("timer", "cancel", _timer_member(ctx, event))
        ctx.set(f"timer.{event}", "")
