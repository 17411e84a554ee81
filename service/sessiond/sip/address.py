"""name-addr / addr-spec header values: From, To, Contact, Route, Record-Route (RFC 3261 20).

::

    from-spec    = ( name-addr / addr-spec ) *( SEMI from-param )
    name-addr    = [ display-name ] LAQUOT addr-spec RAQUOT
    display-name = *(token LWS)/ quoted-string
    LAQUOT = SWS "<"; RAQUOT = ">" SWS

RFC 3261 20.10: when the URI contains a comma, question mark or semicolon it MUST be
enclosed in angle brackets; a bare addr-spec's ``;params`` are header parameters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sessiond.sip.errors import SipParseError
from sessiond.sip.grammar import (
    QUOTED,
    TOKEN,
    Params,
    get_param,
    params_text,
    parse_params,
    set_param,
    unquote,
)
from sessiond.sip.memo import Memo
from sessiond.sip.uri import SCHEME_RE, SipUri, Uri, parse_uri

NAME_ADDR_RE = re.compile(
    r"[ \t]*(?:(" + QUOTED + r")|(" + TOKEN + r"(?:[ \t]+" + TOKEN + r")*))?[ \t]*<([^<>]*)>"
)
# The common shape ``[display] <uri>[;tag=x]``, matched in one pass.
FAST_RE = re.compile(
    r"(?:(" + QUOTED + r")|(" + TOKEN + r"(?:[ \t]+" + TOKEN + r")*))?"
    r"[ \t]*<([A-Za-z][A-Za-z0-9+\-.]*:[^<>\s]+)>"
    r"(?:[ \t]*;[ \t]*[Tt][Aa][Gg]=(" + TOKEN + r"))?"
)
ADDR_SPEC_RE = re.compile(r"[ \t]*([^\s;<>\"]+)")


@dataclass(frozen=True, slots=True)
class NameAddr:
    """An address with optional display name and header parameters (``tag``, ``expires``).

    ``uri`` is the URI text as written; :meth:`parsed_uri` decomposes it on demand.
    ``display_name`` is kept as written (quoted form included), see :attr:`display_text`.
    """

    uri: str
    display_name: str | None = None
    params: Params = ()

    @classmethod
    def parse(cls, text: str, what: str = "address") -> NameAddr:
        """Parse one ``name-addr`` or ``addr-spec`` followed by header parameters."""
        addr = _PARSED.get(text)
        if addr is None:
            addr = _PARSED.put(text, _parse(text, what))  # errors raise: never kept
        return addr

    def __str__(self) -> str:
        head = f"{self.display_name} <{self.uri}>" if self.display_name else f"<{self.uri}>"
        return head + params_text(self.params)

    @property
    def display_text(self) -> str | None:
        """The display name without quotes and escapes."""
        return None if self.display_name is None else unquote(self.display_name)

    @property
    def tag(self) -> str | None:
        """The ``tag`` parameter (RFC 3261 19.3), or ``None``."""
        return get_param(self.params, "tag")

    def param(self, name: str) -> str | None:
        """Value of header parameter ``name``; ``""`` when valueless, ``None`` if absent."""
        return get_param(self.params, name)

    def with_param(self, name: str, value: str | None) -> NameAddr:
        """Return a copy with header parameter ``name`` set."""
        return NameAddr(self.uri, self.display_name, set_param(self.params, name, value))

    def with_tag(self, tag: str) -> NameAddr:
        """Return a copy carrying ``;tag=`` ``tag``."""
        return self.with_param("tag", tag)

    def parsed_uri(self) -> Uri:
        """Parse :attr:`uri` (raises :class:`SipParseError` when malformed)."""
        return parse_uri(self.uri)

    def sip_uri(self) -> SipUri:
        """Parse :attr:`uri` as a SIP/SIPS URI (416 for other schemes)."""
        return SipUri.parse(self.uri)


# text -> parsed address. The From, To and Contact values of a call recur in each of its
# messages and in the responses built from them. Bounded: emptied when full.
_PARSED: Memo[NameAddr] = Memo()


def _parse(text: str, what: str) -> NameAddr:
    fast = FAST_RE.fullmatch(text)
    if fast is not None:
        quoted, tokens, uri, tag = fast.groups()
        params: Params = (("tag", tag),) if tag else ()
        return NameAddr(uri, quoted or tokens, params)
    m = NAME_ADDR_RE.match(text)
    if m is not None:
        uri = m.group(3)
        display = m.group(1) or m.group(2)
    else:
        m = ADDR_SPEC_RE.match(text)
        if m is None:
            raise SipParseError(400, f"Malformed {what} header")
        uri = m.group(1)
        display = None
        if "?" in uri or "," in uri:
            raise SipParseError(400, f"Malformed {what} header: URI needs <...>")
    if SCHEME_RE.match(uri) is None or " " in uri or "\t" in uri:
        raise SipParseError(400, f"Malformed {what} URI")
    return NameAddr(uri, display, parse_params(text, m.end(), what))
