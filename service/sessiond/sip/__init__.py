"""Sans-I/O SIP protocol core (RFC 3261 and friends): no sockets, no asyncio, no Redis.

Layers, bottom up:

* wire objects -- :mod:`.message` (:class:`SipRequest`, :class:`SipResponse`,
  :func:`parse_message`, :func:`make_response`), :mod:`.uri`, :mod:`.address`,
  :mod:`.via`, :mod:`.cseq`, :mod:`.headers`; framing on streams in :mod:`.framing`;
* admission -- :func:`validate_request`, :func:`check_loop` (:mod:`.validate`) and the
  stateless error answer :func:`error_response` (:mod:`.stateless`);
* transactions -- :class:`TransactionLayer` (:mod:`.transaction`) returning
  :mod:`.actions`;
* digest authentication -- :mod:`.digest`.

Every remote protocol error is a :class:`SipParseError` carrying the status to answer.
"""

from sessiond.sip.actions import (
    Action,
    Peer,
    RequestReceived,
    ResponseReceived,
    Send,
    StrayMessage,
    Terminated,
    TimedOut,
)
from sessiond.sip.address import NameAddr
from sessiond.sip.client_transaction import build_ack, build_cancel
from sessiond.sip.cseq import CSeq
from sessiond.sip.digest import Challenge, Credentials, DigestClient, DigestServer
from sessiond.sip.errors import (
    AuthError,
    SipError,
    SipParseError,
    TransactionError,
)
from sessiond.sip.framing import StreamFramer
from sessiond.sip.headers import Headers
from sessiond.sip.message import SipMessage, SipRequest, SipResponse, make_response, parse_message
from sessiond.sip.stateless import error_response
from sessiond.sip.timers import TimerConfig
from sessiond.sip.transaction import TransactionLayer, client_key, server_key
from sessiond.sip.uri import AbsoluteUri, SipUri, parse_uri
from sessiond.sip.validate import check_loop, merge_key, validate_request
from sessiond.sip.via import Via, new_branch
from sessiond.sip.wire import is_keepalive

__all__ = [
    "AbsoluteUri",
    "Action",
    "AuthError",
    "CSeq",
    "Challenge",
    "Credentials",
    "DigestClient",
    "DigestServer",
    "Headers",
    "NameAddr",
    "Peer",
    "RequestReceived",
    "ResponseReceived",
    "Send",
    "SipError",
    "SipMessage",
    "SipParseError",
    "SipRequest",
    "SipResponse",
    "SipUri",
    "StrayMessage",
    "StreamFramer",
    "Terminated",
    "TimedOut",
    "TimerConfig",
    "TransactionError",
    "TransactionLayer",
    "Via",
    "build_ack",
    "build_cancel",
    "check_loop",
    "client_key",
    "error_response",
    "is_keepalive",
    "make_response",
    "merge_key",
    "new_branch",
    "parse_message",
    "parse_uri",
    "server_key",
    "validate_request",
]
