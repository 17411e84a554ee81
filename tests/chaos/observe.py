"""What the chaos suite checks after each scenario, read from Redis and from the processes.

- sessions left non-terminal: every ``{T}:session:<sid>`` hash whose ``state`` is not
  ``Terminated`` (the only terminal state of the bundled tables);
- sessions per Call-ID: the ``call_id`` field of every session hash, counted;
- events applied twice: ``transition.lua``/``create.lua`` write one history entry per step,
  each with the ``event_id`` and the session ``version`` the step produced (the steps of one
  event share both). An event id found under two versions was applied twice;
- timers fired twice: the same, for event ids ``timer:<sid>|<event>|<epoch>`` (the id
  ``pop_timers.lua`` gives a popped timer);
- orphan media legs: each node lists the legs it serves in ``{media:NAME}:legs`` (media id
  -> ``sid create-command-id``) and counts the legs it holds in memory in its
  ``sessiond_media_legs`` gauge (metrics endpoint). A leg belongs to a live session when the
  session exists, is not terminal and names that node as its ``media_node``; every other
  listed leg, and every leg in memory beyond the live ones listed, is an orphan;
- edge memory: VmRSS from ``/proc/<pid>/status``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from sessiond.media.lost import leg_of
from sessiond.store.history import parse as parse_history

TERMINAL = frozenset({"Terminated"})
INCARNATION = "@incarnation"


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def sessions(r: Any, ns: str) -> dict[str, dict[str, str]]:
    """sid -> the session hash, for every session of namespace ``ns``."""
    keys = list(r.scan_iter(match=f"{ns}:*:session:*", count=1000))
    pipe = r.pipeline(transaction=False)
    for key in keys:
        pipe.hgetall(key)
    out: dict[str, dict[str, str]] = {}
    for key, raw in zip(keys, pipe.execute(), strict=True):
        if raw:
            out[_text(key).rsplit(":", 1)[1]] = {_text(k): _text(v) for k, v in raw.items()}
    return out


def non_terminal(found: dict[str, dict[str, str]], exclude_source: str = "") -> list[str]:
    """Sessions not (yet) terminal; ``exclude_source``: leave out calls from that address
    (an attacker's INVITEs that were valid enough to start a call it never ACKs: those end
    by their own timeouts, AckTimeout then ByeTimeout, 64 s)."""
    return sorted(
        sid
        for sid, s in found.items()
        if s.get("state") not in TERMINAL and not (exclude_source and _source(s) == exclude_source)
    )


def _source(session: dict[str, str]) -> str:
    """The address an incoming call came from: the second word of its ``txn``."""
    words = session.get("txn", "").split(" ", 2)
    return words[1] if len(words) > 1 else ""


def duplicate_call_ids(found: dict[str, dict[str, str]]) -> dict[str, int]:
    """Call-IDs held by more than one session: Call-ID -> sessions."""
    counts = Counter(s.get("call_id", "") for s in found.values())
    return {cid: n for cid, n in counts.items() if n > 1}


def applied_twice(r: Any, ns: str, sids: list[str]) -> dict[str, list[str]]:
    """sid -> the event ids its history shows applied at two (or more) versions."""
    pipe = r.pipeline(transaction=False)
    for sid in sids:
        pipe.lrange(f"{ns}:{{{sid[:10]}}}:history:{sid}", 0, -1)
    out: dict[str, list[str]] = {}
    for sid, lines in zip(sids, pipe.execute(), strict=True):
        versions: dict[str, set[str]] = defaultdict(set)
        for entry in (parse_history(_text(line)) for line in lines):
            versions[entry["event_id"]].add(entry["version"])
        doubles = sorted(e for e, v in versions.items() if len(v) > 1)
        if doubles:
            out[sid] = doubles
    return out


def media_nodes(r: Any, ns: str, known: tuple[str, ...]) -> list[str]:
    """The nodes to audit: those named, those registered, and any with a legs hash."""
    names = set(known) | {_text(n) for n in r.zrange(f"{ns}:processes:media", 0, -1)}
    for key in r.scan_iter(match=f"{ns}:{{media:*}}:legs", count=1000):
        names.add(_text(key).split("{media:", 1)[1].split("}", 1)[0])
    return sorted(names)


def orphan_legs(
    r: Any,
    ns: str,
    nodes: list[str],
    in_memory: dict[str, int],
    found: dict[str, dict[str, str]],
) -> list[str]:
    """Legs that belong to no live session: ``node:media_id (why)`` for each listed one,
    ``node:+N unlisted`` for legs held in memory (``in_memory``: the node's gauge, absent
    when the node is down) beyond the live legs it lists.

    This is the suite's own audit, from what the base code exposes; swap the body for
    ``sessiond.media.audit.orphan_legs`` once that module exists."""
    out: list[str] = []
    for node in nodes:
        legs = {_text(k): _text(v) for k, v in r.hgetall(f"{ns}:{{media:{node}}}:legs").items()}
        legs.pop(INCARNATION, None)
        live = 0
        for media_id, entry in sorted(legs.items()):
            sid, _ = leg_of(media_id, entry)  # "=create id": the media id's own session
            session = found.get(sid)
            if session is None:
                out.append(f"{node}:{media_id} (no session)")
            elif session.get("state") in TERMINAL:
                out.append(f"{node}:{media_id} (session {session.get('state')})")
            elif session.get("media_node") != node:
                out.append(f"{node}:{media_id} (session on {session.get('media_node')!r})")
            else:
                live += 1
        extra = in_memory.get(node, 0) - len(legs)
        if extra > 0:
            out.append(f"{node}:+{extra} unlisted")
    return out


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


@dataclass
class Audit:
    """Everything the scenario asserts on, read at one moment."""

    sessions: int = 0
    non_terminal: list[str] = field(default_factory=list)
    duplicate_call_ids: dict[str, int] = field(default_factory=dict)
    applied_twice: dict[str, list[str]] = field(default_factory=dict)
    timers_twice: dict[str, list[str]] = field(default_factory=dict)
    orphans: list[str] = field(default_factory=list)

    @property
    def doubles(self) -> int:
        """Events applied twice plus sessions beyond the first for one Call-ID."""
        applied = sum(len(v) for v in self.applied_twice.values())
        return applied + sum(n - 1 for n in self.duplicate_call_ids.values())


def audit(
    r: Any, ns: str, nodes: tuple[str, ...], in_memory: dict[str, int], exclude_source: str = ""
) -> Audit:
    found = sessions(r, ns)
    twice = applied_twice(r, ns, sorted(found))
    timers = {
        sid: t for sid, ids in twice.items() if (t := [e for e in ids if e.startswith("timer:")])
    }
    return Audit(
        sessions=len(found),
        non_terminal=non_terminal(found, exclude_source),
        duplicate_call_ids=duplicate_call_ids(found),
        applied_twice=twice,
        timers_twice=timers,
        orphans=orphan_legs(r, ns, media_nodes(r, ns, nodes), in_memory, found),
    )
