"""``Call`` and ``Invitation``: one call of a :class:`~sessiond.api.peer.SimplePeer`.

A call is driven by application commands (through the peer's :class:`Client`) and followed
through its application events, which the peer routes to it by session id. Audio frames are
exchanged with the in-process media leg through an :class:`~sessiond.media.leg.AudioTap`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, Protocol, TypeVar

from sessiond.api.client import Client
from sessiond.api.errors import (
    CallEnded,
    CallFailed,
    CallRejected,
    CallTimeout,
    SessionNotFound,
)
from sessiond.api.events import (
    CallEvent,
    Ended,
    Established,
    Failed,
    HoldChanged,
    HoldFailed,
    MemberJoined,
    MemberLeft,
    RecordingStopped,
    TransferFailed,
    TransferRequested,
    TransferSucceeded,
)
from sessiond.media.codecs import FRAME_BYTES
from sessiond.media.leg import AudioTap, Leg

AUDIO_QUEUE = 50  # frames (1 s) each way
FIRST = asyncio.FIRST_COMPLETED
T = TypeVar("T")


class CallHost(Protocol):
    """What a call needs of its :class:`~sessiond.api.peer.SimplePeer` (no import back)."""

    @property
    def client(self) -> Client: ...

    def leg(self, sid: str) -> Leg | None: ...

    def _track(self, sid: str) -> Call: ...


class Call:
    """A call placed or answered by a SimplePeer. Every event it got is in :attr:`events`."""

    def __init__(self, peer: CallHost, sid: str) -> None:
        self.peer = peer
        self.sid = sid
        #: every application event of this call so far, oldest first
        self.events: list[CallEvent] = []
        self._queue: asyncio.Queue[CallEvent] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        self._established: asyncio.Future[CallEvent] = loop.create_future()
        self._ended: asyncio.Future[CallEvent] = loop.create_future()
        self._tap: AudioTap | None = None

    def __repr__(self) -> str:
        return f"<Call {self.sid} {self.state}>"

    @property
    def state(self) -> str:
        """The session state as of the last event received (``""`` before any)."""
        return self.events[-1].state if self.events else ""

    @property
    def ended(self) -> bool:
        """True once an Ended or Failed event arrived."""
        return self._ended.done()

    def deliver(self, event: CallEvent) -> None:
        """Take one event (called by the peer's dispatcher)."""
        self.events.append(event)
        self._queue.put_nowait(event)
        if isinstance(event, Established) and not self._established.done():
            self._established.set_result(event)
        if isinstance(event, Ended | Failed) and not self._ended.done():
            self._ended.set_result(event)
            self._detach()

    # -- waiting --------------------------------------------------------------------------

    async def next_event(self, timeout: float | None = None) -> CallEvent:
        """The next event not yet returned by next_event/wait_for (TimeoutError after
        ``timeout`` seconds)."""
        async with asyncio.timeout(timeout):
            return await self._queue.get()

    async def wait_for(self, kind: type[CallEvent], timeout: float | None = 10.0) -> CallEvent:
        """Skip events until one of class ``kind``; return it (TimeoutError after ``timeout``)."""
        async with asyncio.timeout(timeout):
            while True:
                event = await self._queue.get()
                if isinstance(event, kind):
                    return event

    async def wait_ended(self, timeout: float | None = None) -> CallEvent:
        """Wait for the end of the call; its Ended (or Failed) event."""
        async with asyncio.timeout(timeout):
            return await asyncio.shield(self._ended)

    async def wait_established(self, timeout: float | None = 30.0) -> None:
        """Wait until the call is Established. If it ends first: CallRejected when the far end
        refused it, CallTimeout when nothing or nobody answered in time, else CallFailed.
        If ``timeout`` passes first, the call is hung up and CallTimeout raised."""
        done, _ = await asyncio.wait(
            {self._established, self._ended}, timeout=timeout, return_when=FIRST
        )
        if self._established.done():
            self._attach()
            return
        if not done:
            with contextlib.suppress(SessionNotFound):
                await self.peer.client.hangup(self.sid)
            raise CallTimeout(f"call {self.sid} not established within {timeout} s")
        raise await self._failure(self._ended.result())

    async def _failure(self, event: CallEvent) -> Exception:
        code = event.code if isinstance(event, Ended | Failed) else 0
        reason = event.reason if isinstance(event, Ended | Failed) else ""
        steps = {h.get("event") for h in await self.peer.client.history(self.sid)}
        if "Rejected" in steps:
            return CallRejected(code, reason)
        if {"NoAnswer", "TransactionTimeout", "RingTimeout"} & steps:
            return CallTimeout(f"call {self.sid}: {code} {reason}")
        return CallFailed(code, reason)

    # -- commands -------------------------------------------------------------------------

    async def hangup(self, timeout: float | None = 10.0) -> CallEvent:
        """End the call (BYE, or CANCEL/603 before it is answered); its Ended event."""
        if not self.ended:
            await self.peer.client.hangup(self.sid)
        return await self.wait_ended(timeout)

    async def send_dtmf(self, digits: str, method: str = "rfc4733") -> None:
        """Send DTMF digits: RFC 4733 in the RTP stream, or ``method="info"`` (SIP INFO)."""
        await self.peer.client.send_dtmf(self.sid, digits, method)

    async def hold(self, timeout: float | None = 10.0) -> HoldChanged:
        """Put the far end on hold (re-INVITE, sendonly); returns once it agreed, raises
        CallFailed(code) when it refused (the call goes on as it was)."""
        return await self._hold_change(self.peer.client.hold, True, timeout)

    async def resume(self, timeout: float | None = 10.0) -> HoldChanged:
        """Take the far end off hold (re-INVITE, sendrecv); returns once it agreed, raises
        CallFailed(code) when it refused."""
        return await self._hold_change(self.peer.client.resume, False, timeout)

    async def _hold_change(
        self, command: Callable[[str], Awaitable[None]], held: bool, timeout: float | None
    ) -> HoldChanged:
        await command(self.sid)
        async with asyncio.timeout(timeout):
            while True:
                event = await self.next_event()
                if isinstance(event, HoldFailed):
                    raise CallFailed(event.code, "the far end refused the re-INVITE")
                if isinstance(event, HoldChanged) and event.held_by_us == held:
                    return event
                if isinstance(event, Ended | Failed):
                    raise CallEnded(f"call {self.sid} ended")

    async def wait_transferred(self, timeout: float | None = 30.0) -> Call:
        """The far end transferred us (REFER): the new call placed to the transfer target
        (follow it like any call; this one ends when the far end hangs up)."""
        event = await self.wait_for(TransferRequested, timeout)
        assert isinstance(event, TransferRequested)
        return self.peer._track(event.new_sid)

    async def transfer(self, target: str, timeout: float | None = 60.0) -> CallEvent:
        """Blind transfer: ask the far end to call ``target`` (REFER). Returns
        TransferSucceeded (this call then ends) or raises CallFailed(code) when the far end
        refused or the new call failed (this call goes on)."""
        await self.peer.client.blind_transfer(self.sid, target)
        while True:
            event = await self.next_event(timeout)
            if isinstance(event, TransferSucceeded):
                return event
            if isinstance(event, TransferFailed):
                raise CallFailed(event.code, "transfer failed")
            if isinstance(event, Ended | Failed):
                raise await self._failure(event)

    async def play(
        self,
        *,
        wav: str | Path | None = None,
        tone: float | None = None,
        seconds: float | None = None,
        loop: bool = False,
    ) -> None:
        """Play a WAV file (8 kHz mono PCM16) or a tone in Hz; PlayFinished when done."""
        file = str(Path(wav).resolve()) if wav is not None else None
        await self.peer.client.play(self.sid, tone=tone, file=file, seconds=seconds, loop=loop)

    async def stop_play(self) -> None:
        """Stop the current play."""
        await self.peer.client.stop_play(self.sid)

    async def record(self, wav: str | Path, direction: str = "both") -> None:
        """Record the call to a WAV file (``direction``: in, out or both)."""
        await self.peer.client.record(self.sid, str(Path(wav).resolve()), direction)

    async def stop_record(self) -> CallEvent:
        """Close the recording; its RecordingStopped event."""
        await self.peer.client.stop_record(self.sid)
        return await self.wait_for(RecordingStopped)

    # -- conference rooms -----------------------------------------------------------------

    async def join(
        self, room: str, *, muted: bool = False, deaf: bool = False, timeout: float = 30.0
    ) -> CallEvent:
        """Mix this call into conference ``room`` of the peer's media node (leaving the room
        it is in); its MemberJoined event."""
        await self.peer.client.rooms.add(room, self.sid, muted=muted, deaf=deaf)
        return await self.wait_for(MemberJoined, timeout)

    async def leave_room(self, timeout: float = 10.0) -> CallEvent:
        """Take this call out of its room; its MemberLeft event."""
        await self.peer.client.rooms.remove(self.sid)
        return await self.wait_for(MemberLeft, timeout)

    # -- audio ----------------------------------------------------------------------------

    def _attach(self) -> None:
        leg = self.peer.leg(self.sid)
        if leg is not None and self._tap is None and not self.ended:
            self._tap = AudioTap(AUDIO_QUEUE)
            leg.attach_audio(self._tap)

    def _detach(self) -> None:
        leg = self.peer.leg(self.sid)
        if leg is not None and leg.tap is self._tap:
            leg.attach_audio(None)

    async def send_audio(self, frame: bytes, timeout: float = 1.0) -> None:
        """Queue one 20 ms frame (320 bytes: PCM16 8 kHz mono) to send. Waits while 1 s of
        audio is queued, so a loop of send_audio runs at real time. CallEnded once the call has
        ended; TimeoutError if the queue stays full for ``timeout`` seconds."""
        if len(frame) != FRAME_BYTES:
            raise ValueError(
                f"a frame is {FRAME_BYTES} bytes (20 ms PCM16 8 kHz), not {len(frame)}"
            )
        if self._tap is None or self.ended:
            raise CallEnded(f"call {self.sid} has no audio (ended, or not established)")
        await self._unless_ended(self._tap.source.put(frame), timeout)

    async def recv_audio(self, timeout: float = 1.0) -> bytes:
        """The next 20 ms frame played out (silence while nothing arrives): one per 20 ms.
        After the end, the frames still queued, then CallEnded; TimeoutError if no frame comes
        within ``timeout`` (the media node is not ticking)."""
        tap = self._tap
        if tap is None:
            raise CallEnded(f"call {self.sid} has no audio (not established)")
        if not tap.sink.empty() or not self.ended:
            return await self._unless_ended(tap.sink.get(), timeout)
        raise CallEnded(f"call {self.sid} has ended")

    async def _unless_ended(self, step: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run ``step``; CallEnded if the call ends first, TimeoutError after ``timeout``."""
        task = asyncio.ensure_future(step)
        waiting: set[asyncio.Future[Any]] = {task, self._ended}
        done, _ = await asyncio.wait(waiting, timeout=timeout, return_when=FIRST)
        if task in done:
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if done:
            raise CallEnded(f"call {self.sid} has ended")
        raise TimeoutError(f"no audio exchanged with call {self.sid} for {timeout} s")


class Invitation:
    """An incoming call that rings until :meth:`accept` or :meth:`reject`."""

    def __init__(self, call: Call, event: CallEvent) -> None:
        self.call = call
        self.event = event  #: the IncomingCall event

    @property
    def sid(self) -> str:
        """The session id."""
        return self.call.sid

    @property
    def remote_uri(self) -> str:
        """Who calls."""
        return self.event.remote_uri

    @property
    def local_uri(self) -> str:
        """Whom they call (the To URI)."""
        return self.event.local_uri

    async def accept(self, timeout: float | None = 30.0) -> Call:
        """Answer; the Call once Established (the caller's ACK arrived)."""
        await self.call.peer.client.accept(self.sid)
        await self.call.wait_established(timeout)
        return self.call

    async def reject(self, code: int = 486) -> CallEvent:
        """Refuse the call with SIP ``code``; the Ended event."""
        await self.call.peer.client.reject(self.sid, code)
        return await self.call.wait_ended(10.0)
