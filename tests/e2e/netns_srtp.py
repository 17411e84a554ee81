"""Run inside a private network namespace (``unshare -n``): baresip with SRTP and sessiond.

    unshare -n python netns_srtp.py WORKDIR MODE [POLICY MEDIAENC]

Like :mod:`netns_baresip` (Redis, ``sessiond run`` and baresip in the namespace, started by
netns_run.py), with SRTP:
baresip's account uses ``mediaenc=MEDIAENC`` (default ``srtp-mand``: RTP/SAVP, SDES;
``srtp`` is best effort: RTP/AVP with ``a=crypto``; ``none``: plain RTP) and everything on ``lo`` is
captured (an AF_PACKET socket, written as WORKDIR/wire.pcap) while the call runs. MODE:

* ``calls``: baresip calls ``sessiond run --srtp POLICY`` (default ``require``);
* ``called``: ``sessiond ctl call`` makes sessiond (``--srtp POLICY``) call baresip, which
  answers by itself;
* ``gateway``: baresip calls ``sessiond run`` (``--srtp off``) whose routes forward the call,
  the caller's leg with ``srtp: require``, to sipp (plain RTP/AVP, echoing the RTP it gets).

In ``calls`` and ``called`` sessiond plays 440 Hz to baresip for 4 s and records what baresip
sends (its microphone: an 880 Hz WAV); in ``gateway`` baresip hears its own 880 Hz back
through both legs and sipp's echo. baresip's sndfile module dumps what it decoded. Writes
WORKDIR/result.json; exit 0 whether or not the call worked (the test judges).
"""

from __future__ import annotations

import socket
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the shared helpers
from harness import wait_for  # noqa: E402
from media_checks import app_events, write_tone_wav  # noqa: E402
from netns_baresip import PLAY_SECONDS, TONE_FROM_BARESIP, TONE_TO_BARESIP  # noqa: E402
from netns_run import (  # noqa: E402
    BARESIP_PORT,
    NAMESPACE,
    SIP_PORT,
    Procs,
    baresip_command,
    ctl,
    drive,
    wait_established,
    write_baresip,
)

SIPP_PORT = 5080
SIPP_MEDIA_PORT = 6000
ROUTES = f"""\
rules:
  - match: {{to: "sip:echo@*"}}
    do: {{forward: "sip:echo@127.0.0.1:{SIPP_PORT}"}}
    srtp: require
"""
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


class Capture:
    """Every frame on ``lo`` (each once: outgoing copies are skipped), to a classic pcap."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.bind(("lo", 0))
        self.sock.settimeout(0.2)
        self.frames: list[tuple[float, bytes]] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.is_set() and len(self.frames) < 100_000:
            try:
                frame, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            if addr[2] != PACKET_OUTGOING:
                self.frames.append((time.time(), frame))

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)
        self.sock.close()
        out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
        for at, frame in self.frames:
            out.append(struct.pack("<IIII", int(at), int(at % 1 * 1e6), len(frame), len(frame)))
            out.append(frame)
        self.path.write_bytes(b"".join(out))


def bound(port: int) -> bool:
    """True once something holds UDP ``port`` on 127.0.0.1 (sipp answers no OPTIONS)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def start_baresip(procs: Procs, work: Path, dial: str | None, mediaenc: str) -> Any:
    source = work / "baresip_source.wav"
    write_tone_wav(source, TONE_FROM_BARESIP, 30.0)
    encryption = "" if mediaenc == "none" else f";mediaenc={mediaenc}"  # none: plain RTP
    account = f"<sip:alice@127.0.0.1>;regint=0{encryption};answermode=auto\n"
    cfg, _ = write_baresip(
        work, f"127.0.0.1:{BARESIP_PORT}", account, source, extra_config="module srtp.so\n"
    )
    return procs.start(
        "baresip", baresip_command(cfg, 45, "-n", "127.0.0.1", "-t", "35", dial=dial)
    )


def play_and_record(work: Path, sid: str, result: dict[str, Any]) -> None:
    recording = work / "sessiond_heard.wav"
    result["sessiond_recording"] = str(recording)
    ctl("record", sid, str(recording), "--direction", "in")
    ctl("play", sid, "--tone", str(TONE_TO_BARESIP), "--seconds", str(PLAY_SECONDS))
    time.sleep(PLAY_SECONDS + 0.5)
    ctl("record", sid, "--stop")


