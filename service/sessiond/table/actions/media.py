"""Media actions: commands for the session's RTP leg on a media node (or the pool)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from sessiond.core.messages import (
    Bridge,
    CreateLeg,
    MediaLeg,
    Play,
    Record,
    Reoffer,
    SendDtmf,
    UpdateLeg,
)
from sessiond.table.actions.hold import holding
from sessiond.table.argspec import (
    NO_ARGS,
    Fields,
    Registry,
    anything,
    choice,
    flag,
    session_field,
    true,
)
from sessiond.table.model import ActionFn

if TYPE_CHECKING:
    from sessiond.core.types import Context

action = Registry[ActionFn]()


@action("media.create", Fields({"mode": choice("offer", "answer")}, {"pinned": flag()}))
def media_create(ctx: Context, args: Any) -> None:
    """Ask any media node for an RTP session: an offer, or the answer to the remote SDP,
    under the SRTP policy in field ``srtp`` (the route's; empty: the node's ``--srtp``).
    ``pinned: true`` asks the node already in ``media_node`` instead (a B2BUA's outbound
    leg, created on its peer's node so that the two legs can be bridged)."""
    answer = args["mode"] == "answer"  # quiet until our answer is out (sip.respond with sdp)
    leg = CreateLeg(
        media_id=ctx.get("media_id"),
        mode=args["mode"],
        remote_sdp=ctx.get("remote_sdp") if answer else None,
        quiet=True if answer else None,
        latch_private=_latch_private(ctx),
        srtp=ctx.get("srtp") or None,
    )
    pinned = args.get("pinned") and ctx.get("media_node")
    ctx.command("media" if pinned else "media-pool", "create", leg)


def _latch_private(ctx: Context) -> bool | None:
    """Session field ``latch_private`` (set when the call's route asks for it): the leg
    ignores a private SDP address and sends where the peer's RTP comes from."""
    return True if ctx.get("latch_private") == "true" else None


def _origin(sdp: str) -> str:
    """The value of the o= line of an SDP body ("" if it has none)."""
    for line in sdp.splitlines():
        if line.startswith("o="):
            return line[2:].strip()
    return ""


@action("media.relocate")
def media_relocate(ctx: Context, args: Any) -> None:
    """Ask any media node (the pool) for a new leg to replace one on a lost node: an offer
    that continues our SDP origin (same o= username and session id, a higher version, RFC
    3264 8), sendonly while we hold the far end, under the session's SRTP policy (the new
    node makes new keys, which the re-INVITE offers). ``media_node`` is cleared until the new
    node's MediaReady names it; field ``reoffer`` is ``relocate`` until the re-INVITE ends."""
    leg = CreateLeg(
        media_id=ctx.get("media_id"),
        mode="offer",
        direction="sendonly" if holding(ctx) else "sendrecv",
        origin=_origin(ctx.get("local_sdp")) or None,
        latch_private=_latch_private(ctx),
        srtp=ctx.get("srtp") or None,
    )
    ctx.set("media_node", "")
    ctx.set("reoffer", "relocate")
    ctx.command("media-pool", "create", leg)


@action("media.update", Fields({"answer": true()}, none_ok=True))
def media_update(ctx: Context, args: Any) -> None:
    """Give the media node the remote SDP (answer to our offer, or a new offer: answered
    sendonly while we hold the far end). ``{answer: true}``: it answers our last offer even
    if an earlier answer was taken (early media in a 183, then the 2xx)."""
    update = UpdateLeg(
        media_id=ctx.get("media_id"),
        remote_sdp=ctx.get("remote_sdp"),
        direction="sendonly" if holding(ctx) else None,
        answer=True if args else None,
    )
    ctx.command("media", "update", update)


_REOFFERS = ("hold", "resume", "refresh", "again", "offerless")


@action("media.reoffer", Fields({"why": choice(*_REOFFERS)}))
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
    hold = why == "hold" or (why != "resume" and holding(ctx))
    direction = "sendonly" if hold else "sendrecv"
    ctx.command("media", "reoffer", Reoffer(media_id=ctx.get("media_id"), direction=direction))


@action("media.destroy")
def media_destroy(ctx: Context, args: Any) -> None:
    """Free the RTP session (ports, files). Harmless if media was never created; nothing at
    all for a bypassed call (field ``media`` is ``bypass``: no node ever had a leg)."""
    if ctx.get("media") == "bypass" and not ctx.get("media_node"):
        return
    ctx.command("media", "destroy", MediaLeg(media_id=ctx.get("media_id")))


def _media_command(
    name: str, record: type[MediaLeg], keys: tuple[str, ...]
) -> Callable[[Context, Any], None]:
    """An action that sends ``name`` to the session's media node. Its arguments come from
    the table (``{tone: 440}``) or, with no arguments, from the event (an app command)."""

    def send(ctx: Context, args: Any) -> None:
        source = args if isinstance(args, dict) else ctx.event.data
        data: dict[str, Any] = {}
        for key in keys:
            if key in source:
                value = source[key]
                if isinstance(value, str):
                    value = value.replace("{sid}", ctx.get("sid"))
                data[key] = value
        ctx.command("media", name, record(media_id=ctx.get("media_id"), **data))

    send.__doc__ = f"media {name}: " + ", ".join(keys)
    return send


def _tone_or_file(args: Mapping[str, Any]) -> bool:
    return ("tone" in args) != ("file" in args)


# Commands whose arguments come from the table or, with none, from the event (an app's).
_PLAY = Fields(
    optional={
        "tone": anything("Hz"),
        "file": anything("path"),
        "seconds": anything("N"),
        "loop": anything("bool"),
    },
    none_ok=True,
    rules=((_tone_or_file, "needs exactly one of tone (Hz) or file (a WAV path)"),),
)
_RECORD = Fields({"path": anything("path")}, {"direction": anything("in|out|both")}, none_ok=True)
_DTMF = Fields({"digits": anything("digits")}, {"duration_ms": anything("ms")}, none_ok=True)
_ARGS: tuple[tuple[str, type[MediaLeg], Fields | None], ...] = (
    ("play", Play, _PLAY),
    ("stop_play", MediaLeg, None),
    ("record", Record, _RECORD),
    ("stop_record", MediaLeg, None),
    ("send_dtmf", SendDtmf, _DTMF),
    ("unbridge", MediaLeg, None),
)
for _name, _record, _shape in _ARGS:
    action.add(
        f"media.{_name}",
        _media_command(_name, _record, _shape.keys if _shape else ()),
        _shape or NO_ARGS,
    )


@action("media.play_saved")
def media_play_saved(ctx: Context, args: Any) -> None:
    """Play what the session saved (``play_tone`` Hz or ``play_file``, ``play_seconds``):
    the play-and-hang-up handler stores it on the decision and starts it once answered."""
    tone, file, seconds = ctx.get("play_tone"), ctx.get("play_file"), ctx.get("play_seconds")
    play = Play(
        media_id=ctx.get("media_id"),
        tone=float(tone) if tone else None,
        file=None if tone else file,
        seconds=float(seconds) if seconds else None,
    )
    ctx.command("media", "play", play)


@action("media.bridge", Fields({"with": session_field()}, none_ok=True))
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
    ctx.command("media", "bridge", Bridge(media_id=ctx.get("media_id"), other=other))
