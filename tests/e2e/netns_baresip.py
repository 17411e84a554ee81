"""Run inside a private network namespace (``unshare -n``): Redis, sessiond run and baresip
(the shared start-up: netns_run.py).

    unshare -n python netns_baresip.py WORKDIR [tls]

Starts ``sessiond run`` and baresip (config in WORKDIR/baresip) dialling sessiond with an
880 Hz WAV as microphone. Once the call is Established it tells sessiond (``sessiond ctl``)
to play 440 Hz for 4 s and to record what baresip sends; then hangs up. baresip's sndfile
module dumps what it heard (``*-dec.wav``). With ``tls`` sessiond also listens on TLS
(certificate WORKDIR/server.crt and .key, made by the test) and baresip dials
``;transport=tls`` over it (its /dial takes no ``sips:``), trusting WORKDIR/ca.pem. Writes
WORKDIR/result.json (``error`` says what went wrong).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the shared helpers
from harness import wait_for  # noqa: E402
from media_checks import app_events, write_tone_wav  # noqa: E402
from netns_run import (  # noqa: E402
    BARESIP_PORT,
    NAMESPACE,
    SIP_PORT,
    Procs,
    baresip_command,
    ctl,
    drive,
    stop,
    wait_established,
    write_baresip,
)

TLS_PORT = 5091
TONE_TO_BARESIP = 440.0
TONE_FROM_BARESIP = 880.0
PLAY_SECONDS = 4.0


def call(work: Path, procs: Procs, client: Any, result: dict[str, Any], tls: bool) -> None:
    procs.sessiond(
        *("--listen", f"udp:127.0.0.1:{SIP_PORT}", "--rtp-ports", "20000-20100"),
        *("--answer", "auto"),
        *(
            ["--listen", f"tls:127.0.0.1:{TLS_PORT}", "--tls-ca", str(work / "ca.pem")]
            + ["--tls-cert", str(work / "server.crt"), "--tls-key", str(work / "server.key")]
            if tls
            else []
        ),
    )
    source = work / "baresip_source.wav"
    write_tone_wav(source, TONE_FROM_BARESIP, 20.0)
    cfg, dump = write_baresip(
        work,
        f"127.0.0.1:{BARESIP_PORT}",
        "<sip:alice@127.0.0.1>;regint=0\n",
        source,
        extra_config=f"sip_cafile {work / 'ca.pem'}\n" if tls else "",
    )
    target = f"sip:bob@127.0.0.1:{SIP_PORT}"
    if tls:
        target = f"sip:bob@127.0.0.1:{TLS_PORT};transport=tls"
    baresip = procs.start(
        "baresip", baresip_command(cfg, 40, "-n", "127.0.0.1", "-t", "30", dial=target)
    )
    sid = wait_established(baresip)
    result["sid"] = sid
    result["show"] = ctl("show", sid)
    recording = work / "sessiond_heard.wav"
    result["sessiond_recording"] = str(recording)
    ctl("record", sid, str(recording), "--direction", "in")
    ctl("play", sid, "--tone", str(TONE_TO_BARESIP), "--seconds", str(PLAY_SECONDS))
    time.sleep(PLAY_SECONDS + 0.5)
    ctl("record", sid, "--stop")
    ctl("hangup", sid)
    result["terminated"] = wait_for(lambda: "Terminated" in ctl("show", sid), 10, every=0.3)
    result["show_end"] = ctl("show", sid)
    time.sleep(0.5)  # let baresip close its dump files after the BYE
    stop(baresip)
    result["baresip_dumps"] = sorted(str(p) for p in dump.glob("*.wav"))
    result["app_events"] = app_events(client, f"{NAMESPACE}:{{app}}:events")


if __name__ == "__main__":
    tls = sys.argv[2:] == ["tls"]
    drive(lambda work, procs, client, result: call(work, procs, client, result, tls))
