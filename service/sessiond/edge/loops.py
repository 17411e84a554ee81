"""What keeps the edge's long-lived loops alive: no exception ends one.

The edge runs a handful of loops for its whole life: the inbound path (every datagram and
TCP message), the early-request loop of its first 64*T1, the command readers, the flusher,
the timers (transactions and dialog duties), the heartbeat and the TCP reaper. A loop that
ended on an unexpected exception would leave the process up but deaf in part (issue 18, F1:
one packet stopped the early-request loop and every later request was queued forever), and
no supervisor restarts a process that is still up. So each loop runs each step under
:func:`survive`: an exception is logged with its traceback the first time a loop meets that
kind of exception (after that, at debug level: a hostile peer must not flood the log), is
counted in ``sessiond_edge_loop_errors_total{loop=...}``, and the loop goes on with its next
step. ``CancelledError`` (a BaseException) still ends a loop when the edge stops.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from sessiond.core import metrics

log = logging.getLogger("sessiond.edge")
_logged: set[tuple[str, str]] = set()  # (loop, exception type) already logged; bounded below
_LOGGED_MAX = 1024


@contextlib.contextmanager
def survive(loop: str) -> Iterator[None]:
    """Run one step of ``loop``; an ``Exception`` it raises is logged, counted and dropped."""
    try:
        yield
    except Exception as exc:
        failed(loop, exc)


def failed(loop: str, exc: BaseException) -> None:
    """Log (once per loop and exception type) and count an exception ``loop`` survived."""
    metrics.child(metrics.EDGE_LOOP_ERRORS, loop).inc()
    kind = (loop, type(exc).__qualname__)
    if kind in _logged:
        log.debug("%s loop survived %r", loop, exc)
        return
    if len(_logged) < _LOGGED_MAX:
        _logged.add(kind)
    log.error("%s loop survived an unexpected error (logged once): %r", loop, exc, exc_info=exc)
