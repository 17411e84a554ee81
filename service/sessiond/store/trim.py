"""Trimming the shared streams down to what their consumer groups still need.

Every XADD caps its stream at ``STREAM_MAXLEN`` (100,000 entries, approximate), which keeps
hours of entries nobody will read again: ~2 KB per held call on the partition streams, 1.5 KB
on the edge's command stream. :func:`trim_consumed` drops the entries every consumer group
of a stream is done with: ``XTRIM MINID ~`` the oldest entry a group still needs (its oldest
pending entry, else the one after its last delivered). Entries delivered and not yet
acknowledged stay (a dead consumer's are reclaimed), and so do entries not yet delivered. A
stream without a consumer group is left alone, except those given an ``unread_age``
(``{app}:events`` when no application reads it): there, entries older than that go.

Approximate trimming removes whole listpack nodes only (``stream-node-max-entries``, 100),
so up to a node of consumed entries stays; it costs Redis no rewrite of a node.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

StreamId = tuple[int, int]


def parse_id(value: bytes | str) -> StreamId:
    text = value.decode() if isinstance(value, bytes) else value
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


async def trim_consumed(
    redis: Any,
    streams: Sequence[str],
    *,
    unread_age: Mapping[str, float] | None = None,
    now: float = 0.0,
) -> int:
    """Trim ``streams`` by what their groups consumed (three round trips at most); a stream
    named in ``unread_age`` that has no group loses its entries older than that many seconds
    before ``now`` (unix seconds). Returns the entries removed."""
    pipe = redis.pipeline(transaction=False)
    for stream in streams:
        pipe.xinfo_groups(stream)
    infos = await pipe.execute(raise_on_error=False)
    floors, waiting = _floors(streams, infos, unread_age or {}, now)
    if waiting:
        pipe = redis.pipeline(transaction=False)
        for stream, group in waiting:
            pipe.xpending(stream, group)
        for (stream, _), summary in zip(waiting, await pipe.execute(), strict=True):
            if summary.get("min") is not None:
                floors[stream] = min(floors[stream], parse_id(summary["min"]))
    floors = {s: f for s, f in floors.items() if f > (0, 1)}
    if not floors:
        return 0
    pipe = redis.pipeline(transaction=False)
    for stream, (ms, seq) in floors.items():
        pipe.xtrim(stream, minid=f"{ms}-{seq}", approximate=True)
    return sum(int(n) for n in await pipe.execute())


def _floors(
    streams: Sequence[str], infos: list[Any], unread_age: Mapping[str, float], now: float
) -> tuple[dict[str, StreamId], list[tuple[str, str]]]:
    """From XINFO GROUPS: each stream's lowest id still needed by a group (or, without a
    group, by ``unread_age``), and the (stream, group) pairs with entries pending."""
    floors: dict[str, StreamId] = {}
    waiting: list[tuple[str, str]] = []
    for stream, groups in zip(streams, infos, strict=True):
        if isinstance(groups, Exception):  # no such stream (yet)
            continue
        if not groups:
            if stream in unread_age:
                floors[stream] = (round((now - unread_age[stream]) * 1000), 0)
            continue
        for group in groups:
            last = parse_id(group["last-delivered-id"])
            floor = (last[0], last[1] + 1)
            floors[stream] = min(floors.get(stream, floor), floor)
            if int(group["pending"]):
                waiting.append((stream, _text(group["name"])))
    return floors, waiting


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
