"""Log output of every sessiond process: text for people, or one JSON object per line.

``--log-format text`` (default): ``2026-12-05 02:07:32,123 sessiond.calls INFO call end ...``.
``--log-format json``: one object per line with ``ts`` (ISO-8601 UTC, milliseconds),
``level``, ``logger``, ``msg``, ``exc`` (a traceback, when there is one) and the structured
fields a record carries in its ``fields`` extra (the per-call lines: ``sid``, ``call_id``,
``from``, ``to``, ``code``, ``duration``...), for log shippers.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"
_HANDLER = "sessiond-stderr"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": iso_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                entry.setdefault(key, value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False, default=str)


def add_option(parser: argparse.ArgumentParser) -> None:
    """``--log-format text|json`` on a process's parser."""
    parser.add_argument(
        "--log-format",
        choices=FORMATS,
        default="text",
        help="log lines as text, or as one JSON object per line (ts, level, logger, msg, "
        "and the call's fields) for log shippers",
    )


def setup(log_format: str = "text", level: int = logging.INFO) -> None:
    """Log to stderr at ``level`` in ``log_format`` (a second call replaces the handler the
    first one installed: it switches the format)."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    handler.set_name(_HANDLER)
    root = logging.getLogger()
    for old in root.handlers[:]:
        if old.get_name() == _HANDLER:
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


def iso_time(unix: float) -> str:
    """``1764900452.1234`` -> ``2025-12-05T02:07:32.123Z`` (UTC, milliseconds)."""
    m = datetime.fromtimestamp(unix, UTC)
    return (
        f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}"
        f".{m.microsecond // 1000:03d}Z"
    )
