"""Request admission checks a UAS or proxy makes before processing (RFC 3261 8.2, 16.3).

Every failure raises :class:`SipParseError` with the status to answer with: 400 for
missing or malformed mandatory fields (Max-Forwards is optional for RFC 2543 requests, which
carry no magic cookie in their branch), 416 for an unsupported Request-URI scheme, 420 for
unknown Require option tags (with the ``Unsupported`` header to send), 482 for loops and
merged requests, 483 for exhausted Max-Forwards, 505 for a SIP version other than 2.0 and
513 for oversized messages.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable

from sessiond.sip.errors import SipParseError
from sessiond.sip.message import SipRequest
from sessiond.sip.uri import SipUri
from sessiond.sip.via import MAGIC_COOKIE, is_rfc3261_branch

MANDATORY = (("to", "To"), ("from", "From"), ("call-id", "Call-ID"), ("cseq", "CSeq"))
DEFAULT_SCHEMES = frozenset({"sip", "sips", "tel"})
# rfc1123-date = wkday "," SP date1 SP time SP "GMT"   (RFC 3261 20.17)
DATE_RE = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} "
    r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{4} "
    r"[0-9]{2}:[0-9]{2}:[0-9]{2} GMT"
)

MergeKey = tuple[str, str, int, str]


def validate_request(
    req: SipRequest,
    *,
    supported: Collection[str] = (),
    size: int | None = None,
    max_size: int | None = None,
    schemes: Collection[str] = DEFAULT_SCHEMES,
    proxy: bool = False,
) -> None:
    """Check ``req`` as RFC 3261 8.2 (UAS) or 16.3 (``proxy=True``) prescribes.

    ``supported`` holds the option tags this element understands (Require, or
    Proxy-Require for a proxy); ``size``/``max_size`` are the wire size and its limit.
    """
    if size is not None and max_size is not None and size > max_size:
        raise SipParseError(513, f"Message of {size} bytes exceeds {max_size}")
    if req.version != "SIP/2.0":
        raise SipParseError(505, f"{req.version} not supported")
    _check_mandatory(req)
    _check_uris(req, schemes)
    _check_fields(req)
    _check_extensions(req, supported, proxy)


def _check_mandatory(req: SipRequest) -> None:
    missing = [name for key, name in MANDATORY if key not in req.headers]
    if not req.vias:
        missing.append("Via")
    # RFC 2543 made Max-Forwards optional: a request without the magic cookie may lack it
    # and is still accepted (8.1.1.7, RFC 4475 3.2.1).
    rfc2543 = bool(req.vias) and not is_rfc3261_branch(req.branch)
    if req.headers.get("max-forwards") is None and not rfc2543:
        missing.append("Max-Forwards")
    if missing:
        raise SipParseError(400, "Missing " + ", ".join(missing))
    if req.cseq is None or req.cseq.method != req.method:
        raise SipParseError(400, "CSeq method does not match Request-Line")


def _check_uris(req: SipRequest, schemes: Collection[str]) -> None:
    uri = req.request_uri()
    if uri.scheme.lower() not in schemes:
        raise SipParseError(416, f"Unsupported URI scheme {uri.scheme}")
    # 19.1.1 Table 1: headers are not allowed in a Request-URI.
    if isinstance(uri, SipUri) and uri.headers:
        raise SipParseError(400, "Headers not allowed in Request-URI")
    if req.to_addr is None or req.from_addr is None:
        raise SipParseError(400, "Missing To or From")
    to_uri = req.to_addr.parsed_uri()
    req.from_addr.parsed_uri()
    # 10.3 step 3: the To of a REGISTER is the address-of-record, a SIP or SIPS URI.
    if req.method == "REGISTER" and not isinstance(to_uri, SipUri):
        raise SipParseError(400, "To of REGISTER must be a SIP or SIPS URI")
    for name in ("Contact", "Route", "Record-Route"):
        for addr in req.addresses(name) if name != "Contact" else req.contacts():
            addr.parsed_uri()


def _check_fields(req: SipRequest) -> None:
    _ = req.max_forwards  # raises 400 when malformed or above 255
    branch = req.branch
    if branch is not None and branch == MAGIC_COOKIE:
        raise SipParseError(400, "Malformed Via branch")
    date = req.headers.get("date")
    if date is not None and DATE_RE.fullmatch(date) is None:
        raise SipParseError(400, "Malformed Date")
    # From, To, Call-ID and CSeq duplicates are already refused by the parser.
    if req.headers.count("max-forwards") > 1:
        raise SipParseError(400, "Multiple Max-Forwards headers")


def _check_extensions(req: SipRequest, supported: Collection[str], proxy: bool) -> None:
    known = {s.lower() for s in supported}
    header = "Proxy-Require" if proxy else "Require"
    unknown = [t for t in req.option_tags(header) if t.lower() not in known]
    # 8.2.2.3: Require is not examined for ACK and CANCEL (the INVITE was accepted).
    if unknown and req.method not in ("ACK", "CANCEL"):
        raise SipParseError(
            420, "Unsupported " + ", ".join(unknown), (("Unsupported", ", ".join(unknown)),)
        )
    if proxy and req.max_forwards == 0 and req.method != "OPTIONS":
        raise SipParseError(483, "Max-Forwards exhausted")


def check_loop(req: SipRequest, local: Iterable[tuple[str, int | None]]) -> None:
    """Raise 482 when one of our ``local`` sent-by addresses is already in a Via (16.3 4).

    ``local`` holds ``(host, port)`` pairs as this element writes them in its own Via.
    Spirals (the request coming back with a different Request-URI) are the caller's call:
    pass only the addresses that mean a loop for this request.
    """
    mine = {(host.lower(), port) for host, port in local}
    for via in req.vias:
        if via.sent_by in mine:
            raise SipParseError(482, "Loop detected")


def merge_key(req: SipRequest) -> MergeKey | None:
    """Key for merged-request detection (8.2.2.2): From tag, Call-ID, CSeq of a tag-less To.

    A UAS that sees a second request with the same key but another branch answers 482.
    """
    if req.to_tag is not None or req.cseq is None or req.call_id is None:
        return None
    return (req.from_tag or "", req.call_id, req.cseq.seq, req.cseq.method)
