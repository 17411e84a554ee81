"""linphone (Debian linphone-cli's ``linphonec``) as a phone on a host of tests/net/bed.py,
driven headless through its standard input.

linphonec reads commands line by line from a pipe as from a terminal; with ``-S`` it prints
state changes (registration, calls) on its standard output, which goes to WORK/<name>.log
and is what :meth:`Linphone.wait_for` watches. Its configuration (the ``-c`` rc file, an INI
file) holds one account: ``[proxy_0]`` (the registrar as ``reg_proxy``, also the route of
every call, the AOR as ``reg_identity``, ``reg_expires``), ``[auth_info_0]`` (the digest
password, realm = the domain), ``[sip]`` (UDP port, TCP and TLS off) and PCMU as the only
audio codec. Audio goes through files (``soundcard use files``): ``play WAV`` is the
microphone of the calls that follow, ``record WAV`` where what they receive is written.

Two things linphonec needs that it does not say: the directory of its database
(``$HOME/.local/share/linphone``; without it the core never starts and no SIP socket is
opened, the only sign being "No listening point" when it registers), and, on a host without
a default route (the bed's outside host), ``auto_net_state_mon=0``: else its network monitor
finds the network DOWN about 5 s in and drops the registration without a word.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.net.bed import Bed

LINPHONE_PORT = 5080
LINPHONE_RTP = 7078

RC = """\
[sip]
sip_port={port}
sip_tcp_port=0
sip_tls_port=0
default_proxy=0
auto_net_state_mon=0
register_only_when_network_is_up=0
register_only_when_upnp_is_ok=0
use_ipv6=0
guess_hostname=1
inc_timeout=60
media_encryption=none

[rtp]
audio_rtp_port={rtp}
audio_jitt_comp=60
nortp_timeout=30

[sound]
echocancellation=0

[video]
display=0
capture=0
automatically_initiate=0
automatically_accept=0

[proxy_0]
reg_proxy=<sip:{registrar};transport=udp>
reg_route=<sip:{registrar};transport=udp;lr>
reg_identity="{user}" <sip:{user}@{domain}>
reg_expires={expires}
reg_sendregister=1
publish=0
dial_escape_plus=0
avpf=0

[auth_info_0]
username={user}
passwd={password}
realm={domain}
domain={domain}

[audio_codec_0]
mime=PCMU
rate=8000
channels=1
enabled=1
"""
# the codecs linphone would add by itself, off: sessiond speaks G.711
OFF = ("opus/48000/2", "speex/16000/1", "speex/8000/1", "PCMA/8000/1", "G729/8000/1")


def linphone_missing() -> str | None:
    if shutil.which("linphonec") is None:
        return "linphonec missing (apt-get install -y linphone-cli)"
    return None


def rc_file(
    user: str, password: str, domain: str, registrar: str, expires: int, port: int, rtp: int
) -> str:
    text = RC.format(
        port=port, rtp=rtp, registrar=registrar, user=user, domain=domain,
        expires=expires, password=password,
    )  # fmt: skip
    for n, codec in enumerate(OFF, start=1):
        mime, rate, channels = codec.split("/")
        text += f"\n[audio_codec_{n}]\nmime={mime}\nrate={rate}\nchannels={channels}\nenabled=0\n"
    return text


class Linphone:
    """linphonec on ``role`` registering ``user@domain`` to ``registrar`` (host:port)."""

    def __init__(
        self,
        bed: Bed,
        role: str,
        user: str,
        password: str,
        domain: str,
        registrar: str,
        *,
        expires: int = 60,
        name: str = "linphone",
        port: int = LINPHONE_PORT,
        rtp: int = LINPHONE_RTP,
    ) -> None:
        self.bed, self.role, self.name = bed, role, name
        self.home = bed.work / name
        (self.home / ".local" / "share" / "linphone").mkdir(parents=True)
        self.rc = self.home / "linphonerc"
        self.rc.write_text(rc_file(user, password, domain, registrar, expires, port, rtp))
        self.log_path = bed.work / f"{name}.log"
        self.debug_path = bed.work / f"{name}-debug.log"
        self.proc: subprocess.Popen[Any] | None = None
        # per file, the offset up to which its events were consumed
        self._seen = {self.log_path: 0, self.debug_path: 0}

    def start(self, play: Path, record: Path) -> None:
        """Start it with ``play`` as its microphone and ``record`` for what it hears (it
        registers by itself); auto-answer on."""
        self.proc = self.bed.start(
            self.role,
            self.name,
            ["env", f"HOME={self.home}", "timeout", "240", "linphonec", "-S", "-a"]
            + ["-c", str(self.rc), "-d", "4", "-l", str(self.debug_path)],
            stdin=True,
        )
        self.send("soundcard use files")
        self.play(play)
        self.record(record)

    # -- commands -------------------------------------------------------------------------
    def send(self, line: str) -> None:
        assert self.proc is not None
        assert self.proc.stdin is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"linphonec exited ({self.proc.returncode}): {self.output()}")
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def play(self, wav: Path) -> None:
        self.send(f"play {wav}")

    def record(self, wav: Path) -> None:
        self.send(f"record {wav}")

    def call(self, uri: str) -> None:
        self.send(f"call {uri}")

    def terminate(self) -> None:
        self.send("terminate all")

    def unregister(self) -> None:
        self.send("unregister")

    def quit(self, timeout: float = 15) -> int | None:
        """``quit``; its exit status (killed after ``timeout`` s; None if never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.send("quit")
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    # -- what it says ---------------------------------------------------------------------
    def output(self, tail: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:] if self.log_path.exists() else ""

    def wait_for(self, pattern: str, timeout: float = 20, *, debug: bool = False) -> str:
        """The next match of ``pattern`` in its output (``debug``: its debug log, where the
        SIP messages and state changes are) after the last one waited for there
        (AssertionError with the output after ``timeout`` s)."""
        path = self.debug_path if debug else self.log_path
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = path.read_text(errors="replace") if path.exists() else ""
            found = regex.search(text, self._seen[path])
            if found is not None:
                self._seen[path] = found.end()
                return found.group(0)
            if self.proc is not None and self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"linphonec never wrote /{pattern}/ to {path}:\n{self.output()}")

    def wait_registration(self, state: str, timeout: float = 20) -> None:
        """Until its account moves to ``state`` (``Ok``, ``Cleared``, ``Failed``)."""
        self.wait_for(rf"to \[LinphoneRegistration{state}\]", timeout, debug=True)
