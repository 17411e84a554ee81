"""Actions: the named effects a transition runs. Each one is real code that builds commands
for the edge, the media process or the application, or updates session fields.

A command is only data; the worker emits it after the transition is stored. Commands carry
everything the receiver needs (call ids, tags, URIs, SDP) so an edge or media process that
restarted can still execute them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from sessiond.core.vocabulary import SESSION_FIELDS
from sessiond.sip import session_timer as st
from sessiond.sip.status import reason_phrase
from sessiond.store.keys import call_tag

DTMF_CHARS = "0123456789*#ABCD"

if TYPE_CHECKING:
    from sessiond.core.types import Context

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
    headers = st.response_headers(ctx.get) if 200 <= int(code) < 300 else []
    if 100 < int(code) < 200 and "100rel" in ctx.get("remote_require"):
        rseq = int(ctx.get("rseq") or "0") + 1  # RFC 3262 3: reliable, retransmitted
        ctx.set("rseq", str(rseq))  # by the edge until the PRACK
        headers += [["Require", "100rel"], ["RSeq", str(rseq)]]
        data["reliable"] = True
    if int(code) == 422:
        headers.append(["Min-SE", str(st.MIN_SE)])
    if headers:
        data["headers"] = headers
    if "contacts" in args:
        contacts = args["contacts"]
        if contacts == "from_event":
            contacts = ctx.event.data.get("contacts") or []
        if isinstance(contacts, str):
            contacts = [contacts]
        data["contacts"] = [str(c) for c in contacts]
    ctx.command("edge", "respond", data)
    if args.get("sdp") and ctx.get("media_node"):  # our answer is out: the leg may send
        ctx.command("media", "answered", {"media_id": ctx.get("media_id")})


def _check_reply(args: Any) -> str | None:
    if not isinstance(args, dict) or set(args) - {"code", "reason", "sdp", "retry_after"}:
        return "expects {code: N, reason: text?, sdp: bool?, retry_after: seconds?}"
    code = args.get("code")
    if not (isinstance(code, int) and not isinstance(code, bool) and 200 <= code <= 699):
        return "code must be a final status 200-699"
    if "sdp" in args and not isinstance(args["sdp"], bool):
        return "sdp must be true or false"
    return None


def sip_reply(ctx: Context, args: Any) -> None:
    """Answer the request that is this event (BYE, re-INVITE, UPDATE, REFER, INFO...) through
    the event's transaction; a re-INVITE's or UPDATE's ``txn`` saved earlier when the answer
    waits for the media node (``sdp: true`` sends our current SDP)."""
    txn = ctx.event.data.get("txn") or ctx.get("txn")
    data: dict[str, Any] = {"code": args["code"], "txn": txn, **_dialog(ctx)}
    if "reason" in args:
        data["reason"] = args["reason"]
    if args.get("sdp"):
        data["sdp"] = ctx.get("local_sdp")
    headers = st.response_headers(ctx.get) if 200 <= args["code"] < 300 else []
    if "retry_after" in args:
        headers.append(["Retry-After", str(args["retry_after"])])
    if headers:
        data["headers"] = headers
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
    headers = st.request_headers(ctx.get)
    if ctx.get("replaces"):
        headers.append(["Replaces", ctx.get("replaces")])
    if headers:
        data["headers"] = headers
    ctx.command("edge", "invite", data)


def sip_ack(ctx: Context, args: Any) -> None:
    """ACK a 2xx (and each retransmission of it): the CSeq number of the INVITE it answers
    (the initial INVITE or a re-INVITE)."""
    data = ctx.event.data
    cseq = data.get("cseq") if data.get("method") == "INVITE" else None
    ctx.command("edge", "ack", {"cseq": int(cseq or ctx.get("invite_cseq") or "1"), **_dialog(ctx)})


def _in_dialog(ctx: Context, method: str, **extra: Any) -> int:
    cseq = _next_cseq(ctx)
    ctx.command("edge", "request", {"method": method, "cseq": cseq, **_dialog(ctx), **extra})
    return cseq


def sip_reinvite(ctx: Context, args: Any) -> None:
    """Send a re-INVITE (RFC 3261 14.1) offering our current SDP (``local_sdp``)."""
    headers = st.request_headers(ctx.get)
    extra: dict[str, Any] = {"sdp": ctx.get("local_sdp")}
    if headers:
        extra["headers"] = headers
    ctx.set("reinvite_cseq", str(_in_dialog(ctx, "INVITE", **extra)))


def _check_refer(args: Any) -> str | None:
    if args is None:
        return None
    return "takes no arguments (the target comes from the event's 'target')"


def sip_refer(ctx: Context, args: Any) -> None:
    """Ask the far end to call ``target`` (RFC 3515): REFER with Refer-To and Referred-By.
    The event's ``replaces`` (a Replaces header value, RFC 3891) makes it an attended
    transfer: the far end's INVITE will replace that dialog."""
    target = str(ctx.event.data.get("target", ""))
    replaces = str(ctx.event.data.get("replaces", ""))
    refer_to = f"<{target}>"
    if replaces:
        refer_to = f"<{target}?Replaces={quote(replaces, safe='')}>"
    headers = [["Refer-To", refer_to], ["Referred-By", f"<{ctx.get('local_uri')}>"]]
    ctx.set("transfer_target", target)
    ctx.set("refer_cseq", str(_in_dialog(ctx, "REFER", headers=headers)))


