"""Actions: the named effects a transition runs. Each one is real code that builds commands
for the edge, the media process or the application, or updates session fields.

A command is only data; the worker emits it after the transition is stored. Commands carry
everything the receiver needs (call ids, tags, URIs, SDP) so an edge or media process that
restarted can still execute them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sessiond.vocabulary import SESSION_FIELDS

if TYPE_CHECKING:
    from sessiond.engine import Context

ArgCheck = Callable[[Any], str | None]

# Session fields every SIP command carries, so the edge needs no state of its own.
_DIALOG_FIELDS = (
    "call_id",
    "local_tag",
    "remote_tag",
    "local_uri",
    "remote_uri",
    "remote_target",
    "route_set",
)


@dataclass(frozen=True, slots=True)
class ActionSpec:
    fn: Callable[[Context, Any], None]
    check: ArgCheck
    doc: str


def _no_args(args: Any) -> str | None:
    return None if args is None else "takes no arguments"


def _dialog(ctx: Context) -> dict[str, Any]:
    return {name: ctx.get(name) for name in _DIALOG_FIELDS}


def _next_cseq(ctx: Context) -> int:
    cseq = int(ctx.get("local_cseq") or "0") + 1
    ctx.set("local_cseq", str(cseq))
    return cseq


# --- SIP ---------------------------------------------------------------------------------


def _check_respond(args: Any) -> str | None:
    if not isinstance(args, dict) or set(args) - {"code", "reason", "sdp", "contacts"}:
        return "expects {code: N, reason: text?, sdp: bool?, contacts: from_event|[URI]?}"
    contacts = args.get("contacts", "from_event")
    if contacts != "from_event" and not (
        isinstance(contacts, list) and contacts and all(isinstance(c, str) for c in contacts)
    ):
        return "contacts must be 'from_event' or a list of URIs"
    code = args.get("code")
    if code != "from_event" and not (
        isinstance(code, int) and not isinstance(code, bool) and 101 <= code <= 699
    ):
        return "code must be 101-699 or 'from_event'"
    if "sdp" in args and not isinstance(args["sdp"], bool):
        return "sdp must be true or false"
    return None


def sip_respond(ctx: Context, args: Any) -> None:
    """Answer the pending INVITE (the server transaction in ``txn``)."""
    code = args["code"]
    if code == "from_event":
        code = ctx.event.data.get("code", 603)
    data: dict[str, Any] = {"code": code, "txn": ctx.get("txn"), **_dialog(ctx)}
    if "reason" in args:
        data["reason"] = args["reason"]
    if args.get("sdp"):
        data["sdp"] = ctx.get("local_sdp")
    if "contacts" in args:
        contacts = args["contacts"]
        if contacts == "from_event":
            contacts = ctx.event.data.get("contacts") or []
        if isinstance(contacts, str):
            contacts = [contacts]
        data["contacts"] = [str(c) for c in contacts]
    ctx.command("edge", "respond", data)


def _check_reply(args: Any) -> str | None:
    if not isinstance(args, dict) or set(args) - {"code", "reason"}:
        return "expects {code: N, reason: text?}"
    code = args.get("code")
    if not (isinstance(code, int) and not isinstance(code, bool) and 200 <= code <= 699):
        return "code must be a final status 200-699"
    return None


def sip_reply(ctx: Context, args: Any) -> None:
    """Answer the request that is this event (e.g. BYE), through the event's transaction."""
    data: dict[str, Any] = {
        "code": args["code"],
        "txn": ctx.event.data.get("txn", ""),
        **_dialog(ctx),
    }
    if "reason" in args:
        data["reason"] = args["reason"]
    ctx.command("edge", "respond", data)


def _check_invite(args: Any) -> str | None:
    return None if args is None or args == {"auth": True} else "takes no arguments or {auth: true}"


