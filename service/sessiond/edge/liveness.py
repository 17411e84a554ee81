"""The edge's Redis calls about liveness: its heartbeat, a drain request, what it learns
from the heartbeat round (media capacity, the workers' lag), and the sessions of calls held
long (admission). Each is one round trip, kept here so the adapter makes no such calls."""

from __future__ import annotations

from typing import Any

from sessiond.store.keys import WORKERS_GROUP, Keys
from sessiond.store.liveness import Liveness


async def beat(presence: Liveness, keys: Keys) -> tuple[bool, dict[str, str], int]:
    """Heartbeat and registration (:class:`~sessiond.store.liveness.Liveness`); returns
    whether a drain was asked (its key is then deleted), the media nodes' capacity reports
    and the workers' lag (entries not yet delivered to them)."""

    def extra(pipe: Any) -> None:
        pipe.hgetall(keys.media_capacity())
        for partition in range(keys.partitions):
            pipe.xinfo_groups(keys.events(partition))

    done = await presence.beat(extra, errors="return")
    media, *groups = done.extra
    reports = media if isinstance(media, dict) else {}
    return done.drain, {_text(k): _text(v) for k, v in reports.items()}, worker_lag(groups)


async def exist(redis: Any, names: list[str]) -> list[Any]:
    """EXISTS for each key (an error in place of a failed answer)."""
    pipe = redis.pipeline(transaction=False)
    for key in names:
        pipe.exists(key)
    return list(await pipe.execute(raise_on_error=False))


def worker_lag(replies: list[Any]) -> int:
    """Entries not yet delivered to the workers, summed over the partition streams (XINFO
    GROUPS; a stream that does not exist yet answers an error and counts 0)."""
    lag = 0
    names = (WORKERS_GROUP, WORKERS_GROUP.encode())
    for reply in replies:
        if isinstance(reply, list):
            for group in reply:
                if group.get("name") in names:
                    lag += int(group.get("lag") or 0)
    return lag


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
