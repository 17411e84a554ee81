"""Conference actions: commands that mix the session's leg into a room on its media node.

The session keeps the room it is in in field ``conference`` (the record of the room itself is
the media node's, :mod:`sessiond.store.rooms`). Arguments come from the event (an
application's ``JoinConference``, ``ConferenceMember``, ``ConferencePlay``...) as it was
checked by :mod:`sessiond.core.appschema`; the node checks them again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sessiond.core.messages import (
    ConferenceJoin,
    ConferenceMember,
    ConferencePlay,
    ConferenceRecord,
    CreateLeg,
    MediaLeg,
)
from sessiond.table.actions.hold import holding
from sessiond.table.actions.media import _origin
from sessiond.table.argspec import Registry
from sessiond.table.model import ActionFn

if TYPE_CHECKING:
    from sessiond.core.types import Context

action = Registry[ActionFn]()


def _pick(data: Any, names: tuple[str, ...]) -> dict[str, Any]:
    return {name: data[name] for name in names if name in data}


@action("conference.join")
def conference_join(ctx: Context, args: Any) -> None:
    """Join the room the event names (``room``; a call in another room moves to it), or with
    none the one in field ``conference`` (answered into a room, or joining again after the
    call's media moved to another node). Sets field ``conference``."""
    data = ctx.event.data
    room = str(data.get("room") or ctx.get("conference"))
    ctx.set("conference", room)
    flags = _pick(data, ("muted", "deaf", "gain_db")) if data.get("room") else {}
    join = ConferenceJoin(media_id=ctx.get("media_id"), room=room, **flags)
    ctx.command("media", "conf_join", join)


@action("conference.leave")
def conference_leave(ctx: Context, args: Any) -> None:
    """Leave the room (the media node reports ConferenceLeft); clears field ``conference``."""
    ctx.set("conference", "")
    ctx.command("media", "conf_leave", MediaLeg(media_id=ctx.get("media_id")))


@action("conference.set")
def conference_set(ctx: Context, args: Any) -> None:
    """Change the member's flags from the event: muted, deaf, gain_db, whisper_to."""
    flags = _pick(ctx.event.data, ("muted", "deaf", "gain_db", "whisper_to"))
    ctx.command("media", "conf_set", ConferenceMember(media_id=ctx.get("media_id"), **flags))


@action("conference.play")
def conference_play(ctx: Context, args: Any) -> None:
    """Play a tone or a WAV file into the room, or with ``member: true`` to this member."""
    play = _pick(ctx.event.data, ("tone", "file", "seconds", "loop", "member"))
    ctx.command("media", "conf_play", ConferencePlay(media_id=ctx.get("media_id"), **play))


@action("conference.record")
def conference_record(ctx: Context, args: Any) -> None:
    """Record the room's mix to the WAV file ``path`` of the event."""
    path = ctx.event.data.get("path")
    record = ConferenceRecord(media_id=ctx.get("media_id"), path=path)
    ctx.command("media", "conf_record", record)


@action("conference.stop_record")
def conference_stop_record(ctx: Context, args: Any) -> None:
    """Close the room's recording."""
    ctx.command("media", "conf_stop_record", MediaLeg(media_id=ctx.get("media_id")))


@action("conference.move")
def conference_move(ctx: Context, args: Any) -> None:
    """Move the leg to the node that mixes the room (the event's ``media_node``): a new leg
    made there, offered by re-INVITE as a media-node loss moves a call (``media.relocate``,
    field ``reoffer: relocate``); the session joins the room again once it is answered."""
    node = str(ctx.event.data.get("media_node", ""))
    leg = CreateLeg(
        media_id=ctx.get("media_id"),
        mode="offer",
        direction="sendonly" if holding(ctx) else "sendrecv",
        origin=_origin(ctx.get("local_sdp")) or None,
    )
    ctx.set("media_node", node)  # the create goes to that node's own stream
    ctx.set("reoffer", "relocate")
    ctx.command("media", "create", leg)
