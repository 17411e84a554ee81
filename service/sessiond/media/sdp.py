"""SDP session descriptions (RFC 8866) that round-trip what they do not understand.

Theory of operation: a description is kept as its *lines*, in order: the session-level lines
(everything before the first ``m=``) and, per media section, the ``m=`` fields plus the lines that
follow it. Typed views (origin, connection, direction, codecs, ptime) are computed from those lines
on demand, and edits produce a new frozen object with the affected lines replaced in place. So a
line we never interpret (``a=ice-ufrag``, ``b=TIAS``, ``a=crypto``...) comes out exactly as it went
in, at the same position; with CRLF input, ``bytes(SessionDescription.parse(b)) == b``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from sessiond.media.errors import SdpError
from sessiond.media.sdp_fields import (
    DIRECTION_NAMES,
    STATIC_PAYLOAD_TYPES,
    Codec,
    Connection,
    Direction,
    Line,
    Origin,
    attribute_line,
    is_number,
    parse_rtpmap,
)

__all__ = [
    "STATIC_PAYLOAD_TYPES",
    "Codec",
    "Connection",
    "Direction",
    "Line",
    "MediaDescription",
    "Origin",
    "SessionDescription",
    "attribute_line",
]

CRLF = "\r\n"


@dataclass(frozen=True, slots=True)
class MediaDescription:
    """One media section: ``m=<media> <port>[/<number of ports>] <proto> <fmt> ...``.

    RFC 8866 section 5.14. ``lines`` are the lines after ``m=`` up to the next ``m=``.
    """

    media: str
    port: int
    proto: str
    formats: tuple[str, ...]
    lines: tuple[Line, ...] = ()
    port_count: int | None = None
    # codecs() of this (immutable) section, computed once: parsing validates them, then
    # offer/answer reads them again
    _codecs: tuple[Codec, ...] | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def parse_m_line(cls, value: str) -> MediaDescription:
        """Parse the value of an ``m=`` line (section lines are added by the caller)."""
        parts = value.split()
        if len(parts) < 4:
            raise SdpError(f"m= needs media, port, proto and at least one format: {value!r}")
        media, port_text, proto, *formats = parts
        port, _, count = port_text.partition("/")
        valid = is_number(port, 5) and (not count or is_number(count, 5))
        if not valid or int(port) > 65535:
            raise SdpError(f"m= port is not a number in 0..65535: {value!r}")
        return cls(media, int(port), proto, tuple(formats), (), int(count) if count else None)

    @property
    def m_value(self) -> str:
        """The value of the ``m=`` line."""
        port = self.port if self.port_count is None else f"{self.port}/{self.port_count}"
        return " ".join((self.media, str(port), self.proto, *self.formats))

    @property
    def rejected(self) -> bool:
        """RFC 3264 section 6: a stream is rejected (or disabled) with port zero."""
        return self.port == 0

    @property
    def is_rtp(self) -> bool:
        """True when the formats are RTP payload types (``RTP/AVP``, ``RTP/SAVPF``...)."""
        return "RTP/" in self.proto.upper()

    @property
    def connection(self) -> Connection | None:
        """The media-level ``c=`` line, if any."""
        for line in self.lines:
            if line.type == "c":
                return Connection.parse(line.value)
        return None

    @property
    def direction(self) -> Direction | None:
        """The media-level direction attribute, or None when absent."""
        return _direction_of(self.lines)

    def attributes(self, name: str) -> list[str | None]:
        """Values of every ``a=<name>`` attribute of this section, in order."""
        return _attributes(self.lines, name)

    def attribute(self, name: str) -> str | None:
        """The value of the first ``a=<name>:value`` attribute, or None."""
        return next((v for v in self.attributes(name) if v is not None), None)

    def has_attribute(self, name: str) -> bool:
        """True when ``a=<name>`` (with or without a value) is present."""
        return bool(self.attributes(name))

    @property
    def ptime(self) -> int | None:
        """``a=ptime:<packet time>`` in milliseconds (RFC 8866 section 6.4)."""
        value = self.attribute("ptime")
        if value is None:
            return None
        try:
            ms = float(value)
        except ValueError as exc:
            raise SdpError(f"malformed a=ptime: {value!r}") from exc
        if not 0 < ms <= 10_000:  # also refuses inf and nan
            raise SdpError(f"a=ptime out of range: {value!r}")
        return round(ms)

    def fmtp(self, payload_type: int) -> str | None:
        """``a=fmtp:<format> <format specific parameters>`` (RFC 8866 section 6.15)."""
        for value in self.attributes("fmtp"):
            fmt, _, params = (value or "").strip().partition(" ")
            if fmt == str(payload_type):
                return params.strip()
        return None

    def codecs(self) -> list[Codec]:
        """The RTP payload formats in ``m=`` order, typed.

        A format with ``a=rtpmap`` uses it; one without uses the RFC 3551 static table (this is
        how carriers send ``m=audio ... RTP/AVP 0 8 18``). Dynamic types with no rtpmap (seen
        from some gateways that send only ``a=fmtp``) are skipped: we cannot know what they are.
        Non-RTP sections (``udptl t38``) have no codecs.
        """
        if self._codecs is None:
            object.__setattr__(self, "_codecs", tuple(self._parse_codecs()))
        assert self._codecs is not None
        return list(self._codecs)

    def _parse_codecs(self) -> list[Codec]:
        if not self.is_rtp:
            return []
        rtpmaps: dict[int, Codec] = {}
        has_fmtp = self.has_attribute("fmtp")
        for value in self.attributes("rtpmap"):
            codec = parse_rtpmap(value or "")
            rtpmaps.setdefault(codec.payload_type, codec)
        result: list[Codec] = []
        for fmt in self.formats:
            if not is_number(fmt, 3) or int(fmt) > 127:
                raise SdpError(f"RTP payload type must be 0..127, got {fmt!r}")
            pt = int(fmt)
            known = rtpmaps.get(pt) or STATIC_PAYLOAD_TYPES.get(pt)
            if known is not None:
                fmtp = self.fmtp(pt) if has_fmtp else None
                if fmtp != known.fmtp:
                    known = Codec(
                        known.payload_type, known.name, known.clock_rate, known.channels, fmtp
                    )
                result.append(known)
        return result

    def replace_lines(self, lines: Iterable[Line]) -> MediaDescription:
        """A copy with a new line list."""
        return MediaDescription(
            self.media, self.port, self.proto, self.formats, tuple(lines), self.port_count
        )

    def serialize(self) -> Iterator[str]:
        """Yield this section's lines as text (without line endings)."""
        yield f"m={self.m_value}"
        for line in self.lines:
            yield str(line)


