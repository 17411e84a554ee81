"""Write the seed corpora: ``python fuzz/seeds.py OUTDIR`` makes OUTDIR/<target>/<name>.

SIP: the RFC 4475 torture messages (valid and invalid) of tests/sip; SDP: the samples of
tests/media/sdp_samples.py and the SDP bodies of the torture messages; RTP/RTCP: a few
well-formed packets built with the package itself.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def sip_seeds() -> dict[str, bytes]:
    """name -> message, from RFC 4475 (tests/sip/rfc4475.py and rfc4475_invalid.py)."""
    pkg = ModuleType("sipfixtures")
    pkg.__path__ = [str(ROOT / "tests" / "sip")]
    sys.modules["sipfixtures"] = pkg
    valid = _load("sipfixtures.rfc4475", ROOT / "tests/sip/rfc4475.py").VALID
    invalid = _load("sipfixtures.rfc4475_invalid", ROOT / "tests/sip/rfc4475_invalid.py").INVALID
    seeds = {f"valid-{name}": data for name, data in valid.items()}
    seeds.update({f"invalid-{name}": entry[0] for name, entry in invalid.items()})
    return seeds


def sdp_seeds() -> dict[str, bytes]:
    samples = _load("sdpsamples", ROOT / "tests/media/sdp_samples.py")
    seeds = {
        name.lower(): value
        for name, value in vars(samples).items()
        if name.isupper() and isinstance(value, bytes)
    }
    for name, data in sip_seeds().items():
        body = data.partition(b"\r\n\r\n")[2]
        if body.startswith(b"v=0"):
            seeds[f"sip-{name}"] = body
    return seeds


def rtp_seeds() -> dict[str, bytes]:
    from sessiond.media.rtcp import (
        Bye,
        ReceiverReport,
        ReportBlock,
        SenderReport,
        SourceDescription,
    )
    from sessiond.media.rtp import RtpExtension, RtpPacket

    block = ReportBlock(0x1234, 12, -3, 70000, 40, 0xABCD, 0x100)
    return {
        "rtp-pcmu": bytes(RtpPacket(0, 1, 160, 0xDEADBEEF, bytes(160), marker=True)),
        "rtp-full": bytes(
            RtpPacket(
                96, 65535, 2**32 - 1, 7, b"opus", False, (1, 2), RtpExtension(0xBEDE, bytes(8)), 4
            )
        ),
        "rtp-dtmf": bytes(RtpPacket(101, 9, 800, 5, b"\x01\x8a\x03\x20")),
        "rtcp-sr-sdes-bye": bytes(SenderReport(7, 2**63, 160, 10, 1600, (block,)))
        + bytes(SourceDescription(((7, ((1, b"user@host"), (6, b"sessiond"))),)))
        + bytes(Bye((7,), b"bye")),
        "rtcp-rr": bytes(ReceiverReport(9, (block, block))),
    }


def edge_path_seeds() -> dict[str, bytes]:
    """The SIP seeds, and requests whose Call-ID, From tag or Via branch holds a byte that
    is not UTF-8 (issue 18, F1), for the whole edge path."""
    seeds = sip_seeds()
    invite = (
        b"INVITE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKb;"
        b"rport\r\nFrom: <sip:a@127.0.0.1>;tag=f\r\nTo: <sip:b@127.0.0.1>\r\nCall-ID: c\r\n"
        b"CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContact: <sip:a@127.0.0.1:5062>\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    seeds["utf8-call-id"] = invite.replace(b"Call-ID: c", b"Call-ID: c\xc3")
    seeds["utf8-from-tag"] = invite.replace(b"tag=f", b"tag=f\xff")
    seeds["utf8-branch"] = invite.replace(b"z9hG4bKb", b"z9hG4bKb\xc3")
    seeds["bye"] = invite.replace(b"INVITE", b"BYE").replace(
        b"<sip:b@127.0.0.1>", b"<sip:b@h>;tag=t"
    )
    seeds["response"] = b"SIP/2.0 200 OK\r\n" + invite.split(b"\r\n", 1)[1]
    return seeds


TARGETS = {
    "sip_message": sip_seeds,
    "edge_path": edge_path_seeds,
    "sip_framer": sip_seeds,
    "sdp": sdp_seeds,
    "rtp": rtp_seeds,
}


def write(outdir: Path) -> None:
    for target, make in TARGETS.items():
        where = outdir / target
        where.mkdir(parents=True, exist_ok=True)
        for name, data in make().items():
            digest = hashlib.sha1(data).hexdigest()[:8]
            (where / f"{name}-{digest}").write_bytes(data)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "service"))
    write(Path(sys.argv[1]))
