"""The embedded store seen from outside ``sessiond run``: a loopback Redis listener and the
state file by which ``sessiond ctl`` finds it.

``sessiond run`` without ``--redis`` keeps its store in process (fakeredis). So that
``redis-cli`` and ``sessiond ctl`` can read live calls as on a real Redis, it also serves that
same store over RESP on 127.0.0.1 (``--store-port``, default 6380; when the default is taken,
any free port). fakeredis' threaded TCP server does the protocol (RESP2 and RESP3 HELLO,
pipelines, MULTI, EVALSHA, streams, blocking reads); every command takes the store's lock, as
the in-process clients' commands do, so the in-process path is unchanged.

At start ``sessiond run`` writes ``run-<pid>.json`` (its store URL, namespace, partitions)
under ``$XDG_RUNTIME_DIR/sessiond/``, else ``/tmp/sessiond-<uid>/`` (a directory of the user's
own, mode 0700), and removes it at exit. ``sessiond ctl`` without ``--redis`` reads the files
of live processes there.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from fakeredis import TcpFakeServer

from sessiond.store.client import embedded_server

DEFAULT_STORE_PORT = 6380
STORE_HOST = "127.0.0.1"


class _Listener(TcpFakeServer):
    """fakeredis' TCP server on this process's embedded store. Its connection threads are
    daemons and are not joined at close: a client blocked in BLPOP must not hold up exit."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address)
        self.daemon_threads = True  # the base class sets False in its constructor
        self.fake_server = embedded_server()


class StoreListener:
    """The embedded store served on ``host:port`` (0: any free port) by a background thread.
    Raises OSError when the address cannot be bound."""

    def __init__(self, port: int, host: str = STORE_HOST) -> None:
        self._server = _Listener((host, port))
        self.host = host
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.5},
            name="sessiond-store-listener",
            daemon=True,
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def open_listener(port: int | None) -> StoreListener:
    """The listener on ``port``; ``None`` is the default port, or any free one when something
    else holds it. OSError when an explicitly asked port cannot be bound."""
    if port is not None:
        return StoreListener(port)
    try:
        return StoreListener(DEFAULT_STORE_PORT)
    except OSError:
        return StoreListener(0)


def runtime_dir() -> Path:
    """Where ``sessiond run`` leaves its state files."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base:
        return Path(base) / "sessiond"
    return Path(tempfile.gettempdir()) / f"sessiond-{os.getuid()}"


def _own_dir(path: Path) -> bool:
    """The directory exists, is ours and only ours (not a link another user planted)."""
    try:
        st = path.lstat()
    except OSError:
        return False
    return st.st_uid == os.getuid() and (st.st_mode & 0o077) == 0 and path.is_dir()


def write_state(info: dict[str, Any]) -> Path | None:
    """Write this process's state file; None (nothing written) when the directory is not
    usable (then ``sessiond ctl`` needs ``--redis``)."""
    folder = runtime_dir()
    with contextlib.suppress(OSError):
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not _own_dir(folder):
        return None
    path = folder / f"run-{os.getpid()}.json"
    data = {"pid": os.getpid(), "started_at": time.time(), **info}
    try:
        temp = folder / f".run-{os.getpid()}.tmp"
        temp.write_text(json.dumps(data))
        temp.replace(path)
    except OSError:
        return None
    return path


def remove_state(path: Path | None) -> None:
    if path is not None:
        with contextlib.suppress(OSError):
            path.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def local_runs() -> list[dict[str, Any]]:
    """The state of every live local ``sessiond run`` (files of dead ones are removed)."""
    folder = runtime_dir()
    if not _own_dir(folder):
        return []
    runs = []
    for path in sorted(folder.glob("run-*.json")):
        try:
            info = json.loads(path.read_text())
            pid = int(info["pid"])
            str(info["redis"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if _alive(pid):
            runs.append(info)
        else:
            remove_state(path)
    return runs
