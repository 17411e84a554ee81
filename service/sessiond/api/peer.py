"""``SimplePeer``: a complete SIP endpoint in this process (edge, worker, media node).

It runs the pieces ``sessiond run`` wires (an :class:`~sessiond.edge.process.Edge`, one
:class:`~sessiond.worker.process.Worker` answering in ``app`` mode, a
:class:`~sessiond.media.node.MediaNode`) on the embedded store by default, under a namespace
of its own, so several peers can live in one process without sharing calls. Its application
events are read through a :class:`Client` and routed to the :class:`Call` they belong to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from sessiond.api.call import Call, Invitation
from sessiond.api.client import Client
from sessiond.api.errors import CallFailed, SessionNotFound
from sessiond.api.events import CallEvent, IncomingCall, TransferRequested
from sessiond.api.rooms import Rooms
from sessiond.core.redact import redact_keys
from sessiond.core.resources import default_table_path
from sessiond.edge.process import Edge
from sessiond.edge.transport import ListenSpec
from sessiond.media.leg import Leg
from sessiond.media.node import MediaNode, available_codecs
from sessiond.media.offer_answer import TELEPHONE_EVENT
from sessiond.media.ports import PortAllocator, parse_range
from sessiond.media.sdes_sdp import SrtpPolicy
from sessiond.store import Keys, Store
from sessiond.store.client import EMBEDDED, connect
from sessiond.store.store import delete_namespace
from sessiond.store.tableset import TableSet
from sessiond.table import load_table
from sessiond.worker.applier import Applier
from sessiond.worker.process import Worker

log = logging.getLogger("sessiond.api")
EARLY_MAX = 1000  # events kept for sessions no Call object claimed yet


class SimplePeer:
    """A SIP endpoint listening on UDP ``host:port``; use it as an async context manager.

    ``redis_url`` None runs on the embedded store (nothing to install). ``rtp_ports`` is the
    range the media node may bind (ports held by another peer are skipped). Incoming calls
    ring until :meth:`incoming_call`'s invitation is accepted or rejected (180 s at most).
    ``codecs`` limits the audio codecs offered and accepted to these names (``PCMU``,
    ``PCMA``, ``opus``; RFC 4733 telephone-event is always kept); default: all usable.
    ``srtp`` is the SRTP policy (SDES) of its calls: ``off`` (default), ``offer`` or
    ``require``.
    """

    def __init__(
        self,
        name: str,
        port: int = 5060,
        *,
        host: str = "127.0.0.1",
        redis_url: str | None = None,
        rtp_ports: str = "20000-20999",
        rtp_timeout: float = 30.0,
        codecs: Sequence[str] | None = None,
        srtp: str = "off",
    ) -> None:
        self.name = name
        self.srtp = SrtpPolicy.parse(srtp)
        self.port = port
        self.host = host
        self.redis_url = redis_url or EMBEDDED
        self.rtp_range = parse_range(rtp_ports)
        self.rtp_timeout = rtp_timeout
        self.codecs = available_codecs()
        if codecs is not None:
            wanted = {c.lower() for c in codecs} | {TELEPHONE_EVENT}
            self.codecs = tuple(c for c in self.codecs if c.name.lower() in wanted)
        self.uri = f"sip:{name}@{host}:{port}"
        self.namespace = f"peer-{name}-{secrets.token_hex(4)}"
        self._calls: dict[str, Call] = {}
        self._early: dict[str, list[CallEvent]] = {}
        self._incoming: asyncio.Queue[Invitation] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._client: Client | None = None
        self._redis: Any = None
        self._media: MediaNode | None = None
        self._edge: Edge | None = None
        self._worker: Worker | None = None

    async def __aenter__(self) -> SimplePeer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def client(self) -> Client:
        """The Client this peer uses (for anything Call does not offer)."""
        if self._client is None:
            raise CallFailed(500, f"peer {self.name} is not started")
        return self._client

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def rooms(self) -> Rooms:
        """Conference rooms mixed by this peer's media node (see :class:`Rooms`)."""
        return self.client.rooms

    async def start(self) -> None:
        """Bind the SIP port and start the edge, the worker, the media node, the events."""
        self._redis = connect(self.redis_url)
        keys = Keys(self.namespace)
        self._edge = Edge(
            self._redis,
            keys,
            f"{self.name}-edge",
            [ListenSpec.parse(f"udp:{self.host}:{self.port}")],
            rate_limit=10_000.0,
            rate_burst=10_000.0,
        )
        tables = TableSet([load_table(default_table_path())], self._redis, keys)
        self._worker = Worker(
            Applier(Store(self._redis, keys, worker=f"{self.name}-w"), tables),
            name=f"{self.name}-w",
            answer="app",
        )
        executor_args = {
            "sdp_address": self.host,
            "codecs": self.codecs,
            "inactivity_timeout": self.rtp_timeout,
            "files_dir": None,
            "srtp": self.srtp,
        }
        ports = PortAllocator(self.host, *self.rtp_range)
        self._media = MediaNode(
            self._redis,
            keys,
            executor_args,
            name=f"{self.name}-media",
            ports=ports,
            drain_timeout=1.0,
        )
        self._client = Client(self.redis_url, namespace=self.namespace, group="peer", start="0")
        await self._client.ensure_group()
        edge_task = asyncio.create_task(self._edge.run())
        self._tasks = [
            edge_task,
            asyncio.create_task(self._worker.run()),
            asyncio.create_task(self._media.run()),
            asyncio.create_task(self._dispatch()),
        ]
        while not self._edge.locals:  # the SIP socket is bound once the edge has started
            if edge_task.done():
                await self.stop()
                edge_task.result()  # raises the bind error
                raise CallFailed(500, f"the edge of {self.name} stopped")
            await asyncio.sleep(0.01)

    async def stop(self, timeout: float = 5.0) -> None:
        """Hang up the calls still up, stop every component, free ports and keys."""
        waits = await self._hang_up_live()
        await self._stop_components(timeout)
        leftovers = [*waits, *self._tasks]
        for task in leftovers:
            task.cancel()
        if leftovers:
            _, stuck = await asyncio.wait(leftovers, timeout=timeout)
            if stuck:
                log.warning("%s: %d task(s) did not stop: %s", self.name, len(stuck), stuck)
        self._tasks = []
        if self._client is not None:
            await delete_namespace(self._client.redis, self.namespace)
            await self._client.close()
            self._client = None
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def _hang_up_live(self) -> list[asyncio.Future[Any]]:
        live = [c for c in self._calls.values() if not c.ended]
        for call in live:
            with contextlib.suppress(SessionNotFound):
                await self.client.hangup(call.sid)
        waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(c.wait_ended()) for c in live]
        if waits:
            await asyncio.wait(waits, timeout=2)
        return waits

    async def _stop_components(self, timeout: float) -> None:
        """The worker first: the commands of its last transitions reach the edge, which runs
        what is queued before it closes its sockets; then the edge and the media node."""
        if not self._tasks:
            return
        if self._worker is not None:
            self._worker.stop()
            await asyncio.wait(self._tasks[1:2], timeout=timeout)
        for component in (self._edge, self._media):
            if component is not None:
                component.stop()
        if self._media is not None:
            self._media.stop()  # second call: do not wait for legs
        await asyncio.wait(self._tasks[:3], timeout=timeout)

    # -- calls ----------------------------------------------------------------------------

    async def call(
        self, target: str, *, from_uri: str | None = None, timeout: float = 30.0
    ) -> Call:
        """Call ``target`` (a SIP URI); the Call once Established.

        CallRejected(code) if the far end refuses, CallTimeout if nothing answers in
        ``timeout`` seconds (the call is then hung up), CallFailed otherwise."""
        assert self._edge is not None
        sid = await self.client.make_call(
            target, from_uri=from_uri or self.uri, edge=self._edge.name
        )
        call = self._track(sid)
        await call.wait_established(timeout)
        return call

    async def incoming_call(self, timeout: float | None = None) -> Invitation:
        """The next incoming call (it rings until accepted or rejected)."""
        async with asyncio.timeout(timeout):
            return await self._incoming.get()

    def leg(self, sid: str) -> Leg | None:
        """The media leg of session ``sid`` on this peer's media node, if it has one."""
        return self._media.executor.legs.get(f"{sid}.m") if self._media else None

    def _track(self, sid: str) -> Call:
        call = self._calls.get(sid)
        if call is None:
            call = self._calls[sid] = Call(self, sid)
            for event in self._early.pop(sid, []):
                call.deliver(event)
        return call

    async def _dispatch(self) -> None:
        async for event in self.client.events():
            try:
                self._route(event)
            except Exception:  # one bad event must not stop the peer
                log.exception("%s: could not route %s", self.name, redact_keys(str(event)))

    def _route(self, event: CallEvent) -> None:
        if isinstance(event, IncomingCall):
            incoming = self._track(event.sid)
            incoming.deliver(event)
            self._incoming.put_nowait(Invitation(incoming, event))
            return
        if isinstance(event, TransferRequested) and event.new_sid:
            self._track(event.new_sid)  # the call placed for the transfer is ours too
        call = self._calls.get(event.sid)
        if call is not None:
            call.deliver(event)
            return
        self._early.setdefault(event.sid, []).append(event)
        while len(self._early) > EARLY_MAX:
            self._early.pop(next(iter(self._early)))
