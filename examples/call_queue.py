"""A call queue on the distributed service: callers wait with music until an agent is free.

    sessiond run --redis redis://127.0.0.1:6379/0 --answer app &
    python examples/call_queue.py --redis redis://127.0.0.1:6379/0

Agents call in to ``sip:agent...@`` (any To user starting with ``--agent-prefix``) and stay
connected; every other call is a caller. The app answers every call through the Client; a
caller hears music (a looping tone) until an agent is free, then the two calls are bridged on
the media node. When a caller hangs up its agent is free again; when an agent hangs up, its
caller goes back to the head of the queue. Prints one line per step (``queued``, ``bridged``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from dataclasses import dataclass, field

from sessiond import Client, Ended, Established, Failed, IncomingCall, SessionNotFound

MUSIC_HZ = 660.0


@dataclass
class Queue:
    """Who waits, who is free, who talks to whom (session ids)."""

    agent_prefix: str
    agents: set[str] = field(default_factory=set)  # answered agent calls
    free: list[str] = field(default_factory=list)  # agents with no caller, longest idle first
    waiting: list[str] = field(default_factory=list)  # callers, first come first served
    pairs: dict[str, str] = field(default_factory=dict)  # caller <-> agent, both ways
    pending_agents: set[str] = field(default_factory=set)  # accepted, not yet Established

    def is_agent_uri(self, uri: str) -> bool:
        user = uri.split("sip:", 1)[-1].split("@", 1)[0]
        return user.startswith(self.agent_prefix)


async def on_event(client: Client, q: Queue, event: object) -> None:
    """One application event: answer, queue, bridge, or clean up."""
    if isinstance(event, IncomingCall):
        if q.is_agent_uri(event.local_uri):
            q.pending_agents.add(event.sid)
        await client.accept(event.sid)
    elif isinstance(event, Established):
        if event.sid in q.pending_agents:
            q.pending_agents.discard(event.sid)
            q.agents.add(event.sid)
            q.free.append(event.sid)
            print(f"agent {event.sid} ready", flush=True)
        else:
            await client.play(event.sid, tone=MUSIC_HZ, loop=True)
            q.waiting.append(event.sid)
            print(f"queued {event.sid} (position {len(q.waiting)})", flush=True)
    elif isinstance(event, Ended | Failed):
        await on_ended(client, q, event.sid)
    await dispatch(client, q)


async def on_ended(client: Client, q: Queue, sid: str) -> None:
    """A call ended: free its agent, or requeue its caller (with music again)."""
    other = q.pairs.pop(sid, None)
    if other is not None:
        q.pairs.pop(other, None)
    if sid in q.waiting:
        q.waiting.remove(sid)
    if sid in q.agents:
        q.agents.discard(sid)
        if sid in q.free:
            q.free.remove(sid)
        if other is not None:  # the caller waits again, first in line
            q.waiting.insert(0, other)
            try:
                await client.play(other, tone=MUSIC_HZ, loop=True)
            except SessionNotFound:
                q.waiting.remove(other)
    elif other is not None:  # a caller left: its agent is free
        q.free.append(other)
        print(f"agent {other} free", flush=True)


async def dispatch(client: Client, q: Queue) -> None:
    """Bridge waiting callers to free agents, first come first served."""
    while q.waiting and q.free:
        caller, agent = q.waiting.pop(0), q.free.pop(0)
        try:
            await client.stop_play(caller)  # a play takes precedence over the bridge
            await client.bridge(caller, agent)
        except SessionNotFound:  # one of them hung up meanwhile: its Ended event follows
            continue
        q.pairs[caller], q.pairs[agent] = agent, caller
        print(f"bridged {caller} <-> {agent}", flush=True)


async def run(client: Client, agent_prefix: str) -> None:
    """Serve the queue until cancelled."""
    q = Queue(agent_prefix)
    async for event in client.events():
        await on_event(client, q, event)


async def main(args: argparse.Namespace) -> int:
    async with Client(args.redis, namespace=args.namespace, group=args.group) as client:
        print("call queue ready", flush=True)
        await run(client, args.agent_prefix)
    return 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--redis", required=True, help="Redis URL of the sessiond cluster")
    parser.add_argument("--namespace", default="sessiond", help="the cluster's key prefix")
    parser.add_argument("--group", default="call-queue", help="app events consumer group")
    parser.add_argument("--agent-prefix", default="agent", help="To user of agent calls")
    return parser.parse_args()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    try:
        raise SystemExit(asyncio.run(main(parse_args())))
    except KeyboardInterrupt:
        raise SystemExit(0) from None
