"""Session timers (RFC 4028): negotiating the interval and who refreshes. Sans-I/O.

A session keeps two plain fields: ``session_expires`` (seconds) and ``refresher`` (``us`` or
``them``; empty while not negotiated). On the wire the refresher is named relative to the
transaction that carried the header (``uac``: the side that sent the request), so the same
session field reads ``refresher=uac`` in our re-INVITE and ``refresher=uas`` in our 2xx.

Timers (RFC 4028 10): the refresher refreshes at half the interval; the other side sends BYE
when no refresh arrived by the interval minus min(32, interval/3).
"""

from __future__ import annotations

from collections.abc import Callable

MIN_SE = 90  # RFC 4028 4: the smallest interval anyone may ask for

Get = Callable[[str], str]


def parse_session_expires(value: str) -> tuple[int, str] | None:
    """``"1800;refresher=uac"`` -> (1800, "uac"); the refresher is "" when absent. None when
    the value is not a delta-seconds (then the header is ignored, as if absent)."""
    delta, *params = (part.strip() for part in value.split(";"))
    if not delta.isdigit() or len(delta) > 9:
        return None
    refresher = ""
    for param in params:
        name, _, val = param.partition("=")
        if name.strip().lower() == "refresher" and val.strip().lower() in ("uac", "uas"):
            refresher = val.strip().lower()
    return int(delta), refresher


def parse_min_se(value: str) -> int:
    delta = value.split(";")[0].strip()
    return int(delta) if delta.isdigit() and len(delta) <= 9 else MIN_SE


def too_small(session_expires: str, min_se: int = MIN_SE) -> bool:
    """A request whose Session-Expires is below our minimum is refused with 422."""
    parsed = parse_session_expires(session_expires) if session_expires else None
    return parsed is not None and parsed[0] < min_se


def supports_timer(supported: str) -> bool:
    return "timer" in (t.strip().lower() for t in supported.split(","))


def negotiate_request(
    session_expires: str, min_se: str, supported: str, our_min: int = MIN_SE
) -> tuple[int, str]:
    """As the UAS of a request (INVITE, re-INVITE, UPDATE): (interval, refresher as
    us/them), or (0, "") when the request asks for no session timer (RFC 4028 9)."""
    parsed = parse_session_expires(session_expires) if session_expires else None
    if parsed is None:
        return 0, ""
    interval, refresher = parsed
    interval = max(interval, parse_min_se(min_se) if min_se else our_min, our_min)
    if refresher == "":  # we choose: the requester if it supports timers, else us
        refresher = "uac" if supports_timer(supported) else "uas"
    return interval, "them" if refresher == "uac" else "us"


def negotiate_response(session_expires: str) -> tuple[int, str]:
    """As the UAC, from the 2xx to our request: (interval, us/them), or (0, "") when the
    answer carries no Session-Expires (the far end does not do session timers)."""
    parsed = parse_session_expires(session_expires) if session_expires else None
    if parsed is None:
        return 0, ""
    interval, refresher = parsed
    return interval, "them" if refresher == "uas" else "us"


def request_headers(get: Get) -> list[list[str]]:
    """Headers for a request we send (INVITE, re-INVITE) in a timed session (the edge adds
    ``Supported: timer`` to every INVITE)."""
    interval = get("session_expires")
    if not interval:
        return []
    value = interval
    if get("refresher"):
        value += ";refresher=" + ("uac" if get("refresher") == "us" else "uas")
    return [["Session-Expires", value], ["Min-SE", str(MIN_SE)]]


def response_headers(get: Get) -> list[list[str]]:
    """Headers for our 2xx to a request in a timed session (RFC 4028 9: Require: timer)."""
    interval, refresher = get("session_expires"), get("refresher")
    if not interval or not refresher:
        return []
    side = "uas" if refresher == "us" else "uac"
    return [["Session-Expires", f"{interval};refresher={side}"], ["Require", "timer"]]


def due_in(interval: int, refresher: str) -> tuple[str, float]:
    """The timer to run and when: (``RefreshDue``, interval/2) when we refresh, else
    (``SessionExpired``, interval - min(32, interval/3))."""
    if refresher == "us":
        return "RefreshDue", interval / 2
    return "SessionExpired", interval - min(32.0, interval / 3)
