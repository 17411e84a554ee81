"""The Via header field (RFC 3261 20.42, 18.2.1) and the branch magic cookie (8.1.1.7).

::

    via-parm      = sent-protocol LWS sent-by *( SEMI via-params )
    sent-protocol = protocol-name SLASH protocol-version SLASH transport
    sent-by       = host [ COLON port ]
    via-params    = via-ttl / via-maddr / via-received / via-branch / via-extension
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, replace

from sessiond.sip.errors import SipParseError
from sessiond.sip.grammar import (
    SIMPLE_PARAMS,
    TOKEN,
    Params,
    get_param,
    params_text,
    parse_params,
    set_param,
    split_simple_params,
)
from sessiond.sip.memo import Memo

MAGIC_COOKIE = "z9hG4bK"

VIA_RE = re.compile(
    r"[ \t]*(" + TOKEN + r")[ \t]*/[ \t]*(" + TOKEN + r")[ \t]*/[ \t]*(" + TOKEN + r")[ \t]+"
    r"([A-Za-z0-9\-.]+|\[[0-9A-Fa-f:.]+\])(?:[ \t]*:[ \t]*([0-9]{1,5}))?"
)

# What nearly every Via looks like; anything else takes the general path.
VIA_FAST_RE = re.compile(
    r"SIP/2\.0/([A-Za-z]+) ([A-Za-z0-9\-.]+)(?::([0-9]{1,5}))?(" + SIMPLE_PARAMS + r")"
)


@dataclass(frozen=True, slots=True)
class Via:
    """One Via value. ``transport`` is upper-cased (``UDP``, ``TCP``, ``TLS``...)."""

    transport: str
    host: str
    port: int | None = None
    params: Params = ()
    protocol: str = "SIP/2.0"

    @classmethod
    def parse(cls, text: str) -> Via:
        """Parse one via-parm (already split at top-level commas)."""
        return _PARSED.parse(text, _parse)

    def __str__(self) -> str:
        port = "" if self.port is None else f":{self.port}"
        return f"{self.protocol}/{self.transport} {self.host}{port}{params_text(self.params)}"

    @property
    def branch(self) -> str | None:
        """The ``branch`` parameter (transaction id when it starts with the magic cookie)."""
        return get_param(self.params, "branch")

    @property
    def received(self) -> str | None:
        """The ``received`` parameter a server adds (RFC 3261 18.2.1)."""
        return get_param(self.params, "received")

    @property
    def rport(self) -> int | None:
        """The ``rport`` value (RFC 3581); ``None`` when absent or valueless."""
        value = get_param(self.params, "rport")
        # isdigit() alone admits "²" and 5000-digit strings, which int() refuses (ValueError)
        if value is None or not (0 < len(value) <= 5 and value.isascii() and value.isdigit()):
            return None
        return int(value)

    @property
    def wants_rport(self) -> bool:
        """True when the client asked for ``rport`` (RFC 3581 3)."""
        return get_param(self.params, "rport") is not None

    @property
    def sent_by(self) -> tuple[str, int | None]:
        """The ``sent-by`` host and port."""
        return (self.host.lower(), self.port)

    def with_param(self, name: str, value: str | None) -> Via:
        """Return a copy with ``name`` set."""
        return replace(self, params=set_param(self.params, name, value))

    def with_received(self, host: str, port: int | None = None) -> Via:
        """Apply RFC 3261 18.2.1 / RFC 3581: add ``received`` and fill ``rport`` if asked."""
        via = self
        if host != self.host:
            via = via.with_param("received", host)
        if port is not None and self.wants_rport:
            if via.received is None:
                via = via.with_param("received", host)
            via = via.with_param("rport", str(port))
        return via


# text -> parsed Via. A request's Via comes back in the responses built from its ``txn``.
# Bounded: emptied when full.
_PARSED: Memo[Via] = Memo()


def _parse(text: str) -> Via:
    fast = VIA_FAST_RE.fullmatch(text)
    if fast is not None:
        transport, host, port_text, ptext = fast.groups()
        port_fast = int(port_text) if port_text else None
        if port_fast is None or port_fast <= 65535:
            params_fast = split_simple_params(ptext) if ptext else ()
            return Via(transport.upper(), host, port_fast, params_fast)
    m = VIA_RE.match(text)
    if m is None:
        raise SipParseError(400, "Malformed Via header")
    port = int(m.group(5)) if m.group(5) else None
    if port is not None and port > 65535:
        raise SipParseError(400, "Malformed Via port")
    params = parse_params(text, m.end(), "Via")
    return Via(m.group(3).upper(), m.group(4), port, params, f"{m.group(1)}/{m.group(2)}")


def is_rfc3261_branch(branch: str | None) -> bool:
    """True when ``branch`` carries the RFC 3261 magic cookie *and* an identifier."""
    return branch is not None and branch.startswith(MAGIC_COOKIE) and len(branch) > 7


def new_branch() -> str:
    """A fresh RFC 3261 branch: magic cookie + 64 random bits (8.1.1.7)."""
    return MAGIC_COOKIE + secrets.token_hex(8)