def _attributes(lines: Iterable[Line], name: str) -> list[str | None]:
    found: list[str | None] = []
    for line in lines:
        attr = line.attribute
        if attr is not None and attr[0] == name:
            found.append(attr[1])
    return found


def _direction_of(lines: Iterable[Line]) -> Direction | None:
    for line in lines:
        if line.type == "a" and line.value in DIRECTION_NAMES:
            return Direction(line.value)
    return None


@dataclass(frozen=True, slots=True)
class SessionDescription:
    """A whole SDP body: session-level lines followed by media sections."""

    session_lines: tuple[Line, ...]
    media: tuple[MediaDescription, ...] = ()
    _text: str | None = field(default=None, init=False, repr=False, compare=False)  # str(self)

    @classmethod
    def parse(cls, data: bytes | str) -> SessionDescription:
        """Parse an SDP body; raise :class:`SdpError` on anything malformed.

        RFC 8866 section 5: the body is ``<type>=<value>`` lines separated by CRLF (a bare LF is
        accepted, section 5 says parsers SHOULD); ``<type>`` is one case-significant letter and
        there is no whitespace on either side of ``=``; ``v=0`` comes first, ``o=`` and ``s=``
        are mandatory; a media description starts at each ``m=`` and runs to the next one.
        """
        text = _decode(data)
        session: list[Line] = []
        sections: list[tuple[MediaDescription, list[Line]]] = []
        current = session
        for raw in text.split("\n"):
            raw = raw.removesuffix("\r")
            if not raw:
                continue
            line = _parse_line(raw)
            if line.type == "m":
                current = []
                sections.append((MediaDescription.parse_m_line(line.value), current))
            else:
                current.append(line)
        result = cls(tuple(session), tuple(m.replace_lines(ls) for m, ls in sections))
        result._validate()
        return result

    def _validate(self) -> None:
        types = [line.type for line in self.session_lines]
        if not types or self.session_lines[0] != Line("v", "0"):
            raise SdpError("SDP must start with v=0 (RFC 8866 section 5.1)")
        if "o" not in types or "s" not in types:
            raise SdpError("SDP needs o= and s= lines (RFC 8866 section 5)")
        self.origin  # noqa: B018 - validates the o= line
        self.connection  # noqa: B018
        for section in self.media:
            section.connection  # noqa: B018
            section.codecs()
            section.ptime  # noqa: B018

    def __bytes__(self) -> bytes:
        return str(self).encode("utf-8")

    def __str__(self) -> str:
        if self._text is None:
            out = [str(line) for line in self.session_lines]
            for section in self.media:
                out.extend(section.serialize())
            object.__setattr__(self, "_text", CRLF.join(out) + CRLF)
        assert self._text is not None
        return self._text

    @property
    def origin(self) -> Origin:
        """The ``o=`` line."""
        for line in self.session_lines:
            if line.type == "o":
                return Origin.parse(line.value)
        raise SdpError("SDP has no o= line")

    @property
    def connection(self) -> Connection | None:
        """The session-level ``c=`` line, if any."""
        for line in self.session_lines:
            if line.type == "c":
                return Connection.parse(line.value)
        return None

    @property
    def direction(self) -> Direction | None:
        """The session-level direction attribute, or None when absent."""
        return _direction_of(self.session_lines)

    def attributes(self, name: str) -> list[str | None]:
        """Values of every session-level ``a=<name>`` attribute, in order."""
        return _attributes(self.session_lines, name)

    def media_connection(self, section: MediaDescription) -> Connection:
        """The ``c=`` that applies to a section: media-level overrides session-level.

        RFC 8866 section 5.7: a session needs a ``c=`` at session level or in every media
        section.
        """
        conn = section.connection or self.connection
        if conn is None:
            raise SdpError(f"no c= line for m={section.m_value} (RFC 8866 section 5.7)")
        return conn

    def media_direction(self, section: MediaDescription) -> Direction:
        """The direction that applies to a section.

        RFC 3264 section 5.1: a media-level direction overrides a session-level one; with
        neither, the stream is sendrecv.
        """
        return section.direction or self.direction or Direction.SENDRECV

    def with_origin(self, origin: Origin) -> SessionDescription:
        """A copy with the ``o=`` line replaced in place."""
        lines = [Line("o", str(origin)) if ln.type == "o" else ln for ln in self.session_lines]
        return dataclasses.replace(self, session_lines=tuple(lines))


def _decode(data: bytes | str) -> str:
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SdpError("SDP is not UTF-8 (RFC 8866 section 5)") from exc


def _parse_line(raw: str) -> Line:
    """RFC 8866 section 9: ``type = ALPHA``, then ``=``, then the value (may be empty)."""
    if len(raw) < 2 or raw[1] != "=" or not raw[0].isascii() or not raw[0].isalpha():
        raise SdpError(f"malformed SDP line: {raw[:80]!r}")
    return Line(raw[0], raw[2:])