def _check_notify(args: Any) -> str | None:
    if not isinstance(args, dict) or set(args) != {"code"}:
        return "expects {code: N|from_event}"
    code = args["code"]
    if code != "from_event" and not (isinstance(code, int) and 100 <= code <= 699):
        return "code must be 100-699 or 'from_event'"
    return None


def sip_notify(ctx: Context, args: Any) -> None:
    """Report a REFER's progress (RFC 3515 2.4.4): NOTIFY, Event: refer, with the status line
    of the new call as message/sipfrag; a final status terminates the subscription."""
    code = args["code"]
    if code == "from_event":
        code = ctx.event.data.get("code", 503)
    code = int(code)
    reason = reason_phrase(code)
    state = "active;expires=60" if code < 200 else "terminated;reason=noresource"
    refer = ctx.get("refer_cseq")
    headers = [
        ["Event", f"refer;id={refer}" if refer else "refer"],
        ["Subscription-State", state],
    ]
    body = f"SIP/2.0 {code} {reason}\r\n"
    _in_dialog(
        ctx, "NOTIFY", headers=headers, body=body, content_type="message/sipfrag;version=2.0"
    )


def sip_info_dtmf(ctx: Context, args: Any) -> None:
    """Send the first of the digits waiting in ``info_digits`` as SIP INFO
    (application/dtmf-relay, RFC 6086); the next goes when this one is answered (or timed
    out), so the far end gets them in order. ``info_pending`` is set while one is out."""
    digits = ctx.get("info_digits")
    if not digits:
        if ctx.get("info_pending"):
            ctx.set("info_pending", "")
        return
    ctx.set("info_digits", digits[1:])
    ctx.set("info_pending", "1")
    duration = ctx.get("info_duration") or "160"
    body = f"Signal={digits[0]}\r\nDuration={duration}\r\n"
    _in_dialog(ctx, "INFO", body=body, content_type="application/dtmf-relay")


def queue_info_dtmf(ctx: Context, args: Any) -> None:
    """Queue the event's ``digits`` (and ``duration_ms``) for :func:`sip_info_dtmf`."""
    digits = "".join(c for c in str(ctx.event.data.get("digits", "")).upper() if c in DTMF_CHARS)
    busy = ctx.get("info_pending") == "1"
    ctx.set("info_digits", ctx.get("info_digits") + digits)
    duration = ctx.event.data.get("duration_ms")
    if isinstance(duration, int) and 40 <= duration <= 5000:
        ctx.set("info_duration", str(duration))
    if not busy:
        sip_info_dtmf(ctx, None)


def sip_cancel(ctx: Context, args: Any) -> None:
    """CANCEL our pending INVITE (RFC 3261 section 9.1)."""
    ctx.command("edge", "cancel", {"cseq": int(ctx.get("invite_cseq") or "1"), **_dialog(ctx)})


