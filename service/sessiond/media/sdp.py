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
from enum import Enum

from sessiond.media.errors import SdpError

CRLF = "\r\n"


class Direction(Enum):
    """Media direction attributes (RFC 8866 section 6.7; RFC 3264 section 5.1)."""

    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    @property
    def sends(self) -> bool:
        """True when the side that wrote this attribute sends media."""
        return self in (Direction.SENDRECV, Direction.SENDONLY)

    @property
    def receives(self) -> bool:
        """True when the side that wrote this attribute wants to receive media."""
        return self in (Direction.SENDRECV, Direction.RECVONLY)

    def reversed(self) -> Direction:
        """The direction seen from the other side (sendonly <-> recvonly)."""
        return _REVERSED[self]

    @classmethod
    def from_flags(cls, sends: bool, receives: bool) -> Direction:
        """Build a direction from what the writing side does."""
        if sends and receives:
            return cls.SENDRECV
        if sends:
            return cls.SENDONLY
        return cls.RECVONLY if receives else cls.INACTIVE


_REVERSED = {
    Direction.SENDRECV: Direction.SENDRECV,
    Direction.SENDONLY: Direction.RECVONLY,
    Direction.RECVONLY: Direction.SENDONLY,
    Direction.INACTIVE: Direction.INACTIVE,
}
_DIRECTION_NAMES = frozenset(d.value for d in Direction)


@dataclass(frozen=True, slots=True)
class Line:
    """One ``<type>=<value>`` line (RFC 8866 section 5: type is exactly one letter)."""

    type: str
    value: str

    def __str__(self) -> str:
        return f"{self.type}={self.value}"

    @property
    def attribute(self) -> tuple[str, str | None] | None:
        """For ``a=`` lines, ``(name, value)``; value is None for property attributes.

        RFC 8866 section 5.13: ``attribute = (attribute-name ":" attribute-value) /
        attribute-name``.
        """
        if self.type != "a":
            return None
        name, sep, value = self.value.partition(":")
        return (name, value if sep else None)


def attribute_line(name: str, value: str | None = None) -> Line:
    """Build an ``a=name[:value]`` line."""
    return Line("a", name if value is None else f"{name}:{value}")


def _is_number(text: str, digits: int = 20) -> bool:
    """An unsigned decimal of at most ``digits`` ASCII digits (``str.isdigit`` alone also
    accepts ``'²'`` and numbers too long for ``int``)."""
    return 0 < len(text) <= digits and text.isascii() and text.isdigit()


@dataclass(frozen=True, slots=True)
class Origin:
    """``o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>``.

    RFC 8866 section 5.2. Session id and version are kept as integers (they are numeric strings
    in practice; RFC 3264 section 8 increments the version on every change).
    """

    username: str
    session_id: int
    version: int
    nettype: str
    addrtype: str
    address: str

    @classmethod
    def parse(cls, value: str) -> Origin:
        """Parse the value of an ``o=`` line."""
        parts = value.split()
        if len(parts) != 6:
            raise SdpError(f"o= needs 6 fields, got {len(parts)}: {value!r}")
        user, sid, version, nettype, addrtype, address = parts
        if not (_is_number(sid) and _is_number(version)):
            raise SdpError(f"o= session id and version must be numeric: {value!r}")
        return cls(user, int(sid), int(version), nettype, addrtype, address)

    def __str__(self) -> str:
        return (
            f"{self.username} {self.session_id} {self.version} "
            f"{self.nettype} {self.addrtype} {self.address}"
        )


