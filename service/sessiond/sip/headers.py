"""Header field storage: ordered, raw-preserving, compact-form aware (RFC 3261 7.3, 20).

Theory of operation
-------------------
A parsed message keeps each header field as a 4-tuple ``(key, name, value, raw)``:
``key`` is the canonical lower-case long name (compact forms expanded, 7.3.3), ``name``
the name as written, ``value`` the unfolded value without surrounding whitespace, and
``raw`` the field exactly as received (folding included, no final CRLF). Serializing
writes ``raw``, so unknown and untouched fields go back out byte for byte and in order.
Fields added or replaced by code get a canonical ``raw`` of ``"Name: value"``.

Values of individual fields are parsed on demand; :class:`Headers` is immutable and every
edit returns a new instance.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from sessiond.sip.errors import SipError
from sessiond.sip.grammar import TOKEN_RE, split_commas

_NAME_RE = TOKEN_RE

HeaderField = tuple[str, str, str, str]

# RFC 3261 7.3.3 and the IANA registry of compact forms.
COMPACT_FORMS: dict[str, str] = {
    "a": "accept-contact",
    "b": "referred-by",
    "c": "content-type",
    "d": "request-disposition",
    "e": "content-encoding",
    "f": "from",
    "i": "call-id",
    "j": "reject-contact",
    "k": "supported",
    "l": "content-length",
    "m": "contact",
    "n": "identity-info",
    "o": "event",
    "r": "refer-to",
    "s": "subject",
    "t": "to",
    "u": "allow-events",
    "v": "via",
    "x": "session-expires",
    "y": "identity",
}

# Header fields whose grammar is ``#element`` (comma-separated lists, RFC 3261 7.3.1).
LIST_HEADERS = frozenset(
    {
        "accept",
        "accept-encoding",
        "accept-language",
        "alert-info",
        "allow",
        "allow-events",
        "call-info",
        "contact",
        "content-encoding",
        "content-language",
        "error-info",
        "in-reply-to",
        "path",  # RFC 3327 4
        "proxy-require",
        "record-route",
        "require",
        "route",
        "supported",
        "unsupported",
        "via",
        "warning",
    }
)


_SPECIAL_CASE = {
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "www-authenticate": "WWW-Authenticate",
    "mime-version": "MIME-Version",
}


def canonical_key(name: str) -> str:
    """Lower-case long form of a header name (``"i"`` and ``"Call-Id"`` give ``"call-id"``)."""
    key = _KEYS.get(name)
    if key is None:
        key = name.lower()
        key = COMPACT_FORMS.get(key, key)
        if len(_KEYS) < _KEYS_MAX and len(name) <= 64:
            _KEYS[name] = key
    return key


# name as written -> canonical key; the names code looks up are few. Bounded.
_KEYS: dict[str, str] = {}
_KEYS_MAX = 1024


def display_name(key: str) -> str:
    """Conventional spelling of a header name for fields we generate."""
    return _SPECIAL_CASE.get(key) or "-".join(p.capitalize() for p in key.split("-"))


def make_field(name: str, value: str) -> HeaderField:
    """Build a field as code writes it: ``Name: value``.

    Raises :class:`SipError` for a name that is not a token or a value holding CR or LF
    (which would inject header lines).
    """
    if not _NAME_RE.fullmatch(name) or "\r" in value or "\n" in value:
        raise SipError(f"invalid header field {name!r}")
    return (canonical_key(name), name, value, f"{name}: {value}")


class Headers:
    """An immutable, ordered collection of header fields."""

    __slots__ = ("_index", "_text", "fields")

    def __init__(self, fields: Iterable[HeaderField] = (), text: str | None = None) -> None:
        self.fields: tuple[HeaderField, ...] = tuple(fields)
        # The header block as received (raw lines joined by CRLF), when known.
        self._text = text
        # key -> values of its lines, in order; built by the first lookup. Tuples, not
        # lists: the garbage collector stops tracking a tuple of strings, and messages are
        # kept for as long as their transactions (32 s), so lists were a third of the
        # objects each of its full collections visits in a loaded edge.
        self._index: dict[str, tuple[str, ...]] | None = None

    def _lines(self, key: str) -> tuple[str, ...]:
        """Values of the lines of canonical ``key``."""
        index = self._index
        if index is None:
            index = {}
            repeated: dict[str, list[str]] = {}  # keys of several lines: all their values
            for k, _, value, _ in self.fields:
                if k not in index:
                    index[k] = (value,)
                elif k in repeated:
                    repeated[k].append(value)
                else:
                    repeated[k] = [*index[k], value]
            for k, values in repeated.items():
                index[k] = tuple(values)
            self._index = index
        return index.get(key, ())

    @classmethod
    def of(cls, pairs: Iterable[tuple[str, str]]) -> Headers:
        """Build from ``(name, value)`` pairs."""
        return cls(make_field(n, v) for n, v in pairs)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return ((f[1], f[2]) for f in self.fields)

    def __len__(self) -> int:
        return len(self.fields)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        return bool(self._lines(canonical_key(name)))

    def __repr__(self) -> str:
        return f"Headers({[(f[1], f[2]) for f in self.fields]!r})"

    def get(self, name: str) -> str | None:
        """Value of the first field called ``name`` (any form), or ``None``."""
        lines = self._lines(canonical_key(name))
        return lines[0] if lines else None

    def get_all(self, name: str) -> list[str]:
        """Values of every field called ``name``, one per header line, in order."""
        return list(self._lines(canonical_key(name)))

    def values(self, name: str) -> list[str]:
        """Every element of a header: repeated lines and comma-separated values, in order.

        Only list-valued headers (``#element`` grammar) are split at commas; other fields
        (``Date``, ``WWW-Authenticate``...) are returned one value per line.
        """
        key = canonical_key(name)
        lines = self._lines(key)
        if key not in LIST_HEADERS:
            return list(lines)
        return [v for line in lines for v in split_commas(line) if v]

    def count(self, name: str) -> int:
        """Number of lines of header ``name``."""
        return len(self._lines(canonical_key(name)))

    def raw_text(self) -> str:
        """The header block as it will be written: raw lines joined by CRLF."""
        if self._text is None:
            self._text = "\r\n".join([f[3] for f in self.fields])
        return self._text

    def add(self, name: str, value: str, *, first: bool = False) -> Headers:
        """Return a copy with a new field appended (or inserted first)."""
        field = make_field(name, value)
        return Headers((field, *self.fields) if first else (*self.fields, field))

    def replace_first_value(self, name: str, value: str) -> Headers:
        """Return a copy where the first element of header ``name`` is ``value``.

        Used to rewrite the top Via, which may share its line with other Via values.
        """
        key = canonical_key(name)
        out = list(self.fields)
        for i, f in enumerate(out):
            if f[0] == key:
                rest = split_commas(f[2])[1:]
                out[i] = make_field(f[1], ", ".join([value, *rest]))
                return Headers(out)
        return Headers([*out, make_field(name, value)])

    def remove(self, name: str) -> Headers:
        """Return a copy without any field called ``name``."""
        key = canonical_key(name)
        return Headers(f for f in self.fields if f[0] != key)

    def replace(self, name: str, value: str | list[str]) -> Headers:
        """Return a copy where ``name`` has exactly the given value(s).

        The new lines take the position (and the name spelling) of the first old one,
        or go last.
        """
        key = canonical_key(name)
        values = [value] if isinstance(value, str) else value
        spelling = next((f[1] for f in self.fields if f[0] == key), name)
        new = [make_field(spelling, v) for v in values]
        out: list[HeaderField] = []
        placed = False
        for f in self.fields:
            if f[0] != key:
                out.append(f)
            elif not placed:
                out.extend(new)
                placed = True
        if not placed:
            out.extend(new)
        return Headers(out)
