"""Other sessions: events to a session named by a field, and new calls as new sessions."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from sessiond.core.ids import call_tag
from sessiond.table.argspec import Fields, Registry, Value, anything, flag, name, session_field
from sessiond.table.model import ActionFn

if TYPE_CHECKING:
    from sessiond.core.types import Context

action = Registry[ActionFn]()


def _names(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(f, str) for f in value)


def _values(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(v, str | int) and not isinstance(v, bool) for v in value.values()
    )


_SEND = Fields(
    {"event": name()},
    {
        "to": name("session_field"),
        "data": Value(_names, "[event fields]", "data must list event field names"),
        "values": Value(_values, "{}", "values must map field names to strings or numbers"),
    },
)


@action("session.send", _SEND)
def session_send(ctx: Context, args: Any) -> None:
    """Send ``event`` to the session named by session field ``to`` (default ``peer``), with
    the listed fields of the current event, then the fixed ``values``. Nothing happens when
    that field is empty."""
    sid = ctx.get(args.get("to", "peer"))
    if not sid:
        return
    data = {k: ctx.event.data[k] for k in args.get("data", []) if k in ctx.event.data}
    data.update(args.get("values", {}))
    data["from_sid"] = ctx.get("sid")
    ctx.command("session", args["event"], {"sid": sid, "data": data})


def uri_of(text: str) -> str:
    """The URI in a From/To/Contact value: inside <...>, else up to the first ';'."""
    if "<" in text and ">" in text:
        return text[text.index("<") + 1 : text.index(">")].strip()
    return text.split(";", 1)[0].strip()


_CALL = Fields(
    {"save_as": session_field()},
    {
        "target": anything("event_field"),
        "target_field": session_field(),
        "from": session_field(),
        "pin_media": flag(),
        "table": anything("name"),
        "srtp_field": session_field(),
        "to_field": session_field(),
        "edge_field": session_field(),
        "destination_field": session_field(),
    },
    rules=(
        (
            lambda args: not {"target", "target_field"} <= set(args),
            "target (an event field) and target_field (a session field) exclude each other",
        ),
    ),
)


@action("session.call", _CALL)
def session_call(ctx: Context, args: Any) -> None:
    """Place a new outgoing call as a new session (a MakeCall event for it) to the URI in the
    event field ``target`` (default ``target``) or the session field ``target_field``,
    running ``table`` (default: this session's table), From the URI in session field
    ``from`` (default ``local_uri``). ``pin_media: true`` passes this session's media node,
    so the new leg is created there (see :func:`media_create`'s ``pinned``); the SRTP
    policy in session field ``srtp_field``, when set, becomes the new leg's. When set, the
    session fields ``to_field`` (the To URI, else the target), ``edge_field`` (the edge that
    sends its requests, else this session's) and ``destination_field`` (``TRANSPORT
    host:port`` its requests are sent to whatever the URI: a registered phone's binding)
    shape a call to a registered user. A bypassed session (field ``media`` is ``bypass``)
    passes that on with its ``remote_sdp`` (the caller's offer) as the new leg's offer, and
    no media node. The new session's ``peer`` is this session; its id goes in field
    ``save_as``.
    Call-ID, tag and session id derive from this event's id: a redelivered event places the
    same call, which the new session refuses as a duplicate."""
    if "target_field" in args:
        target = ctx.get(args["target_field"])
    else:
        target = str(ctx.event.data.get(args.get("target", "target"), ""))
    to = ("to_field" in args and ctx.get(args["to_field"])) or target
    edge = "edge_field" in args and ctx.get(args["edge_field"]) or ""
    destination = "destination_field" in args and ctx.get(args["destination_field"]) or ""
    ctx.set(args["save_as"], place_call(ctx, args, target, to, edge, destination))


def place_call(
    ctx: Context, args: Any, target: str, to: str, edge: str, destination: str, branch: int = 0
) -> str:
    """Send MakeCall for a new outgoing session to ``target`` (:func:`session_call`'s
    ``from``, ``table``, ``pin_media`` and ``srtp_field`` from ``args``); its session id.
    ``branch`` N > 0 salts the derived ids: the Nth of several calls one event places."""
    replaces = str(ctx.event.data.get("replaces", ""))
    salt = ctx.get("_event_id") + (f"/{branch}" if branch else "")
    seed = hashlib.blake2b(salt.encode(), digest_size=12).hexdigest()
    call_id = f"{seed}@sessiond"
    sid = f"{call_tag(call_id)}-{seed[:12]}"
    data = {
        "target": target,
        "to": to or target,
        "from": uri_of(ctx.get(args.get("from", "local_uri"))),
        "call_id": call_id,
        "local_tag": seed[12:22],
        "edge": edge or ctx.get("edge"),
        "table": args.get("table") or ctx.get("table"),
        "peer": ctx.get("sid"),
    }
    if replaces:  # an attended transfer: the new call replaces the target's other dialog
        data["replaces"] = replaces
    if ctx.get("media") == "bypass":  # no media node: the caller's offer goes as it is
        data["media"] = "bypass"
        if ctx.get("remote_sdp"):
            data["sdp"] = ctx.get("remote_sdp")
    elif args.get("pin_media") and ctx.get("media_node"):
        data["media_node"] = ctx.get("media_node")
    if "srtp_field" in args and ctx.get(args["srtp_field"]):
        data["srtp"] = ctx.get(args["srtp_field"])
    if destination:
        data["destination"] = destination
    ctx.command("session", "MakeCall", {"sid": sid, "data": data})
    return sid


@action("session.next_target", Fields({}, {"take": flag()}))
def session_next_target(ctx: Context, args: Any) -> None:
    """The forward's remaining targets (session field ``forward_next``: a JSON list of
    ``{target, edge, destination}``, a registered user's other contacts by q): with
    ``take: true`` the first becomes ``forward_target``/``forward_edge``/
    ``forward_destination``; condition ``more_targets`` then says whether one remains."""
    try:
        remaining = json.loads(ctx.get("forward_next") or "[]")
    except ValueError:
        remaining = []
    if not isinstance(remaining, list):
        remaining = []
    remaining = [t for t in remaining if isinstance(t, dict) and isinstance(t.get("target"), str)]
    if args.get("take") and remaining:
        first = remaining.pop(0)
        ctx.set("forward_target", first["target"])
        ctx.set("forward_edge", str(first.get("edge") or ""))
        ctx.set("forward_destination", str(first.get("destination") or ""))
        ctx.set("forward_next", json.dumps(remaining, separators=(",", ":")))
    ctx.set("cond.more_targets", "1" if remaining else "")