def sip_invite(ctx: Context, args: Any) -> None:
    """Send the initial INVITE with our SDP offer. ``{auth: true}``: send it again, CSeq + 1,
    same Call-ID and From tag, answering the 401/407 of this event: the edge computes the
    Authorization / Proxy-Authorization from its credentials (RFC 3261 22.2, 22.3)."""
    cseq = _next_cseq(ctx)
    ctx.set("invite_cseq", str(cseq))
    data = {"cseq": cseq, "sdp": ctx.get("local_sdp"), **_dialog(ctx)}
    if args:
        ctx.set("remote_tag", "")  # a 1xx may have given one: the new INVITE is out of dialog
        code = ctx.event.data.get("code")
        name = "www_authenticate" if code == 401 else "proxy_authenticate"
        data.update(remote_tag="", challenge_code=code, challenges=ctx.event.data.get(name) or [])
    ctx.command("edge", "invite", data)


def sip_ack(ctx: Context, args: Any) -> None:
    """ACK a 2xx (and each retransmission of it): same CSeq number as the INVITE."""
    ctx.command("edge", "ack", {"cseq": int(ctx.get("invite_cseq") or "1"), **_dialog(ctx)})


def sip_cancel(ctx: Context, args: Any) -> None:
    """CANCEL our pending INVITE (RFC 3261 section 9.1)."""
    ctx.command("edge", "cancel", {"cseq": int(ctx.get("invite_cseq") or "1"), **_dialog(ctx)})


def sip_bye(ctx: Context, args: Any) -> None:
    """End the dialog with BYE."""
    ctx.command("edge", "bye", {"cseq": _next_cseq(ctx), **_dialog(ctx)})


# --- media -------------------------------------------------------------------------------


def _check_media_create(args: Any) -> str | None:
    if args in ({"mode": "offer"}, {"mode": "answer"}):
        return None
    return "expects {mode: offer} or {mode: answer}"


def media_create(ctx: Context, args: Any) -> None:
    """Ask any media node for an RTP session: an offer, or the answer to the remote SDP."""
    data = {"media_id": ctx.get("media_id"), "mode": args["mode"]}
    if args["mode"] == "answer":
        data["remote_sdp"] = ctx.get("remote_sdp")
    ctx.command("media-pool", "create", data)


def media_update(ctx: Context, args: Any) -> None:
    """Give the media node the remote SDP (answer to our offer, or a new offer)."""
    data = {"media_id": ctx.get("media_id"), "remote_sdp": ctx.get("remote_sdp")}
    ctx.command("media", "update", data)


def media_destroy(ctx: Context, args: Any) -> None:
    """Free the RTP session (ports, files). Harmless if media was never created."""
    ctx.command("media", "destroy", {"media_id": ctx.get("media_id")})


def _media_command(name: str, keys: tuple[str, ...]) -> Callable[[Context, Any], None]:
    """An action that sends ``name`` to the session's media node. Its arguments come from
    the table (``{tone: 440}``) or, with no arguments, from the event (an app command)."""

    def action(ctx: Context, args: Any) -> None:
        source = args if isinstance(args, dict) else ctx.event.data
        data: dict[str, Any] = {"media_id": ctx.get("media_id")}
        for key in keys:
            if key in source:
                value = source[key]
                if isinstance(value, str):
                    value = value.replace("{sid}", ctx.get("sid"))
                data[key] = value
        ctx.command("media", name, data)

    action.__doc__ = f"media {name}: " + ", ".join(keys)
    return action


