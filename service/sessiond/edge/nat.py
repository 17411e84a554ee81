"""Phones behind NAT: the Contact they send names their private address. Sans-I/O.

A phone behind a home router writes its LAN address (192.168.1.2:5070) in Contact, which
nobody outside its LAN can reach; the router's binding for it is the address its requests
come from (RFC 3581 rport answers responses there). When a request came straight from the
phone (one Via, no Record-Route: no proxy in between) with a Contact whose host is a private
address other than its source, the edge publishes the source as the dialog's target
instead, so our in-dialog requests (ACK, BYE, re-INVITE for hold) go back through the same
binding; the same for the 2xx of an INVITE we sent (its source: where we sent the INVITE).
Through a proxy the route set, not the Contact, decides where requests go: left alone.
"""

from __future__ import annotations

import dataclasses
import re

from sessiond.core.addresses import is_private
from sessiond.sip.errors import SipError
from sessiond.sip.uri import SipUri

# a cheap look before parsing the URI again (this runs for every request the edge receives)
_MAYBE_PRIVATE = re.compile(r"[@:](?:10\.|192\.168\.|172\.|100\.|169\.254\.|\[f)", re.I)


def reachable_contact(uri: object, source: tuple[str, int] | None, *, direct: bool) -> str:
    """The Contact URI ``uri`` as the dialog's remote target: with its host and port
    replaced by ``source`` when it is a private address behind NAT (see the module)."""
    if source is None or not direct or not _MAYBE_PRIVATE.search(str(uri)):
        return str(uri)
    if not isinstance(uri, SipUri):
        try:
            uri = SipUri.parse(str(uri))
        except SipError:
            return str(uri)
    host = uri.host.strip("[]")
    if not is_private(host) or host == source[0]:
        return str(uri)
    shown = f"[{source[0]}]" if ":" in source[0] else source[0]
    return str(dataclasses.replace(uri, host=shown, port=source[1]))
