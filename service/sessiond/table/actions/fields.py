"""Session fields: copy event data into them, record why the call ended."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sessiond.core.vocabulary import SESSION_FIELDS
from sessiond.table.argspec import Fields, MapOf, Registry, Scalar, Value, anything
from sessiond.table.model import ActionFn

if TYPE_CHECKING:
    from sessiond.core.types import Context

action = Registry[ActionFn]()


_SAVE = MapOf(
    Value(lambda k: k in SESSION_FIELDS, "session_field", "unknown session field(s) {key}"),
    Value(lambda v: isinstance(v, str), "event_field", "event field names must be strings"),
)


@action("save", _SAVE)
def save(ctx: Context, args: Any) -> None:
    """Copy event data into session fields; absent event fields leave the session unchanged."""
    for session_field, event_field in args.items():
        value = ctx.event.data.get(event_field)
        if value is not None and value != "":
            ctx.set(session_field, str(value))


@action("forget", Scalar(lambda v: isinstance(v, str) and v in SESSION_FIELDS, "session_field"))
def forget(ctx: Context, args: Any) -> None:
    """Empty a session field that is no longer needed (``forget: txn`` once the ACK ended
    the INVITE's transaction: ~220 bytes less per held call in Redis)."""
    ctx.set(args, "")


@action("end", Fields(optional={"code": anything("N|from_event"), "reason": anything("text")}))
def record_end(ctx: Context, args: Any) -> None:
    """Record why the call ended (``end_code``/``end_reason``), for ctl and for Ended events."""
    code = args.get("code", "from_event")
    if code == "from_event":
        code = ctx.event.data.get("code", "")
    ctx.set("end_code", str(code))
    ctx.set("end_reason", str(args.get("reason", ctx.event.data.get("reason", ctx.event.type))))
