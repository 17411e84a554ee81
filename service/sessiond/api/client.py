"""``Client``: call control for the distributed service, through Redis only.

Commands are events published to the session's partition stream (what ``sessiond ctl`` does);
application events are read from ``{app}:events`` through a consumer group, so several
application instances with the same ``group`` share the work and each event is delivered
once per group (see :class:`EventStream` for acknowledgement and crash recovery).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import time
from collections.abc import Collection
from types import TracebackType
from typing import Any

from sessiond.api.errors import CallFailed, CallTimeout, SessionNotFound
from sessiond.api.rooms import Rooms
from sessiond.api.stream import EventStream
from sessiond.core.types import Event
from sessiond.core.vocabulary import SRTP_POLICIES
from sessiond.store import Keys, Store, new_sid, queries
from sessiond.store.client import connect
from sessiond.store.liveness import live_processes
from sessiond.store.streams import ensure_groups

DEFAULT_FROM = "sip:sessiond@127.0.0.1"


class Client:
    """Control calls and receive their events on a sessiond cluster.

    ``redis_url`` is a Redis URL, or ``None``/``"embedded"`` for the in-process store (only
    useful in the process that runs sessiond). ``group`` is the consumer group on the app
    events stream: instances sharing it share the events. ``consumer`` names this instance
    in the group (default: host and pid plus a random suffix). ``claim_idle`` is how long
    (seconds) an event may stay unacknowledged by another consumer before this one takes it
    over (that consumer is presumed dead). ``start`` is where a *new* group starts reading:
    ``"$"`` (only events published from now on) or ``"0"`` (the whole stream).
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        namespace: str = "sessiond",
        group: str = "app",
        consumer: str | None = None,
        partitions: int = 16,
        claim_idle: float = 10.0,
        start: str = "$",
    ) -> None:
        self.redis: Any = connect(redis_url)
        self.keys = Keys(namespace, partitions=partitions)
        self.store = Store(self.redis, self.keys, worker="client")
        self.group = group
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.claim_idle = claim_idle
        self.start = start
        self._group_ready = False
        self._rooms: Rooms | None = None

    @property
    def rooms(self) -> Rooms:
        """Conference rooms: create, add and move calls, kick, mute, deaf, play, record."""
        if self._rooms is None:
            self._rooms = Rooms(self)
        return self._rooms

    async def __aenter__(self) -> Client:
        await self.ensure_group()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the Redis connection."""
        await self.redis.aclose()

    async def ensure_group(self) -> None:
        """Create the consumer group (from ``start``) unless it exists. Idempotent."""
        if self._group_ready:
            return
        await ensure_groups(self.redis, [self.keys.app_events()], self.group, start=self.start)
        self._group_ready = True

    async def recreate_group(self) -> None:
        """Create the group again (Redis lost its data: NOGROUP)."""
        self._group_ready = False
        await self.ensure_group()

    # -- placing calls ----------------------------------------------------------------------

    async def live_edges(self) -> list[str]:
        """Names of the edges whose heartbeat is alive."""
        return await live_processes(self.redis, self.keys, "edge")

    async def make_call(
        self,
        target: str,
        *,
        from_uri: str = DEFAULT_FROM,
        to: str | None = None,
        edge: str | None = None,
        latch_private: bool = False,
        srtp: str | None = None,
    ) -> str:
        """Place a call to ``target`` (a SIP URI) through ``edge`` (default: any live edge),
        with SRTP policy ``srtp`` (``off``, ``offer``, ``require``; default: the media node's).
        ``latch_private``: the callee is behind NAT; its media leg sends nothing to a private
        address its SDP names, only to where its RTP comes from.

        Returns the new session id at once; follow the call with :meth:`events` or
        :meth:`wait_for_state`; a call that cannot be set up ends with a ``Failed`` event.
        :class:`CallFailed` (503) when no edge is alive."""
        if edge is None:
            edges = await self.live_edges()
            if not edges:
                raise CallFailed(503, "no live edge to place the call through")
            edge = edges[0]
        call_id = f"{secrets.token_hex(8)}@sessiond"
        sid = new_sid(call_id)
        data: dict[str, Any] = {
            "target": target,
            "to": to or target,
            "from": from_uri,
            "call_id": call_id,
            "local_tag": secrets.token_hex(5),
            "edge": edge,
        }
        if latch_private:
            data["latch_private"] = True
        if srtp is not None:
            if srtp not in SRTP_POLICIES:
                raise ValueError(f"srtp is one of {', '.join(SRTP_POLICIES)}, not {srtp!r}")
            data["srtp"] = srtp
        await self.store.publish(
            self.keys.partition_of(sid), Event(f"app:call:{sid}", "MakeCall", data, sid)
        )
        return sid

    # -- commands on a session --------------------------------------------------------------

    async def send(self, sid: str, kind: str, data: dict[str, Any] | None = None) -> str:
        """Publish the application command ``kind`` to session ``sid``; the event id.

        :class:`SessionNotFound` if the session does not exist (or has expired)."""
        await self._session_key_exists(sid)
        event = Event(f"app:{kind}:{secrets.token_hex(8)}", kind, data or {}, sid)
        await self.store.publish(self.keys.partition_of(sid), event)
        return event.id

    def _session_key(self, sid: str) -> str:
        try:
            return self.keys.session(sid)
        except ValueError as exc:
            raise SessionNotFound(str(exc)) from exc

    async def accept(self, sid: str) -> None:
        """Answer a ringing incoming call (with ``--answer app``)."""
        await self.send(sid, "AcceptCall")

    async def reject(self, sid: str, code: int = 486) -> None:
        """Refuse a ringing incoming call with the SIP ``code`` (400-699)."""
        if not 400 <= code <= 699:
            raise ValueError(f"a rejection code is 400-699, not {code}")
        await self.send(sid, "RejectCall", {"code": code})

    async def hangup(self, sid: str) -> None:
        """End the call, whatever its state (CANCEL, BYE, or 603 while ringing)."""
        await self.send(sid, "Hangup", {"by": "app"})

    async def play(
        self,
        sid: str,
        *,
        tone: float | None = None,
        file: str | None = None,
        seconds: float | None = None,
        loop: bool = False,
    ) -> None:
        """Play a tone (Hz) or a WAV file (a path on the media node) on an answered call."""
        if (tone is None) == (file is None):
            raise ValueError("play needs exactly one of tone= and file=")
        data: dict[str, Any] = {"tone": tone} if tone is not None else {"file": file}
        if seconds is not None:
            data["seconds"] = seconds
        if loop:
            data["loop"] = True
        await self.send(sid, "Play", data)

    async def stop_play(self, sid: str) -> None:
        """Stop the current play (its PlayFinished says ``stopped``)."""
        await self.send(sid, "StopPlay")

    async def record(self, sid: str, path: str, direction: str = "both") -> None:
        """Record the call to a WAV file on the media node; ``direction``: in, out or both."""
        if direction not in ("in", "out", "both"):
            raise ValueError(f"direction must be in, out or both, not {direction!r}")
        await self.send(sid, "Record", {"path": path, "direction": direction})

    async def stop_record(self, sid: str) -> None:
        """Close the recording (RecordingStopped follows)."""
        await self.send(sid, "StopRecord")

    async def send_dtmf(self, sid: str, digits: str, method: str = "rfc4733") -> None:
        """Send DTMF digits: ``rfc4733`` events in the RTP stream (in-band tones when the far
        end has no telephone-event), or ``info``: one SIP INFO (application/dtmf-relay) per
        digit, in order."""
        if method not in ("rfc4733", "info"):
            raise ValueError(f"method must be rfc4733 or info, not {method!r}")
        data: dict[str, Any] = {"digits": digits}
        if method == "info":
            data["method"] = "info"
        await self.send(sid, "SendDtmf", data)

    async def attended_transfer(self, sid: str, consultation_sid: str) -> None:
        """Attended transfer (RFC 5589 7): ask the far end of ``sid`` to call the far end of
        ``consultation_sid`` with Replaces (RFC 3891), so the new call takes over the
        consultation call. Both of our calls end when it succeeds."""
        other = await self.session(consultation_sid)
        replaces = (
            f"{other['call_id']};to-tag={other.get('remote_tag', '')};"
            f"from-tag={other.get('local_tag', '')}"
        )
        target = other.get("remote_target") or other.get("remote_uri", "")
        await self.send(sid, "Transfer", {"target": target, "replaces": replaces})

    async def progress(self, sid: str) -> None:
        """Send early media on a ringing incoming call: 183 with our SDP (reliable when the
        caller requires 100rel); play on it before answering."""
        await self.send(sid, "Progress")

    async def hold(self, sid: str) -> None:
        """Put the far end on hold (re-INVITE with a sendonly offer); HoldChanged follows."""
        await self.send(sid, "Hold")

    async def resume(self, sid: str) -> None:
        """Take the far end off hold (re-INVITE with sendrecv); HoldChanged follows."""
        await self.send(sid, "Resume")

    async def blind_transfer(self, sid: str, target: str) -> None:
        """Ask the far end to call ``target`` (REFER, RFC 3515). TransferSucceeded (and the
        call ends) when the target answers, TransferFailed (the call goes on) if not."""
        await self.send(sid, "Transfer", {"target": target})

    async def bridge(self, sid_a: str, sid_b: str) -> None:
        """Relay audio both ways between two answered calls. Both legs must be on the same
        media node (always true with one node); a play on either leg takes precedence, so
        stop it first. Hanging up either call ends the bridge."""
        if sid_a == sid_b:
            raise ValueError("cannot bridge a call to itself")
        await self._session_key_exists(sid_b)
        await self.send(sid_a, "Bridge", {"other": f"{sid_b}.m"})

    async def unbridge(self, sid: str) -> None:
        """Stop relaying audio between ``sid`` and the call it is bridged to."""
        await self.send(sid, "Unbridge")

    async def _session_key_exists(self, sid: str) -> None:
        self._session_key(sid)  # SessionNotFound for what is not a session id
        if not await queries.session_exists(self.redis, self.keys, sid):
            raise SessionNotFound(f"no session {sid}")

    # -- reading ----------------------------------------------------------------------------

    async def session(self, sid: str) -> dict[str, str]:
        """The session hash (fields as text); :class:`SessionNotFound` if there is none."""
        self._session_key(sid)  # SessionNotFound for what is not a session id
        fields = await queries.session_fields(self.redis, self.keys, sid)
        if not fields:
            raise SessionNotFound(f"no session {sid}")
        return fields

    async def history(self, sid: str, count: int = 100) -> list[dict[str, str]]:
        """The session's transitions, oldest first (event, from, to, actions...)."""
        return await self.store.history(sid, count=count)

    async def wait_for_state(
        self, sid: str, *states: str, timeout: float = 30.0, every: float = 0.05
    ) -> dict[str, str]:
        """Poll the session until its state is one of ``states``; the session hash.

        :class:`CallTimeout` after ``timeout`` seconds (a session that does not exist yet is
        waited for: ``make_call`` returns before the worker created it). Polling reads the
        hash only; use :meth:`events` to react to every change."""
        deadline = time.monotonic() + timeout
        state = "absent"
        while True:
            with contextlib.suppress(SessionNotFound):  # a new call's session may not exist yet
                session = await self.session(sid)
                if session.get("state") in states:
                    return session
                state = session.get("state", "")
            if time.monotonic() > deadline:
                raise CallTimeout(f"{sid} is {state}, not {'/'.join(states)}")
            await asyncio.sleep(every)

    def events(self, types: Collection[str] | None = None) -> EventStream:
        """Every application event for this group, as an async iterator (see EventStream).

        With ``types``, events of other types are acknowledged and skipped: give them to
        another group if something else must see them."""
        return EventStream(self, types=frozenset(types) if types else None)

    def incoming_calls(self) -> EventStream:
        """``IncomingCall`` events only (others are acknowledged and skipped)."""
        return self.events(types=("IncomingCall",))
