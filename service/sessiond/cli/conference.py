"""``sessiond ctl conference``: list, show, kick, mute and record conference rooms.

Reads the room records (:mod:`sessiond.store.rooms`); actions are application commands sent
to a member's session, as :class:`sessiond.api.rooms.Rooms` sends them.
"""

from __future__ import annotations

import argparse
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from sessiond.cli import readable
from sessiond.core.types import Event
from sessiond.store import Keys, Store
from sessiond.store.rooms import RoomStore, valid_room


def usage_problem(args: argparse.Namespace) -> str | None:
    """A room name that cannot be one (checked before connecting)."""
    room = getattr(args, "room", None)
    if room is not None and not valid_room(room):
        return f"{room!r} is not a room name (1-64 of A-Z a-z 0-9 . _ @ + -)"
    return None


async def conference(redis: Any, keys: Keys, args: argparse.Namespace) -> int:
    rooms = RoomStore(redis, keys)
    handlers: dict[str, Callable[[RoomStore, Keys, argparse.Namespace], Awaitable[int]]] = {
        "list": _list,
        "show": _show,
        "kick": _kick,
        "mute": _mute,
        "record": _record,
    }
    return await handlers[args.conf_command](rooms, keys, args)


async def _list(rooms: RoomStore, keys: Keys, args: argparse.Namespace) -> int:
    names = await rooms.names()
    print(f"{'ROOM':24} {'NODE':12} {'MEMBERS':>7}  CREATED")
    for name in names:
        record = await rooms.record(name)
        count = len(await rooms.members(name))
        created = readable.iso_or_text(record.get("created_at", ""))
        print(f"{name:24} {record.get('media_node') or '-':12} {count:7}  {created}")
    print(f"{len(names)} room(s)")
    return 0


async def _show(rooms: RoomStore, keys: Keys, args: argparse.Namespace) -> int:
    record = await rooms.record(args.room)
    if not record:
        print(f"no room {args.room}")
        return 1
    width = max(len(k) for k in record)
    for name in sorted(record):
        print("\n".join(readable.field_lines(name, record[name], width)))
    members = await rooms.members(args.room)
    print(f"\nmembers ({len(members)}):")
    for sid, flags in members.items():
        print(f"  {sid}  {flags}")
    return 0


async def _member_send(
    rooms: RoomStore, keys: Keys, room: str, sid: str, kind: str, data: dict[str, Any]
) -> int:
    if sid not in await rooms.members(room):
        print(f"{sid} is not a member of room {room}")
        return 1
    return await _send(rooms, keys, sid, kind, data)


async def _send(rooms: RoomStore, keys: Keys, sid: str, kind: str, data: dict[str, Any]) -> int:
    event = Event(f"ctl:{kind}:{secrets.token_hex(6)}", kind, data, sid)
    await Store(rooms.redis, keys).publish(keys.partition_of(sid), event)
    print(f"{kind} sent to {sid} (event {event.id})")
    return 0


async def _kick(rooms: RoomStore, keys: Keys, args: argparse.Namespace) -> int:
    return await _member_send(rooms, keys, args.room, args.sid, "Hangup", {"by": "kick"})


async def _mute(rooms: RoomStore, keys: Keys, args: argparse.Namespace) -> int:
    data = {"muted": not args.off}
    return await _member_send(rooms, keys, args.room, args.sid, "ConferenceMember", data)


async def _record(rooms: RoomStore, keys: Keys, args: argparse.Namespace) -> int:
    members = await rooms.members(args.room)
    if not members:
        print(f"room {args.room} has no members")
        return 1
    sid = next(iter(members))
    if args.stop:
        return await _send(rooms, keys, sid, "ConferenceStopRecord", {})
    if not args.path:
        print("record: give a PATH (a WAV file on the media node) or --stop")
        return 2
    return await _send(rooms, keys, sid, "ConferenceRecord", {"path": args.path})


def add_parser(csub: Any) -> None:
    conf = csub.add_parser("conference", help="conference rooms: list, show, kick, mute, record")
    sub = conf.add_subparsers(dest="conf_command", required=True)
    sub.add_parser("list", help="the rooms, their media node and member count")
    sub.add_parser("show", help="a room's record and its members with their flags").add_argument(
        "room"
    )
    kick = sub.add_parser("kick", help="hang up a member")
    kick.add_argument("room")
    kick.add_argument("sid")
    mute = sub.add_parser("mute", help="mute a member (the others stop hearing it)")
    mute.add_argument("room")
    mute.add_argument("sid")
    mute.add_argument("--off", action="store_true", help="unmute")
    record = sub.add_parser("record", help="record the room's mix to a WAV file")
    record.add_argument("room")
    record.add_argument("path", nargs="?", default=None, help="WAV path on the media node")
    record.add_argument("--stop", action="store_true", help="close the recording")
