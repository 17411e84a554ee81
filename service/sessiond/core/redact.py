"""SRTP master keys (SDES, RFC 4568 ``a=crypto ... inline:<key>``) hidden from text that is
shown or kept: log lines, ``sessiond ctl show``, the fields of a session that has ended.

The SDP bodies themselves must carry the keys to the peer (the SIP messages, the commands
and events that build them); everything that only shows or archives them uses these."""

from __future__ import annotations

import re
from collections.abc import Mapping

_INLINE_KEY = re.compile(r"(inline:)[^|;\s]+", re.IGNORECASE)
#: Session fields that hold SDP bodies (and so, with SDES, our key and the peer's).
SDP_FIELDS = ("local_sdp", "remote_sdp")


def redact_keys(text: str) -> str:
    """Any text (a whole SDP body, a log line) with every ``inline:`` key hidden."""
    return _INLINE_KEY.sub(r"\1<hidden>", text) if ":" in text else text


def scrubbed(session: Mapping[str, str]) -> dict[str, str]:
    """The SDP fields of ``session`` that hold a key, with the keys hidden (for a session
    that has ended: nothing needs them any more)."""
    return {
        name: redact_keys(value)
        for name in SDP_FIELDS
        if (value := session.get(name, "")) and _INLINE_KEY.search(value)
    }
