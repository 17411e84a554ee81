"""What a UAS answers to a method it does not handle, and to an Accept it cannot satisfy
(RFC 3261 8.2.1, 8.2.3, 20.1, 21.4.6, 21.4.7, 21.5.2). Sans-I/O.

A method the UAS *recognises* but does not support is answered 405 (Method Not Allowed); one
it does not recognise at all, 501 (Not Implemented). Both carry the ``Allow`` header listing
the methods that are handled, so a peer learns what it may send. A request whose ``Accept``
admits none of the body types the answer would carry is answered 406 (Not Acceptable), with
an ``Accept`` header naming what would be sent.
"""

from __future__ import annotations

from sessiond.sip.errors import SipParseError
from sessiond.sip.message import SipRequest, SipResponse, make_response

# Methods defined by RFC 3261 and the extensions registered for SIP (IANA "SIP Methods"):
# RFC 3262 PRACK, 3265/6665 SUBSCRIBE NOTIFY, 3311 UPDATE, 3428 MESSAGE, 3515 REFER,
# 3903 PUBLISH, 6086 INFO.
KNOWN_METHODS = frozenset(
    "INVITE ACK BYE CANCEL OPTIONS REGISTER PRACK SUBSCRIBE NOTIFY PUBLISH INFO REFER "
    "MESSAGE UPDATE".split()
)


def unhandled_status(method: str) -> tuple[int, str]:
    """405 for a method we recognise but do not handle, 501 for one we do not know (8.2.1,
    21.5.2)."""
    if method in KNOWN_METHODS:
        return 405, "Method Not Allowed"
    return 501, "Not Implemented"


def not_handled(req: SipRequest, allow: str, to_tag: str | None = None) -> SipResponse:
    """The 405 or 501 for ``req``, with ``Allow: <allow>``."""
    status, reason = unhandled_status(req.method)
    return make_response(req, status, reason, headers=[("Allow", allow)], to_tag=to_tag)


def accepts(req: SipRequest, media_type: str) -> bool:
    """True when the request's ``Accept`` admits ``media_type`` (``type/subtype``).

    No Accept header means ``application/sdp`` only (20.1); an empty one admits nothing.
    Wildcards (``*/*``, ``type/*``) count, a ``q=0`` entry excludes (RFC 2616 14.1).
    """
    values = req.headers.get_all("accept")
    if not values:
        return media_type == "application/sdp"
    wanted_type = media_type.split("/", 1)[0]
    for value in values:
        for item in value.split(","):
            fields = [f.strip() for f in item.split(";")]
            if not fields[0]:
                continue
            if _q_zero(fields[1:]):
                continue
            mtype = fields[0].lower().replace(" ", "")
            if mtype in ("*/*", f"{wanted_type}/*", media_type):
                return True
    return False


def _q_zero(params: list[str]) -> bool:
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                return float(value.strip()) == 0.0
            except ValueError:
                return False
    return False


def check_accept(req: SipRequest, produces: str) -> None:
    """Raise 406 with ``Accept: <produces>`` when ``req`` does not accept ``produces``."""
    if not accepts(req, produces):
        raise SipParseError(406, f"Only {produces} can be sent", (("Accept", produces),))
