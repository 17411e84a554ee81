"""Run inside a private network namespace (``unshare -n``): Redis, sessiond run and baresip.

baresip binds wildcard addresses, so it runs in a namespace of its own where only loopback
exists; everything it talks to (sessiond, and the Redis sessiond uses) must live there too.

    unshare -n python netns_baresip.py WORKDIR [tls]

Brings ``lo`` up, starts ``redis-server`` on 127.0.0.1:6379, ``sessiond run`` on it, and baresip
(config generated in WORKDIR/baresip) dialling sessiond with an 880 Hz WAV as microphone. Once
the call is Established it tells sessiond (``sessiond ctl``) to play 440 Hz for 4 s and to record
what baresip sends; then hangs up. baresip's sndfile module dumps what it heard (``*-dec.wav``).
With ``tls`` sessiond also listens on TLS (certificate WORKDIR/server.crt and .key, made by
the test) and baresip dials ``;transport=tls`` over it (its /dial takes no ``sips:``),
trusting WORKDIR/ca.pem. Writes WORKDIR/result.json; every process is bounded in time and
killed at the end. Exit 0 whether or not the call worked: the test judges the result
(``error`` says what went wrong).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import redis as sync_redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the shared helpers
from harness import wait_for, wait_listening  # noqa: E402
from media_checks import app_events, write_tone_wav  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "service")}
REDIS_URL = "redis://127.0.0.1:6379/0"
NAMESPACE = "netns"
SIP_PORT = 5090
TLS_PORT = 5091
BARESIP_PORT = 5070
TONE_TO_BARESIP = 440.0
TONE_FROM_BARESIP = 880.0
PLAY_SECONDS = 4.0

BARESIP_CONFIG = """\
poll_method epoll
sip_listen 127.0.0.1:{baresip_port}
call_local_timeout 20
audio_path /usr/share/baresip
audio_player aubridge,nil
audio_alert aubridge,nil
audio_source aufile,{source}
ausrc_srate 8000
auplay_srate 8000
ausrc_channels 1
auplay_channels 1
rtp_ports 10000-10100
rtcp_mux no
jitter_buffer_delay 1-10
module_path /usr/lib/baresip/modules
module g711.so
module aufile.so
module aubridge.so
module sndfile.so
module menu.so
module_app account.so
snd_path {dump}
"""


class Procs:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Any] = []

    def start(self, name: str, cmd: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.work / f"{name}.log", "wb")  # noqa: SIM115 - closed in stop_all
        self.logs.append(log)
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=ENV, cwd=self.work)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=8)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in self.logs:
            log.close()


def ctl(*args: str) -> str:
    cmd = [sys.executable, "-m", "sessiond", "ctl", "--redis", REDIS_URL, "--namespace", NAMESPACE]
    out = subprocess.run(
        [*cmd, *args], capture_output=True, text=True, env=ENV, timeout=15, check=True
    )
    return out.stdout


def established() -> str | None:
    for line in ctl("list", "--state", "Established").splitlines()[1:]:
        fields = line.split()
        if len(fields) > 2 and fields[2] == "Established":
            return fields[0]
    return None


def main(work: Path, tls: bool = False) -> dict[str, Any]:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=10)
    procs = Procs(work)
    result: dict[str, Any] = {"error": None}
    client = None
    try:
        procs.start(
            "redis",
            ["redis-server", "--port", "6379", "--bind", "127.0.0.1", "--save", ""]
            + ["--appendonly", "no", "--daemonize", "no"],
        )
        client = sync_redis.Redis.from_url(REDIS_URL)

        def redis_up() -> bool:
            try:
                return bool(client.ping())
            except sync_redis.ConnectionError:
                return False

        if not wait_for(redis_up, timeout=10):
            raise RuntimeError("redis-server did not start in the namespace")
        procs.start(
            "sessiond",
            [sys.executable, "-m", "sessiond", "run", "--redis", REDIS_URL]
            + ["--namespace", NAMESPACE, "--listen", f"udp:127.0.0.1:{SIP_PORT}"]
            + ["--rtp-ports", "20000-20100", "--answer", "auto"]
            + (
                ["--listen", f"tls:127.0.0.1:{TLS_PORT}", "--tls-ca", str(work / "ca.pem")]
                + ["--tls-cert", str(work / "server.crt"), "--tls-key", str(work / "server.key")]
                if tls
                else []
            ),
        )
        wait_listening(SIP_PORT)

        cfg, dump = work / "baresip", work / "dump"
        cfg.mkdir(exist_ok=True)
        dump.mkdir(exist_ok=True)
        source = work / "baresip_source.wav"
        write_tone_wav(source, TONE_FROM_BARESIP, 20.0)
        config = BARESIP_CONFIG.format(baresip_port=BARESIP_PORT, source=source, dump=dump)
        if tls:
            config += f"sip_cafile {work / 'ca.pem'}\n"
        (cfg / "config").write_text(config)
        target = f"sip:bob@127.0.0.1:{SIP_PORT}"
        if tls:
            target = f"sip:bob@127.0.0.1:{TLS_PORT};transport=tls"
        (cfg / "accounts").write_text("<sip:alice@127.0.0.1>;regint=0\n")
        baresip = procs.start(
            "baresip",
            ["timeout", "40", "baresip", "-4", "-n", "127.0.0.1", "-f", str(cfg)]
            + ["-e", f"/dial {target}", "-t", "30"],
        )
        sid = None
        deadline = time.monotonic() + 15
        while sid is None and time.monotonic() < deadline and baresip.poll() is None:
            sid = established()
            time.sleep(0.2)
        if sid is None:
            raise RuntimeError("no Established session: baresip did not call, or no answer")
        result["sid"] = sid
        result["show"] = ctl("show", sid)
        recording = work / "sessiond_heard.wav"
        result["sessiond_recording"] = str(recording)
        ctl("record", sid, str(recording), "--direction", "in")
        ctl("play", sid, "--tone", str(TONE_TO_BARESIP), "--seconds", str(PLAY_SECONDS))
        time.sleep(PLAY_SECONDS + 0.5)
        ctl("record", sid, "--stop")
        ctl("hangup", sid)

        def ended() -> bool:
            return "Terminated" in ctl("show", sid)

        result["terminated"] = wait_for(ended, timeout=10, every=0.3)
        result["show_end"] = ctl("show", sid)
        time.sleep(0.5)  # let baresip close its dump files after the BYE
        baresip.send_signal(signal.SIGTERM)
        try:
            baresip.wait(timeout=8)
        except subprocess.TimeoutExpired:
            baresip.kill()
            baresip.wait()
        result["baresip_dumps"] = sorted(str(p) for p in dump.glob("*.wav"))
        result["app_events"] = app_events(client, f"{NAMESPACE}:{{app}}:events")
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
    finally:
        if client is not None:
            client.close()
        procs.stop_all()
    return result


if __name__ == "__main__":
    workdir = Path(sys.argv[1])
    outcome = main(workdir, tls=sys.argv[2:] == ["tls"])
    (workdir / "result.json").write_text(json.dumps(outcome, indent=1, default=str))
