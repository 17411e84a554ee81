"""The one codec of stream entries: every event, command and application message on a Redis
stream is the fields ``id``, ``type``, ``sid`` and ``data`` (a MessagePack map).

Written here once so the worker, edge, media node, api and store agree byte for byte with
each other and with the Lua scripts (``pop_timers.lua`` writes timer events with a plain
``epoch`` field in place of ``data``; :func:`decode` folds such plain fields into the data).
Event entries leave out an empty ``sid`` and ``data``; command entries carry all four fields,
their ``data`` packed when the worker built its outbox (:func:`pack`, then :func:`fields`).
The typed records the ``data`` maps hold are in :mod:`sessiond.core.messages`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgpack

from sessiond.core.errors import StoreError
from sessiond.core.types import Event


class EntryError(StoreError):
    """A stream entry whose ``data`` is not a MessagePack map (or not MessagePack at all)."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One decoded stream entry; ``id`` or ``type`` is empty when the entry lacks it."""

    id: str
    type: str
    sid: str
    data: dict[str, Any]


def pack(data: Mapping[str, Any]) -> bytes:
    """The ``data`` field of an entry."""
    return bytes(msgpack.packb(dict(data)))


def fields(entry_id: str, entry_type: str, sid: str, packed: bytes) -> dict[str, Any]:
    """A command entry: all four fields, ``packed`` from :func:`pack`."""
    return {"id": entry_id, "type": entry_type, "sid": sid, "data": packed}


def encode_event(event: Event) -> dict[str, Any]:
    """An event entry: ``sid`` and ``data`` only when they are not empty."""
    out: dict[str, Any] = {"id": event.id, "type": event.type}
    if event.sid:
        out["sid"] = event.sid
    if event.data:
        out["data"] = pack(event.data)
    return out


def decode(raw: Mapping[Any, Any], *, lenient: bool = False) -> Entry:
    """Read an entry (keys and values bytes or text). Fields other than the four join the
    data as text (timer events' ``epoch``). A ``data`` that is not a map raises
    :class:`EntryError`, or with ``lenient`` reads as an empty map."""
    data: dict[str, Any] = {}
    entry_id = entry_type = sid = ""
    for k, v in raw.items():
        key = _text(k)
        if key == "data":
            data.update(_unpack(v, lenient))
        elif key == "id":
            entry_id = _text(v)
        elif key == "type":
            entry_type = _text(v)
        elif key == "sid":
            sid = _text(v)
        else:
            data[key] = _text(v)
    return Entry(entry_id, entry_type, sid, data)


def decode_event(raw: Mapping[Any, Any]) -> Event:
    """Read an event entry; :class:`EntryError` when it has no id or type."""
    entry = decode(raw)
    if not entry.id or not entry.type:
        raise EntryError("event entry without id or type")
    return Event(entry.id, entry.type, entry.data, entry.sid)


def _unpack(value: Any, lenient: bool) -> dict[str, Any]:
    try:
        data = msgpack.unpackb(value) if value else {}
    except Exception as exc:  # anything a garbage entry can raise
        raise EntryError(f"undecodable entry data: {exc!r}") from exc
    if isinstance(data, dict):
        if all(type(k) is str for k in data):  # as msgpack gives it: nothing to convert
            return data
        return {_text(k): v for k, v in data.items()}
    if lenient:
        return {}
    raise EntryError("entry data is not a map")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
