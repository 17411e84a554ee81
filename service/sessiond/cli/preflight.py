"""Checks a process makes before it starts anything: option values, addresses it must bind,
the Redis URL. Each problem is one line naming the option and what to do; the process then
exits with status 2 instead of starting half-way (or printing a traceback, or hanging).
"""

from __future__ import annotations

import argparse
import errno
import socket
import sys
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

from sessiond.store.client import url_problem


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``sessiond run: argument --workers: ...``, then a
    pointer to ``--help`` on the same line, instead of the whole usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _number(kind: Callable[[str], Any], low: float | None, high: float | None, what: str) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        out_of_range = (low is not None and value < low) or (high is not None and value > high)
        if value != value or out_of_range:
            raise argparse.ArgumentTypeError(f"{text} is not {what}")
        return value

    parse.__name__ = what  # argparse names the type in some messages
    return parse


positive_int = _number(int, 1, None, "a whole number of at least 1")
nonneg_int = _number(int, 0, None, "a whole number of at least 0")
port_number = _number(int, 0, 65535, "a port number (0-65535)")
positive_float = _number(float, 1e-9, None, "a number above 0")
at_least_one = _number(float, 1, None, "a number of at least 1")
STORE_OFF = -1


def store_port(text: str) -> int:
    """``--store-port``: a port number, or ``off`` (no listener)."""
    if text.strip().lower() == "off":
        return STORE_OFF
    try:
        value: int = port_number(text)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{exc}, or off") from None
    return value


nonneg_float = _number(float, 0, None, "a number of at least 0")


def fail(prog: str, message: str) -> int:
    """Print ``prog: message`` as the one line on stderr; the exit status of a refused start."""
    print(f"{prog}: {message}", file=sys.stderr)
    return 2


def redis_problem(option: str, url: str | None) -> str | None:
    problem = url_problem(url)
    return f"{option}: {problem}" if problem else None


def bind_problem(what: str, transport: str, host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be bound for ``transport`` (UDP/TCP) right now, or None. The
    socket is closed again at once; the process binds for real a moment later."""
    if not 0 <= port <= 65535:
        return f"{what}: port {port} is out of range (0-65535)"
    kind = socket.SOCK_DGRAM if transport.upper() == "UDP" else socket.SOCK_STREAM
    try:
        infos = socket.getaddrinfo(host, port, type=kind)
    except (OSError, UnicodeError) as exc:
        return f"{what}: cannot resolve {host!r} ({exc}); give an IP address of this machine"
    family, _, _, _, address = infos[0]
    with socket.socket(family, kind) as sock:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            return f"{what}: cannot bind {transport.lower()} {host}:{port}: {_why(exc)}"
    return None


def bind_failure(exc: OSError) -> str:
    """A bind error raised by the event loop (uvloop words it without the reason, which is
    then in ``__cause__``)."""
    cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
    return f"{exc} ({_why(cause)})"


def _why(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return "the port is in use by another process (stop it, or choose another port)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "that address is not on this machine (use one of its own addresses)"
    if exc.errno == errno.EACCES:
        return "permission denied (ports below 1024 need privileges; choose a higher port)"
    return exc.strerror or str(exc)


def first_problem(problems: Iterable[str | None]) -> str | None:
    for problem in problems:
        if problem:
            return problem
    return None


def metrics_problem(port: int) -> str | None:
    return bind_problem("--metrics-port", "TCP", "127.0.0.1", port) if port else None