def sip_prack(ctx: Context, args: Any) -> None:
    """Acknowledge a reliable provisional response (RFC 3262 7.2): PRACK with RAck."""
    data = ctx.event.data
    rack = f"{data.get('rseq', '').strip()} {data.get('cseq', '')} INVITE"
    _in_dialog(ctx, "PRACK", headers=[["RAck", rack]])


def sip_bye(ctx: Context, args: Any) -> None:
    """End the dialog with BYE."""
    ctx.command("edge", "bye", {"cseq": _next_cseq(ctx), **_dialog(ctx)})


# --- media -------------------------------------------------------------------------------


def _check_media_create(args: Any) -> str | None:
    if not isinstance(args, dict) or set(args) - {"mode", "pinned"}:
        return "expects {mode: offer|answer, pinned: bool?}"
    if args.get("mode") not in ("offer", "answer"):
        return "expects {mode: offer} or {mode: answer}"
    if not isinstance(args.get("pinned", False), bool):
        return "pinned must be true or false"
    return None


def media_create(ctx: Context, args: Any) -> None:
    """Ask any media node for an RTP session: an offer, or the answer to the remote SDP.
    ``pinned: true`` asks the node already in ``media_node`` instead (a B2BUA's outbound
    leg, created on its peer's node so that the two legs can be bridged)."""
    data = {"media_id": ctx.get("media_id"), "mode": args["mode"]}
    if args["mode"] == "answer":  # quiet until our answer is out (sip.respond with sdp)
        data["remote_sdp"] = ctx.get("remote_sdp")
        data["quiet"] = True
    pinned = args.get("pinned") and ctx.get("media_node")
    ctx.command("media" if pinned else "media-pool", "create", data)


def _origin(sdp: str) -> str:
    """The value of the o= line of an SDP body ("" if it has none)."""
    for line in sdp.splitlines():
        if line.startswith("o="):
            return line[2:].strip()
    return ""


def media_relocate(ctx: Context, args: Any) -> None:
    """Ask any media node (the pool) for a new leg to replace one on a lost node: an offer
    that continues our SDP origin (same o= username and session id, a higher version, RFC
    3264 8), sendonly while we hold the far end. ``media_node`` is cleared until the new
    node's MediaReady names it; field ``reoffer`` is ``relocate`` until the re-INVITE ends."""
    data = {"media_id": ctx.get("media_id"), "mode": "offer"}
    data["direction"] = "sendonly" if _holding(ctx) else "sendrecv"
    origin = _origin(ctx.get("local_sdp"))
    if origin:
        data["origin"] = origin
    ctx.set("media_node", "")
    ctx.set("reoffer", "relocate")
    ctx.command("media-pool", "create", data)


def _check_update(args: Any) -> str | None:
    if args is None or args == {"answer": True}:
        return None
    return "expects no arguments or {answer: true}"


def media_update(ctx: Context, args: Any) -> None:
    """Give the media node the remote SDP (answer to our offer, or a new offer: answered
    sendonly while we hold the far end). ``{answer: true}``: it answers our last offer even
    if an earlier answer was taken (early media in a 183, then the 2xx)."""
    data: dict[str, Any] = {"media_id": ctx.get("media_id"), "remote_sdp": ctx.get("remote_sdp")}
    if _holding(ctx):
        data["direction"] = "sendonly"
    if args:
        data["answer"] = True
    ctx.command("media", "update", data)


_REOFFERS = ("hold", "resume", "refresh", "again", "offerless")


def _check_reoffer(args: Any) -> str | None:
    if isinstance(args, dict) and set(args) == {"why"} and args["why"] in _REOFFERS:
        return None
    return "expects {why: " + "|".join(_REOFFERS) + "}"


def _holding(ctx: Context) -> bool:
    return ctx.get("hold") in ("local", "both")


def media_reoffer(ctx: Context, args: Any) -> None:
    """Ask the media node for a new offer on the existing leg (MediaReady with the SDP).
    ``hold`` offers sendonly (RFC 3264 8.4), ``resume`` sendrecv, ``refresh`` and
    ``offerless`` (an offer for a re-INVITE without one) keep the current direction,
    ``again`` repeats the re-offer a glare (491) interrupted. The reason stays in field
    ``reoffer`` until :func:`hold_apply` or :func:`reoffer_failed`."""
    why = args["why"]
    if why == "again":
        why = ctx.get("reoffer") or "refresh"
    if why in ("hold", "resume", "refresh"):
        ctx.set("reoffer", why)
    hold = why == "hold" or (why != "resume" and _holding(ctx))
    data = {"media_id": ctx.get("media_id"), "direction": "sendonly" if hold else "sendrecv"}
    ctx.command("media", "reoffer", data)


