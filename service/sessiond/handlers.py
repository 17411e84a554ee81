"""The public names a handler module uses (``--handler mymodule:MyHandler``): the call it is
asked about and the decisions it may return. The implementation lives in
:mod:`sessiond.worker.handlers`; this module keeps the import path users write stable."""

from sessiond.worker.handlers import (
    Accept,
    AskApp,
    AutoAnswer,
    CallHandler,
    Conference,
    Decision,
    Defer,
    Forward,
    IncomingCallInfo,
    PlayAndHangup,
    Redirect,
    Reject,
    RejectAll,
    Ring,
)

__all__ = [
    "Accept",
    "AskApp",
    "AutoAnswer",
    "CallHandler",
    "Conference",
    "Decision",
    "Defer",
    "Forward",
    "IncomingCallInfo",
    "PlayAndHangup",
    "Redirect",
    "Reject",
    "RejectAll",
    "Ring",
]