def run_sessiond(procs: Procs, work: Path, mode: str, policy: str) -> None:
    command = ["--listen", f"udp:127.0.0.1:{SIP_PORT}", "--rtp-ports", "20000-20100"]
    if mode == "gateway":
        (work / "routes.yaml").write_text(ROUTES)
        command += ["--srtp", "off", "--routes", str(work / "routes.yaml")]
    else:
        command += ["--srtp", policy, "--answer", "auto"]
    procs.sessiond(*command)


def live_sdp(client: Any) -> dict[str, str]:
    """The SRTP leg's SDP bodies during the call, keys included (this test's own files): the
    test checks the SRTCP it captured against them."""
    for key in client.scan_iter(f"{NAMESPACE}:*:session:*"):
        sdp = {n: (client.hget(key, f"{n}_sdp") or b"").decode() for n in ("local", "remote")}
        if "a=crypto" in sdp["local"]:
            return sdp
    return {}


def after_the_call(client: Any) -> dict[str, Any]:
    """Every session once all have ended (their hashes), and every history entry."""

    def all_ended() -> bool:
        keys = list(client.scan_iter(f"{NAMESPACE}:*:session:*"))
        return all(client.hget(key, "state") == b"Terminated" for key in keys)

    ended = wait_for(all_ended, 10, every=0.3)
    return {
        "all_ended": ended,
        "ended_sessions": [
            {k.decode(): v.decode(errors="replace") for k, v in client.hgetall(key).items()}
            for key in client.scan_iter(f"{NAMESPACE}:*:session:*")
        ],
        "history": [  # one text line per step (store/history.py)
            line.decode(errors="replace")
            for key in client.scan_iter(f"{NAMESPACE}:*:history:*")
            for line in client.lrange(key, 0, -1)
        ],
    }


def call(
    work: Path, procs: Procs, client: Any, result: dict[str, Any], mode: str, policy: str,
    mediaenc: str,
) -> None:  # fmt: skip
    run_sessiond(procs, work, mode, policy)
    capture = Capture(work / "wire.pcap")
    try:
        if mode == "gateway":
            procs.start(
                "sipp",
                ["timeout", "45", "sipp", "-sn", "uas", "-i", "127.0.0.1", "-p", str(SIPP_PORT)]
                + ["-mp", str(SIPP_MEDIA_PORT), "-rtp_echo", "-m", "1", "-nostdin"],
            )
            if not wait_for(lambda: bound(SIPP_PORT), timeout=10):
                raise RuntimeError("sipp did not bind its SIP port")
        dial = {
            "calls": f"sip:bob@127.0.0.1:{SIP_PORT}",
            "gateway": f"sip:echo@127.0.0.1:{SIP_PORT}",
        }.get(mode)
        baresip = start_baresip(procs, work, dial, mediaenc)
        if mode == "called":
            time.sleep(1.0)  # baresip listening
            ctl("call", f"sip:alice@127.0.0.1:{BARESIP_PORT}")
        sid = wait_established(baresip)
        result["sid"] = sid
        result["sessions"] = ctl("list")
        if mode == "gateway":
            time.sleep(PLAY_SECONDS + 0.5)  # baresip's 880 Hz goes to sipp and back
        else:
            play_and_record(work, sid, result)
        result["session_fields"] = ctl("show", sid)
        result["live_sdp"] = live_sdp(client)
        ctl("hangup", sid)
        result["terminated"] = wait_for(lambda: "Terminated" in ctl("show", sid), 10, every=0.3)
        time.sleep(0.5)  # let baresip close its dump files after the BYE
        baresip.terminate()
        result["baresip_dumps"] = sorted(str(p) for p in (work / "dump").glob("*.wav"))
        result["app_events"] = app_events(client, f"{NAMESPACE}:{{app}}:events")
        result.update(after_the_call(client))
    finally:
        capture.stop()
        result["pcap"] = str(capture.path)


if __name__ == "__main__":
    how = sys.argv[2]
    policy, mediaenc = (sys.argv[3:5] + ["require", "srtp-mand"][len(sys.argv[3:5]) :])[:2]
    drive(
        lambda work, procs, client, result: call(
            work, procs, client, result, how, policy, mediaenc
        ),
        mode=how,
    )