def _set_hold(ctx: Context, local: bool, remote: bool) -> None:
    ctx.set(
        "hold", "both" if local and remote else "local" if local else "remote" if remote else ""
    )


def hold_apply(ctx: Context, args: Any) -> None:
    """Our re-INVITE succeeded: a hold or resume takes effect (field ``hold``)."""
    why = ctx.get("reoffer")
    remote = ctx.get("hold") in ("remote", "both")
    if why in ("hold", "resume"):
        _set_hold(ctx, why == "hold", remote)
    ctx.set("reoffer", "")


def reoffer_failed(ctx: Context, args: Any) -> None:
    """Our re-offer failed (media or a final error): the session stays as it was."""
    ctx.set("reoffer", "")


def hold_remote(ctx: Context, args: Any) -> None:
    """The far end's offer put us on hold, or off it (the event's ``held``)."""
    _set_hold(ctx, _holding(ctx), bool(ctx.event.data.get("held")))


def glare_retry(ctx: Context, args: Any) -> None:
    """After 491 to our re-INVITE, retry after RFC 3261 14.1's delay: 2.1-4 s when we chose
    the Call-ID (we placed the call), else 0-2 s; pseudo-random from the event id so a
    redelivered event decides the same."""
    digest = hashlib.blake2b(ctx.get("_event_id").encode(), digest_size=2).digest()
    fraction = int.from_bytes(digest, "big") / 65535
    seconds = 2.1 + 1.9 * fraction if ctx.get("role") == "UAC" else 2.0 * fraction
    timer_start(ctx, {"event": "ReinviteRetry", "seconds": max(seconds, 0.05)})


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


def _check_bridge(args: Any) -> str | None:
    if args is None:
        return None
    if isinstance(args, dict) and set(args) == {"with"} and args["with"] in SESSION_FIELDS:
        return None
    return "expects no arguments (the event's other) or {with: session_field}"


def media_bridge(ctx: Context, args: Any) -> None:
    """Relay audio between this session's leg and ``other`` (a media id, from the event), or
    the leg of the session named by field ``with`` (``{with: peer}``); both legs must live
    on the same media node."""
    if isinstance(args, dict):
        other = ctx.get(args["with"])
    else:
        other = str(ctx.event.data.get("other", ""))
    if other and not other.endswith(".m"):
        other = f"{other}.m"  # a session id: its leg is <sid>.m
    ctx.command("media", "bridge", {"media_id": ctx.get("media_id"), "other": other})


# --- other sessions and timers --------------------------------------------------------------


def _check_send(args: Any) -> str | None:
    allowed = {"to", "event", "data", "values"}
    if not isinstance(args, dict) or set(args) - allowed or "event" not in args:
        return "expects {to: session_field, event: Name, data: [event fields]?, values: {}?}"
    if not isinstance(args.get("to", "peer"), str) or not isinstance(args["event"], str):
        return "to and event must be names"
    fields = args.get("data", [])
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        return "data must list event field names"
    values = args.get("values", {})
    if not isinstance(values, dict) or not all(
        isinstance(v, str | int) and not isinstance(v, bool) for v in values.values()
    ):
        return "values must map field names to strings or numbers"
    return None


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


def _check_call(args: Any) -> str | None:
    allowed = {"target", "target_field", "from", "pin_media", "table", "save_as"}
    if not isinstance(args, dict) or set(args) - allowed or not args.get("save_as"):
        return (
            "expects {save_as: session_field, target: event_field? | target_field: "
            "session_field?, from: session_field?, pin_media: bool?, table: name?}"
        )
    if "target" in args and "target_field" in args:
        return "target (an event field) and target_field (a session field) exclude each other"
    for key in ("save_as", "target_field", "from"):
        if key in args and args[key] not in SESSION_FIELDS:
            return f"{key}: unknown session field {args[key]!r}"
    if not isinstance(args.get("pin_media", False), bool):
        return "pin_media must be true or false"
    return None