def _check_keys(allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> ArgCheck:
    def check(args: Any) -> str | None:
        if args is None:
            return None  # taken from the event at run time
        if not isinstance(args, dict) or set(args) - set(allowed):
            return f"expects {{{', '.join(allowed)}}} or no arguments"
        missing = [k for k in required if k not in args]
        return f"needs {', '.join(missing)}" if missing else None

    return check


def _check_play(args: Any) -> str | None:
    error = _check_keys(("tone", "file", "seconds", "loop"))(args)
    if error or args is None:
        return error
    if ("tone" in args) == ("file" in args):
        return "needs exactly one of tone (Hz) or file (a WAV path)"
    return None


def media_play_saved(ctx: Context, args: Any) -> None:
    """Play what the session saved (``play_tone`` Hz or ``play_file``, ``play_seconds``):
    the play-and-hang-up handler stores it on the decision and starts it once answered."""
    data: dict[str, Any] = {"media_id": ctx.get("media_id")}
    tone, file, seconds = ctx.get("play_tone"), ctx.get("play_file"), ctx.get("play_seconds")
    if tone:
        data["tone"] = float(tone)
    else:
        data["file"] = file
    if seconds:
        data["seconds"] = float(seconds)
    ctx.command("media", "play", data)


def media_bridge(ctx: Context, args: Any) -> None:
    """Relay audio between this session's leg and ``other`` (a media id, from the event);
    both legs must live on the same media node."""
    other = str(ctx.event.data.get("other", ""))
    if other and not other.endswith(".m"):
        other = f"{other}.m"  # a session id: its leg is <sid>.m
    ctx.command("media", "bridge", {"media_id": ctx.get("media_id"), "other": other})


_PLAY = ("tone", "file", "seconds", "loop")
_RECORD = ("path", "direction")
_DTMF = ("digits", "duration_ms")

# --- session fields ----------------------------------------------------------------------


def _check_save(args: Any) -> str | None:
    if not isinstance(args, dict) or not args:
        return "expects {session_field: event_field, ...}"
    unknown = sorted(k for k in args if k not in SESSION_FIELDS)
    if unknown:
        return f"unknown session field(s) {', '.join(unknown)}"
    if not all(isinstance(v, str) for v in args.values()):
        return "event field names must be strings"
    return None


def save(ctx: Context, args: Any) -> None:
    """Copy event data into session fields; absent event fields leave the session unchanged."""
    for session_field, event_field in args.items():
        value = ctx.event.data.get(event_field)
        if value is not None and value != "":
            ctx.set(session_field, str(value))


def _check_end(args: Any) -> str | None:
    if not isinstance(args, dict) or set(args) - {"code", "reason"}:
        return "expects {code: N|from_event, reason: text}"
    return None


def record_end(ctx: Context, args: Any) -> None:
    """Record why the call ended (``end_code``/``end_reason``), for ctl and for Ended events."""
    code = args.get("code", "from_event")
    if code == "from_event":
        code = ctx.event.data.get("code", "")
    ctx.set("end_code", str(code))
    ctx.set("end_reason", str(args.get("reason", ctx.event.data.get("reason", ctx.event.type))))


ACTIONS: dict[str, ActionSpec] = {
    "sip.respond": ActionSpec(sip_respond, _check_respond, "answer the pending INVITE"),
    "sip.reply": ActionSpec(sip_reply, _check_reply, "answer the request in this event"),
    "sip.invite": ActionSpec(sip_invite, _check_invite, "send the initial INVITE"),
    "sip.ack": ActionSpec(sip_ack, _no_args, "ACK a 2xx response"),
    "sip.cancel": ActionSpec(sip_cancel, _no_args, "CANCEL the pending INVITE"),
    "sip.bye": ActionSpec(sip_bye, _no_args, "send BYE"),
    "media.create": ActionSpec(media_create, _check_media_create, "create an RTP session"),
    "media.update": ActionSpec(media_update, _no_args, "give the media node the remote SDP"),
    "media.destroy": ActionSpec(media_destroy, _no_args, "free the RTP session"),
    "media.play": ActionSpec(_media_command("play", _PLAY), _check_play, "play a tone or WAV"),
    "media.stop_play": ActionSpec(_media_command("stop_play", ()), _no_args, "stop playing"),
    "media.record": ActionSpec(
        _media_command("record", _RECORD), _check_keys(_RECORD, ("path",)), "record to WAV"
    ),
    "media.stop_record": ActionSpec(
        _media_command("stop_record", ()), _no_args, "close the recording"
    ),
    "media.send_dtmf": ActionSpec(
        _media_command("send_dtmf", _DTMF), _check_keys(_DTMF, ("digits",)), "send DTMF"
    ),
    "media.play_saved": ActionSpec(
        media_play_saved, _no_args, "play the tone or file saved by play-and-hang-up"
    ),
    "media.bridge": ActionSpec(media_bridge, _no_args, "relay audio with the event's other leg"),
    "media.unbridge": ActionSpec(_media_command("unbridge", ()), _no_args, "stop relaying"),
    "save": ActionSpec(save, _check_save, "copy event data into session fields"),
    "end": ActionSpec(record_end, _check_end, "record the end code and reason"),
}