@dataclass(frozen=True, slots=True)
class Connection:
    """``c=<nettype> <addrtype> <connection-address>`` (RFC 8866 section 5.7).

    ``address`` keeps any ``/ttl/count`` suffix of multicast addresses; ``host`` strips it.
    """

    nettype: str
    addrtype: str
    address: str

    @classmethod
    def parse(cls, value: str) -> Connection:
        """Parse the value of a ``c=`` line."""
        parts = value.split()
        if len(parts) != 3:
            raise SdpError(f"c= needs 3 fields, got {len(parts)}: {value!r}")
        return cls(parts[0], parts[1], parts[2])

    @property
    def host(self) -> str:
        """The address without multicast ``/ttl`` or ``/count`` suffixes."""
        return self.address.split("/", 1)[0]

    @property
    def is_null(self) -> bool:
        """True for the RFC 2543 hold form ``c=IN IP4 0.0.0.0`` (RFC 3264 section 8.4)."""
        return self.host in ("0.0.0.0", "::")

    def __str__(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"


@dataclass(frozen=True, slots=True)
class Codec:
    """One payload format of an ``m=`` line, from ``a=rtpmap``/``a=fmtp`` or RFC 3551."""

    payload_type: int
    name: str
    clock_rate: int
    channels: int = 1
    fmtp: str | None = None

    def same_format(self, other: Codec) -> bool:
        """Same encoding name (case-insensitive, RFC 4855 section 3), clock rate and channels."""
        return (
            self.name.lower() == other.name.lower()
            and self.clock_rate == other.clock_rate
            and self.channels == other.channels
        )

    @property
    def rtpmap(self) -> str:
        """The value of this codec's ``a=rtpmap`` attribute."""
        suffix = f"/{self.channels}" if self.channels != 1 else ""
        return f"{self.payload_type} {self.name}/{self.clock_rate}{suffix}"


# RFC 3551 section 6, tables 4 and 5: payload types with a static meaning that need no rtpmap.
STATIC_PAYLOAD_TYPES: dict[int, Codec] = {
    pt: Codec(pt, name, rate, channels)
    for pt, name, rate, channels in (
        (0, "PCMU", 8000, 1),
        (3, "GSM", 8000, 1),
        (4, "G723", 8000, 1),
        (5, "DVI4", 8000, 1),
        (6, "DVI4", 16000, 1),
        (7, "LPC", 8000, 1),
        (8, "PCMA", 8000, 1),
        (9, "G722", 8000, 1),
        (10, "L16", 44100, 2),
        (11, "L16", 44100, 1),
        (12, "QCELP", 8000, 1),
        (13, "CN", 8000, 1),
        (14, "MPA", 90000, 1),
        (15, "G728", 8000, 1),
        (16, "DVI4", 11025, 1),
        (17, "DVI4", 22050, 1),
        (18, "G729", 8000, 1),
        (25, "CelB", 90000, 1),
        (26, "JPEG", 90000, 1),
        (28, "nv", 90000, 1),
        (31, "H261", 90000, 1),
        (32, "MPV", 90000, 1),
        (33, "MP2T", 90000, 1),
        (34, "H263", 90000, 1),
    )
}


def _parse_rtpmap(value: str) -> Codec:
    """``a=rtpmap:<payload type> <encoding name>/<clock rate>[/<encoding parameters>]``.

    RFC 8866 section 6.6; for audio the encoding parameter is the channel count (default 1).
    """
    pt_text, _, encoding = value.strip().partition(" ")
    fields = encoding.strip().split("/")
    if not _is_number(pt_text, 3) or len(fields) not in (2, 3) or not _is_number(fields[1], 9):
        raise SdpError(f"malformed a=rtpmap: {value!r}")
    channels = fields[2] if len(fields) == 3 else "1"
    if not _is_number(channels, 3):
        raise SdpError(f"malformed a=rtpmap channel count: {value!r}")
    return Codec(int(pt_text), fields[0], int(fields[1]), int(channels))


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
        valid = _is_number(port, 5) and (not count or _is_number(count, 5))
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
            codec = _parse_rtpmap(value or "")
            rtpmaps.setdefault(codec.payload_type, codec)
        result: list[Codec] = []
        for fmt in self.formats:
            if not _is_number(fmt, 3) or int(fmt) > 127:
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
        if line.type == "a" and line.value in _DIRECTION_NAMES:
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

    def replace_media(self, index: int, section: MediaDescription) -> SessionDescription:
        """A copy with media section ``index`` replaced."""
        media = list(self.media)
        media[index] = section
        return dataclasses.replace(self, media=tuple(media))

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