def uri_of(text: str) -> str:
    """The URI in a From/To/Contact value: inside <...>, else up to the first ';'."""
    if "<" in text and ">" in text:
        return text[text.index("<") + 1 : text.index(">")].strip()
    return text.split(";", 1)[0].strip()


def session_call(ctx: Context, args: Any) -> None:
    """Place a new outgoing call as a new session (a MakeCall event for it) to the URI in the
    event field ``target`` (default ``target``) or the session field ``target_field``,
    running ``table`` (default: this session's table), From the URI in session field
    ``from`` (default ``local_uri``). ``pin_media: true`` passes this session's media node,
    so the new leg is created there (see :func:`media_create`'s ``pinned``). The new
    session's ``peer`` is this session; its id goes in field ``save_as``.
    Call-ID, tag and session id derive from this event's id: a redelivered event places the
    same call, which the new session refuses as a duplicate."""
    if "target_field" in args:
        target = ctx.get(args["target_field"])
    else:
        target = str(ctx.event.data.get(args.get("target", "target"), ""))
    replaces = str(ctx.event.data.get("replaces", ""))
    seed = hashlib.blake2b(ctx.get("_event_id").encode(), digest_size=12).hexdigest()
    call_id = f"{seed}@sessiond"
    sid = f"{call_tag(call_id)}-{seed[:12]}"
    data = {
        "target": target,
        "to": target,
        "from": uri_of(ctx.get(args.get("from", "local_uri"))),
        "call_id": call_id,
        "local_tag": seed[12:22],
        "edge": ctx.get("edge"),
        "table": args.get("table") or ctx.get("table"),
        "peer": ctx.get("sid"),
    }
    if replaces:  # an attended transfer: the new call replaces the target's other dialog
        data["replaces"] = replaces
    if args.get("pin_media") and ctx.get("media_node"):
        data["media_node"] = ctx.get("media_node")
    ctx.set(args["save_as"], sid)
    ctx.command("session", "MakeCall", {"sid": sid, "data": data})


def _check_timer(args: Any) -> str | None:
    if not isinstance(args, dict) or not isinstance(args.get("event"), str):
        return "expects {event: Name, seconds: N} or {event: Name, field: F, scale: x?}"
    rest = set(args) - {"event"}
    if rest == {"seconds"} and isinstance(args["seconds"], int | float) and args["seconds"] > 0:
        return None
    if rest and rest <= {"field", "scale", "margin"} and isinstance(args.get("field"), str):
        return None
    return "expects {event: Name, seconds: N} or {event: Name, field: F, scale: x?, margin: s?}"


def _timer_member(ctx: Context, event: str) -> dict[str, Any]:
    return {"sid": ctx.get("sid"), "event": event, "epoch": ctx.get(f"timer.{event}")}


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


def _check_timer_stop(args: Any) -> str | None:
    if isinstance(args, dict) and set(args) == {"event"} and isinstance(args["event"], str):
        return None
    return "expects {event: Name}"


def timer_stop(ctx: Context, args: Any) -> None:
    """Cancel the named timer ``event`` (if running)."""
    event = args["event"]
    if ctx.get(f"timer.{event}"):
        ctx.command("timer", "cancel", _timer_member(ctx, event))
        ctx.set(f"timer.{event}", "")


def _session_timer(ctx: Context, interval: int, refresher: str) -> None:
    ctx.set("session_expires", str(interval) if interval else "")
    ctx.set("refresher", refresher)
    for name in ("RefreshDue", "SessionExpired"):
        timer_stop(ctx, {"event": name})
    if interval:
        event, seconds = st.due_in(interval, refresher)
        timer_start(ctx, {"event": event, "seconds": seconds})


def _check_request(args: Any) -> str | None:
    if args is None or (isinstance(args, dict) and set(args) <= {"start", "min_se"}):
        return None
    return "expects no arguments or {start: bool?, min_se: seconds?}"


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


