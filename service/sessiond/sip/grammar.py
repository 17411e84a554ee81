"""Shared lexical rules of RFC 3261 section 25 (ABNF), as compiled regular expressions.

Header values reach these helpers already unfolded: RFC 3261 7.3.1 says a folded line
(CRLF followed by SP/HTAB) is equivalent to a single SP, so ``LWS`` here is ``[ \\t]+``.
"""

from __future__ import annotations

import re

from sessiond.sip.errors import SipParseError

# token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~" )
TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
TOKEN_RE = re.compile(TOKEN)

# quoted-string = SWS DQUOTE *(qdtext / quoted-pair ) DQUOTE
# quoted-pair   = "\" (%x00-09 / %x0B-0C / %x0E-7F)
QUOTED = r'"(?:[^"\\\r\n]|\\[^\r\n])*"'

# generic-param = token [ EQUAL gen-value ];  gen-value = token / host / quoted-string
# SEMI = SWS ";" SWS, EQUAL = SWS "=" SWS.  Values are accepted leniently (any run of
# non-separators) because RFC 4475 3.1.1.2 requires accepting UTF-8 in a from-param.
PARAM_RE = re.compile(
    r"[ \t]*;[ \t]*(" + TOKEN + r")(?:[ \t]*=[ \t]*(" + QUOTED + r'|[^\s;,"<>]+))?'
)

Params = tuple[tuple[str, str | None], ...]

# Fast path for the common case: ``;name=token`` runs without quotes or whitespace.
SIMPLE_PARAMS = r"(?:;" + TOKEN + r"(?:=[A-Za-z0-9\-.!%*_+`'~:\[\]]+)?)*"


def split_simple_params(text: str) -> Params:
    """Split params already validated against :data:`SIMPLE_PARAMS`."""
    out: list[tuple[str, str | None]] = []
    for p in text[1:].split(";"):
        name, eq, value = p.partition("=")
        out.append((name, value if eq else None))
    return tuple(out)


def parse_params(text: str, pos: int, what: str) -> Params:
    """Parse ``*( SEMI generic-param )`` from ``text[pos:]`` to the end of ``text``."""
    out: list[tuple[str, str | None]] = []
    end = len(text)
    match = PARAM_RE.match
    while pos < end:
        m = match(text, pos)
        if m is None:
            if text[pos:].strip():
                raise SipParseError(400, f"Malformed {what} parameters")
            break
        out.append((m.group(1), m.group(2)))
        pos = m.end()
    return tuple(out)


def params_text(params: Params) -> str:
    """Serialize parameters as ``;name=value`` pairs (``;name`` when valueless)."""
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params)


def get_param(params: Params, name: str) -> str | None:
    """Return the value of parameter ``name`` (case-insensitive); ``""`` if valueless."""
    lname = name.lower()
    for k, v in params:
        if k.lower() == lname:
            return "" if v is None else v
    return None


def set_param(params: Params, name: str, value: str | None) -> Params:
    """Return ``params`` with ``name`` set to ``value`` (replacing, or appended)."""
    lname = name.lower()
    out = [(k, v) for k, v in params if k.lower() != lname]
    out.append((name, value))
    return tuple(out)


def unquote(text: str) -> str:
    """Remove the quotes and quoted-pair escapes of a quoted-string (RFC 3261 25.1)."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        inner = text[1:-1]
        if "\\" not in inner:
            return inner
        return re.sub(r"\\(.)", r"\1", inner, flags=re.DOTALL)
    return text


def quote(text: str) -> str:
    """Make a quoted-string of ``text``, escaping ``"`` and ``\\``."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def split_commas(value: str) -> list[str]:
    """Split a header value at top-level commas (RFC 3261 7.3.1).

    Commas inside a quoted-string or inside ``<...>`` do not separate values.
    """
    if '"' not in value and "<" not in value:
        return [v.strip() for v in value.split(",")]
    out: list[str] = []
    start = 0
    in_quote = in_angle = escaped = False
    for i, ch in enumerate(value):
        if escaped:
            escaped = False
        elif in_quote:
            if ch == "\\":
                escaped = True
            elif ch == '"':
                in_quote = False
        elif ch == '"':
            in_quote = True
        elif ch == "<":
            in_angle = True
        elif ch == ">":
            in_angle = False
        elif ch == "," and not in_angle:
            out.append(value[start:i].strip())
            start = i + 1
    out.append(value[start:].strip())
    return out
