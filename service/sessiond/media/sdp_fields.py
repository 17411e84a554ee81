"""The values of single SDP lines (RFC 8866): direction, origin, connection, codec.

Split from :mod:`sessiond.media.sdp` (which holds the whole description and its parser and
re-exports these names) so each stays short; nothing here knows about sections or bodies.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from sessiond.media.errors import SdpError


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
DIRECTION_NAMES = frozenset(d.value for d in Direction)


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


def is_number(text: str, digits: int = 20) -> bool:
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
        if not (is_number(sid) and is_number(version)):
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


def parse_rtpmap(value: str) -> Codec:
    """``a=rtpmap:<payload type> <encoding name>/<clock rate>[/<encoding parameters>]``.

    RFC 8866 section 6.6; for audio the encoding parameter is the channel count (default 1).
    """
    pt_text, _, encoding = value.strip().partition(" ")
    fields = encoding.strip().split("/")
    if not is_number(pt_text, 3) or len(fields) not in (2, 3) or not is_number(fields[1], 9):
        raise SdpError(f"malformed a=rtpmap: {value!r}")
    channels = fields[2] if len(fields) == 3 else "1"
    if not is_number(channels, 3):
        raise SdpError(f"malformed a=rtpmap channel count: {value!r}")
    return Codec(int(pt_text), fields[0], int(fields[1]), int(channels))