def session_timer_start(ctx: Context, args: Any) -> None:
    """Start the session timer negotiated earlier (the call is now established)."""
    if ctx.get("session_expires") and ctx.get("refresher"):
        _session_timer(ctx, int(ctx.get("session_expires")), ctx.get("refresher"))


def session_timer_response(ctx: Context, args: Any) -> None:
    """RFC 4028 7.2, as the UAC: the 2xx to our request says the interval and who refreshes
    (no Session-Expires: the far end does not do session timers; ours stop)."""
    interval, refresher = st.negotiate_response(str(ctx.event.data.get("session_expires", "")))
    _session_timer(ctx, interval, refresher)


def _check_offer(args: Any) -> str | None:
    if isinstance(args, dict) and set(args) == {"seconds"}:
        if isinstance(args["seconds"], int) and args["seconds"] >= st.MIN_SE:
            return None
    return f"expects {{seconds: N}}, N >= {st.MIN_SE}"


def session_timer_offer(ctx: Context, args: Any) -> None:
    """Ask for session timers in our INVITE: Session-Expires ``seconds``, refresher left to
    the far end (RFC 4028 7.1)."""
    ctx.set("session_expires", str(args["seconds"]))
    ctx.set("refresher", "")


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
    "sip.reinvite": ActionSpec(sip_reinvite, _no_args, "send a re-INVITE with our SDP"),
    "sip.prack": ActionSpec(sip_prack, _no_args, "acknowledge a reliable 1xx (RFC 3262)"),
    "sip.refer": ActionSpec(sip_refer, _check_refer, "send REFER to the event's target"),
    "sip.notify": ActionSpec(sip_notify, _check_notify, "report REFER progress (sipfrag)"),
    "sip.info_dtmf": ActionSpec(sip_info_dtmf, _no_args, "send the next queued INFO digit"),
    "sip.queue_info_dtmf": ActionSpec(
        queue_info_dtmf, _no_args, "queue the event's digits as SIP INFO, send the first"
    ),
    "media.create": ActionSpec(media_create, _check_media_create, "create an RTP session"),
    "media.update": ActionSpec(media_update, _check_update, "give the media node the remote SDP"),
    "media.destroy": ActionSpec(media_destroy, _no_args, "free the RTP session"),
    "media.relocate": ActionSpec(
        media_relocate, _no_args, "a new leg on another node, continuing our SDP"
    ),
    "media.reoffer": ActionSpec(media_reoffer, _check_reoffer, "new offer (hold/resume)"),
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
    "media.bridge": ActionSpec(
        media_bridge, _check_bridge, "relay audio with the event's other leg (or a session's)"
    ),
    "media.unbridge": ActionSpec(_media_command("unbridge", ()), _no_args, "stop relaying"),
    "session.send": ActionSpec(session_send, _check_send, "send an event to another session"),
    "session.call": ActionSpec(session_call, _check_call, "place a new call as a new session"),
    "timer.start": ActionSpec(timer_start, _check_timer, "(re)start a named timer"),
    "session_timer.request": ActionSpec(
        session_timer_request, _check_request, "negotiate RFC 4028 timers as the request's UAS"
    ),
    "session_timer.start": ActionSpec(
        session_timer_start, _no_args, "start the session timer negotiated before the answer"
    ),
    "hold.apply": ActionSpec(hold_apply, _no_args, "our re-offer succeeded: apply hold/resume"),
    "hold.remote": ActionSpec(hold_remote, _no_args, "the far end's offer holds us or not"),
    "reoffer.failed": ActionSpec(reoffer_failed, _no_args, "our re-offer failed: forget it"),
    "sip.glare_retry": ActionSpec(glare_retry, _no_args, "retry the re-INVITE after a 491"),
    "session_timer.response": ActionSpec(
        session_timer_response, _no_args, "take the RFC 4028 timers from the 2xx to our request"
    ),
    "session_timer.offer": ActionSpec(
        session_timer_offer, _check_offer, "ask for RFC 4028 session timers in our INVITE"
    ),
    "timer.stop": ActionSpec(timer_stop, _check_timer_stop, "cancel a named timer"),
    "save": ActionSpec(save, _check_save, "copy event data into session fields"),
    "end": ActionSpec(record_end, _check_end, "record the end code and reason"),
}
