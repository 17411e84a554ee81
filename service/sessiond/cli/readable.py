"""Text for people: times as ISO-8601 UTC, long or multi-line values shown whole.

Used by ``sessiond ctl show`` and the JSON log format; pure functions, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from sessiond.core.logs import iso_time
from sessiond.core.types import HISTORY_EVENT_FIELDS

WRAP = 100  # characters of a value per printed row
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def iso_or_text(value: str) -> str:
    """A unix time given as text, as ISO-8601 UTC; anything else unchanged."""
    try:
        return iso_time(float(value))
    except (ValueError, OverflowError, OSError):
        return value


def is_time_field(name: str) -> bool:
    """Session fields holding unix times (``created_at``, ``entered_state_at``...)."""
    return name.endswith("_at")


def value_rows(value: str, width: int = WRAP) -> list[str]:
    """A value as printed rows, whole: each line of it on a row of its own (CRLF shown as a
    trailing ``\\r\\n``), rows longer than ``width`` continued on the next rows, other control
    characters escaped (``\\x1b``). Joining the rows (and turning ``\\r\\n`` back) gives the
    value again: nothing is cut."""
    rows: list[str] = []
    lines = value.split("\n")
    for n, line in enumerate(lines):
        end = ""
        if n < len(lines) - 1:
            end = "\\n"
            if line.endswith("\r"):
                line, end = line[:-1], "\\r\\n"
        elif not line and rows:
            break  # a value ending in a newline: no empty row after it
        line = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", line)
        chunks = [line[i : i + width] for i in range(0, max(len(line), 1), width)]
        chunks[-1] += end  # the line end stays on its line's last row, never split
        rows.extend(chunks)
    return rows


def field_lines(name: str, value: str, width: int) -> list[str]:
    """``name  value`` with the name right-aligned in ``width``, continuation rows aligned
    under the value."""
    shown = iso_or_text(value) if is_time_field(name) else value
    rows = value_rows(shown)
    pad = " " * (width + 2)
    return [f"{name:>{width}}  {rows[0]}", *(pad + row for row in rows[1:])]


def history_line(entry: Mapping[str, str]) -> str:
    """One history entry: time, version, the step, the event's payload, actions, worker."""
    payload = "".join(
        f" {key}={_payload_value(entry[key])}" for key in HISTORY_EVENT_FIELDS if entry.get(key)
    )
    at = iso_or_text(entry.get("at", ""))
    return (
        f"  {at}  v{entry.get('version', ''):>3}  "
        f"{entry.get('from', '')} --{entry.get('event', '')}--> {entry.get('to', '')}"
        f"{payload}  [{entry.get('actions', '')}]  ({entry.get('worker', '')})"
    )


def _payload_value(value: str) -> str:
    """A payload value on one line: quoted when it has spaces, control characters escaped."""
    if " " in value or _CONTROL.search(value) or "\n" in value:
        return repr(value)
    return value
