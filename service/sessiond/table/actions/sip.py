"""SIP actions: requests and answers the edge sends. Every command carries the dialog
(call id, tags, URIs, route set) so an edge that restarted can still send it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from sessiond.core.messages import MediaLeg, Respond, SendInvite, SendRequest
from sessiond.core.vocabulary import DIALOG_FIELDS
from sessiond.sip import session_timer as st
from sessiond.sip.status import reason_phrase
from sessiond.table.argspec import Fields, NoArgs, Registry, Value, anything, flag, integer, true
from sessiond.table.model import ActionFn

if TYPE_CHECKING:
    from sessiond.core.types import Context

action = Registry[ActionFn]()
DTMF_CHARS = "0123456789*#ABCD"


def _dialog(ctx: Context) -> dict[str, Any]:
    return ctx.fields(DIALOG_FIELDS)


def _to_peer(ctx: Context) -> dict[str, Any]:
    """The dialog fields of a request we send; ``destination`` too when the session has one
    (a leg to a registered phone: its requests go where its REGISTER came from)."""
    out = _dialog(ctx)
    destination = ctx.get("destination")
    if destination:
        out["destination"] = destination
    return out


def _out_of_dialog(ctx: Context) -> dict[str, Any]:
    """:func:`_to_peer` for the initial INVITE and its CANCEL: their Route set is the one
    preloaded for the leg (``invite_route``: a registered phone's Path, RFC 3327 5.3), when
    there is one; the ACK of a non-2xx copies the INVITE's (the transaction layer)."""
    out = _to_peer(ctx)
    preloaded = ctx.get("invite_route")
    if preloaded:
        out["route_set"] = preloaded
    return out


def _next_cseq(ctx: Context) -> int:
    cseq = int(ctx.get("local_cseq") or "0") + 1
    ctx.set("local_cseq", str(cseq))
    return cseq


def _contact_list(value: Any) -> bool:
    return value == "from_event" or (
        isinstance(value, list) and bool(value) and all(isinstance(c, str) for c in value)
    )


_RESPOND = Fields(
    {"code": integer(101, 699, from_event=True)},
    {
        "reason": anything("text"),
        "sdp": flag(),
        "contacts": Value(
            _contact_list, "from_event|[URI]", "contacts must be 'from_event' or a list of URIs"
        ),
    },
)


@action("sip.respond", _RESPOND)
def sip_respond(ctx: Context, args: Any) -> None:
    """Answer the pending INVITE (the server transaction in ``txn``)."""
    code = args["code"]
    if code == "from_event":
        code = ctx.event.data.get("code", 603)
    headers = st.response_headers(ctx.get) if 200 <= int(code) < 300 else []
    reliable = None
    if 100 < int(code) < 200 and "100rel" in ctx.get("remote_require"):
        rseq = int(ctx.get("rseq") or "0") + 1  # RFC 3262 3: reliable, retransmitted
        ctx.set("rseq", str(rseq))  # by the edge until the PRACK
        headers += [["Require", "100rel"], ["RSeq", str(rseq)]]
        reliable = True
    if int(code) == 422:
        headers.append(["Min-SE", str(st.MIN_SE)])
    contacts = None
    if "contacts" in args:
        contacts = args["contacts"]
        if contacts == "from_event":
            contacts = ctx.event.data.get("contacts") or []
        if isinstance(contacts, str):
            contacts = [contacts]
        contacts = [str(c) for c in contacts]
    respond = Respond(
        code=code,
        txn=ctx.get("txn"),
        **_dialog(ctx),
        reason=args.get("reason"),
        sdp=ctx.get("local_sdp") if args.get("sdp") else None,
        reliable=reliable,
        headers=headers or None,
        contacts=contacts,
    )
    ctx.command("edge", "respond", respond)
    if args.get("sdp") and ctx.get("media_node"):  # our answer is out: the leg may send
        ctx.command("media", "answered", MediaLeg(media_id=ctx.get("media_id")))


_REPLY = Fields(
    {"code": integer(200, 699, what="a final status ")},
    {"reason": anything("text"), "sdp": flag(), "retry_after": anything("seconds")},
)


@action("sip.reply", _REPLY)
def sip_reply(ctx: Context, args: Any) -> None:
    """Answer the request that is this event (BYE, re-INVITE, UPDATE, REFER, INFO...) through
    the event's transaction; a re-INVITE's or UPDATE's ``txn`` saved earlier when the answer
    waits for the media node (``sdp: true`` sends our current SDP)."""
    headers = st.response_headers(ctx.get) if 200 <= args["code"] < 300 else []
    if "retry_after" in args:
        headers.append(["Retry-After", str(args["retry_after"])])
    respond = Respond(
        code=args["code"],
        txn=ctx.event.data.get("txn") or ctx.get("txn"),
        **_dialog(ctx),
        reason=args.get("reason"),
        sdp=ctx.get("local_sdp") if args.get("sdp") else None,
        headers=headers or None,
    )
    ctx.command("edge", "respond", respond)


@action("sip.invite", Fields({"auth": true()}, none_ok=True))
def sip_invite(ctx: Context, args: Any) -> None:
    """Send the initial INVITE with our SDP offer. ``{auth: true}``: send it again, CSeq + 1,
    same Call-ID and From tag, answering the 401/407 of this event: the edge computes the
    Authorization / Proxy-Authorization from its credentials (RFC 3261 22.2, 22.3)."""
    cseq = _next_cseq(ctx)
    ctx.set("invite_cseq", str(cseq))
    code = challenges = None
    if args:
        ctx.set("remote_tag", "")  # a 1xx may have given one: the new INVITE is out of dialog
        code = ctx.event.data.get("code")
        name = "www_authenticate" if code == 401 else "proxy_authenticate"
        challenges = ctx.event.data.get(name) or []
    headers = st.request_headers(ctx.get)
    if ctx.get("replaces"):
        headers.append(["Replaces", ctx.get("replaces")])
    invite = SendInvite(
        cseq=cseq,
        sdp=ctx.get("local_sdp"),
        **_out_of_dialog(ctx),
        challenge_code=code,
        challenges=challenges,
        headers=headers or None,
    )
    ctx.command("edge", "invite", invite)


@action("sip.ack")
def sip_ack(ctx: Context, args: Any) -> None:
    """ACK a 2xx (and each retransmission of it): the CSeq number of the INVITE it answers
    (the initial INVITE or a re-INVITE)."""
    data = ctx.event.data
    cseq = data.get("cseq") if data.get("method") == "INVITE" else None
    ack = SendRequest(cseq=int(cseq or ctx.get("invite_cseq") or "1"), **_to_peer(ctx))
    ctx.command("edge", "ack", ack)


def _in_dialog(ctx: Context, method: str, **extra: Any) -> int:
    cseq = _next_cseq(ctx)
    ctx.command("edge", "request", SendRequest(method=method, cseq=cseq, **_to_peer(ctx), **extra))
    return cseq


@action("sip.reinvite")
def sip_reinvite(ctx: Context, args: Any) -> None:
    """Send a re-INVITE (RFC 3261 14.1) offering our current SDP (``local_sdp``)."""
    headers = st.request_headers(ctx.get) or None
    cseq = _in_dialog(ctx, "INVITE", sdp=ctx.get("local_sdp"), headers=headers)
    ctx.set("reinvite_cseq", str(cseq))


@action("sip.refer", NoArgs("the target comes from the event's 'target'"))
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


@action("sip.notify", Fields({"code": integer(100, 699, from_event=True)}))
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


@action("sip.info_dtmf")
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


@action("sip.queue_info_dtmf")
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


@action("sip.cancel")
def sip_cancel(ctx: Context, args: Any) -> None:
    """CANCEL our pending INVITE (RFC 3261 section 9.1)."""
    cancel = SendRequest(cseq=int(ctx.get("invite_cseq") or "1"), **_out_of_dialog(ctx))
    ctx.command("edge", "cancel", cancel)


@action("sip.prack")
def sip_prack(ctx: Context, args: Any) -> None:
    """Acknowledge a reliable provisional response (RFC 3262 7.2): PRACK with RAck."""
    data = ctx.event.data
    rack = f"{data.get('rseq', '').strip()} {data.get('cseq', '')} INVITE"
    _in_dialog(ctx, "PRACK", headers=[["RAck", rack]])


@action("sip.bye")
def sip_bye(ctx: Context, args: Any) -> None:
    """End the dialog with BYE."""
    ctx.command("edge", "bye", SendRequest(cseq=_next_cseq(ctx), **_to_peer(ctx)))
