"""A session's history: one readable line per step, in a capped Redis list.

The line is what ``sessiond ctl show`` prints and what ``LRANGE <history key> 0 -1`` shows in
redis-cli; :func:`parse` turns it back into the fields the readers use (``at``, ``version``,
``from``, ``event``, ``to``, the event's payload, ``actions``, ``event_id``, ``worker``)::

    2026-12-05T09:15:37.123Z v3 Ringing --Answer--> Answering code=200 [sip.respond(...)] \
        sip:abc@h:1 (worker-host-12)

A payload value with a space, a quote, a bracket or a control character (or an empty one) is
written as a JSON string. A list of short strings is kept by Redis in a listpack: a call's
history costs a few hundred bytes, where a stream of the same entries cost about 4.8 KB.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from sessiond.core.logs import iso_time
from sessiond.core.types import Step

_PLAIN = re.compile(r'[^\s"\[\]\x00-\x1f\x7f]+')
_LINE = re.compile(
    r"(?P<at>\S+) v(?P<version>\d+) (?P<from>\S*) --(?P<event>\S*)--> (?P<to>\S*)"
    r'(?P<payload>(?: \w+=(?:"(?:[^"\\]|\\.)*"|[^\s"]*))*)'
    r" \[(?P<actions>.*)\] (?P<event_id>\S+) \((?P<worker>[^()]*)\)"
)
_PAIR = re.compile(r' (\w+)=("(?:[^"\\]|\\.)*"|[^\s"]*)')


def line(step: Step, version: int, event_id: str, worker: str, at: float) -> str:
    """The history line of one step, stored at ``version``."""
    return _line(step, f"{iso_time(at)} v{version}", f"{event_id} ({worker})")


def lines(steps: Sequence[Step], version: int, event_id: str, worker: str, at: float) -> list[str]:
    head, tail = f"{iso_time(at)} v{version}", f"{event_id} ({worker})"
    return [_line(step, head, tail) for step in steps]


def _line(step: Step, head: str, tail: str) -> str:
    payload = "".join([f" {name}={_value(value)}" for name, value in step.data])
    return (
        f"{head} {step.from_state} --{step.event}--> {step.to_state}"
        f"{payload} [{', '.join(step.actions)}] {tail}"
    )


def parse(text: str) -> dict[str, str]:
    """A history line's fields; a line in no known shape is ``{"line": text}``."""
    match = _LINE.fullmatch(text)
    if match is None:
        return {"line": text}
    entry = {k: v for k, v in match.groupdict().items() if k != "payload"}
    for name, value in _PAIR.findall(match["payload"]):
        entry[name] = json.loads(value) if value.startswith('"') else value
    return entry


def _value(value: str) -> str:
    return value if _PLAIN.fullmatch(value) else json.dumps(value)
