"""``sessiond ctl``: look at and act on live sessions and processes, through Redis only."""

from __future__ import annotations

import argparse
import contextlib
import re
import secrets
import sys
import time
from typing import Any

from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from sessiond.cli import conference, readable
from sessiond.cli.preflight import positive_int
from sessiond.core import appschema
from sessiond.core.redact import redact_keys
from sessiond.core.resources import default_table_path
from sessiond.core.types import Event
from sessiond.media.audit import orphan_legs_async
from sessiond.sip.errors import SipParseError
from sessiond.sip.uri import SipUri, parse_uri
from sessiond.store import Keys, Store, new_sid, queries
from sessiond.store.client import connect, url_problem
from sessiond.store.embedded import local_runs, runtime_dir
from sessiond.store.liveness import live_processes, request_drain
from sessiond.store.location import all_locations
from sessiond.store.tableset import TableSet
from sessiond.store.users import Account, Users, UsersFileError, read_file, split_user
from sessiond.table import load_table

LIST_FIELDS = ("sid", "role", "state", "call_id", "remote_uri", "entered_state_at")


async def ctl(args: argparse.Namespace) -> int:
    problem = usage_problem(args) or locate(args)
    if problem:
        print(f"sessiond ctl: {problem}", file=sys.stderr)
        return 2
    redis = connect(args.redis, **CTL_CONNECTION)
    keys = Keys(args.namespace, partitions=args.partitions)
    try:
        handler = {
            "list": _list,
            "show": _show,
            "hangup": _hangup,
            "drain": _drain,
            "workers": _workers,
            "call": _call,
            "play": _play,
            "record": _record,
            "dtmf": _dtmf,
            "hold": _hold,
            "resume": _resume,
            "transfer": _transfer,
            "registrations": _registrations,
            "user": _user,
            "orphans": _orphans,
            "conference": conference.conference,
        }[args.ctl_command]
        # an unreachable or silent server fails here, once, within seconds
        await queries.ping(redis)
        return await handler(redis, keys, args)
    except (RedisError, OSError) as exc:
        print(f"sessiond ctl: {unreachable(args.redis, exc)}", file=sys.stderr)
        return 1
    finally:
        with contextlib.suppress(RedisError, OSError):
            await redis.aclose()


# ctl fails fast: a short connect and reply timeout, and no retries
CTL_CONNECTION: dict[str, Any] = {
    "socket_connect_timeout": 3,
    "socket_timeout": 5,
    "retry": Retry(NoBackoff(), 0),
}
SID = re.compile(r"[0-9a-f]{10}-[0-9A-Za-z]{1,64}")


def usage_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the command line itself (checked before connecting): a session id
    that cannot be one, a call or transfer target that is not a SIP URI, a bad Redis URL."""
    sid = getattr(args, "sid", None)
    if sid is not None and not SID.fullmatch(sid):
        return f"{sid!r} is not a session id (they look like 3fa9c01b22-5d0e6a1f7c88: see ctl list)"
    if args.ctl_command in ("call", "transfer"):
        for option, uri in (("target", args.target), ("--from", getattr(args, "from_uri", None))):
            if uri is not None and not _sip_uri(uri):
                return f"{option}: {uri!r} is not a SIP URI (e.g. sip:bob@127.0.0.1:5062)"
    if args.ctl_command == "conference" and (problem := conference.usage_problem(args)):
        return problem
    problem = url_problem(args.redis)
    return f"--redis: {problem}" if problem else None


def _sip_uri(text: str) -> bool:
    """The checks the worker makes on a MakeCall target, and a SIP URI parse."""
    fields = {"target": text, "call_id": "c@h", "local_tag": "t"}
    if appschema.problem("MakeCall", fields) is not None:
        return False
    try:
        return isinstance(parse_uri(text.strip("<>")), SipUri)
    except SipParseError:
        return False


def locate(args: argparse.Namespace) -> str | None:
    """Without ``--redis``: the store of the one local ``sessiond run`` (and its namespace and
    partitions, unless given). A problem when there is none, or several."""
    found: dict[str, Any] = {}
    if args.redis is None:
        runs = local_runs()
        if not runs:
            return (
                f"no --redis given and no local `sessiond run` is up (looked in {runtime_dir()});"
                " pass --redis URL"
            )
        if len(runs) > 1:
            urls = ", ".join(f"{r['redis']} (pid {r['pid']})" for r in runs)
            return f"several local `sessiond run` are up; pass --redis with one of: {urls}"
        found = runs[0]
        args.redis = str(found["redis"])
    if args.namespace is None:
        args.namespace = str(found.get("namespace") or "sessiond")
    if args.partitions is None:
        args.partitions = int(found.get("partitions") or 16)
    return None


def unreachable(url: str, exc: BaseException) -> str:
    """One line for a Redis that cannot be used: what failed and what to check."""
    if isinstance(exc, ResponseError):
        return f"Redis at {url} refused the command: {exc}"
    reason = str(exc).strip() or type(exc).__name__
    return f"cannot use Redis at {url}: {reason} (is it running? check --redis)"


async def _list(redis: Any, keys: Keys, args: argparse.Namespace) -> int:
    now = time.time()
    rows = [
        row
        for row in await queries.session_rows(redis, keys, LIST_FIELDS)
        if not args.state or row["state"] == args.state
    ]
    rows.sort(key=lambda r: r["entered_state_at"])
    print(f"{'SESSION':24} {'ROLE':4} {'STATE':12} {'IN STATE':>9}  CALL-ID / REMOTE")
    for r in rows:
        age = now - float(r["entered_state_at"] or now)
        print(
            f"{r['sid']:24} {r['role']:4} {r['state']:12} {age:8.1f}s  "
            f"{r['call_id']} {r['remote_uri']}"
        )
    print(f"{len(rows)} session(s)")
    return 0


async def _show(redis: Any, keys: Keys, args: argparse.Namespace) -> int:
    store = Store(redis, keys)
    session = await store.get(args.sid)
    if session is None:
        print(f"no session {args.sid}")
        return 1
    width = max(len(k) for k in session)
    for name in sorted(session):
        value = redact_keys(session[name])  # SRTP keys (SDES) are not for screens
        print("\n".join(readable.field_lines(name, value, width)))
    entered = float(session.get("entered_state_at") or time.time())
    print(f"\ntime in state: {time.time() - entered:.1f}s")
    try:
        tables = TableSet([load_table(default_table_path())], redis, keys)
        table = await tables.for_session(session)
        print(
            "possible next events:", ", ".join(table.events_from(session["role"], session["state"]))
        )
    except Exception as exc:  # the history below is still worth printing
        print(f"table not available: {exc}")
    print("\nhistory:")
    for h in await store.history(args.sid, count=1000):
        print(readable.history_line(h))
    return 0


async def _send(redis: Any, keys: Keys, sid: str, kind: str, data: dict[str, Any]) -> int:
    """Publish an application command for one session, as the Client API does."""
    store = Store(redis, keys)
    if await store.get(sid) is None:
        print(f"no session {sid}")
        return 1
    event = Event(f"ctl:{kind}:{secrets.token_hex(6)}", kind, data, sid)
    await store.publish(keys.partition_of(sid), event)
    print(f"{kind} sent to {sid} (event {event.id})")
    return 0


async def _hangup(redis: Any, keys: Keys, args: argparse.Namespace) -> int:
    return await _send(redis, keys, args.sid, "Hangup", {"by": "ctl"})


async def _play(redis: Any, keys: Keys, args: argparse.Namespace) -> int:
    data: dict[str, Any] = {"tone": args.tone} if args.tone else {"file": args.file}
    if args.seconds:
        data["seconds"] = args.seconds
    return await _send(redis, keys, args.sid, "Play", data)


async def _record(redis: Any, keys: Keys, args: argparse.Namespace) -> int:
    if args.stop:
        return await _send(redis, keys, args.sid, "StopRecord", {})
    return await _send(
        redis, keys, args.sid, "Record", {"path": args.path, "direction": args.direction}
    )


async def _dtmf(redis: Any, keys: Keys, args: argparse.Namespace) -> int:
    data = {"digits": args.digits}
    if args.info:
        data["method"] = "info"
    return await _send(redis, keys, args.sid, "SendDtmf", data)


async def _hold(redis: Any, keys: Keys, args: argparse.Namespace) -> int:
    return await _send(redis, keys, args.sid, "Hold", {})


async def _resume(redis: Any, keys: Keys, args: argparse.Namespace) -> int:
    return await _send(redis, keys, args.sid, "Resume", {})


async def _transfer(redis: Any, keys: Keys, args: argparse.Namespace) -> int:
    return await _send(redis, keys, args.sid, "Transfer", {"target": args.target})


async def _call(redis: Any, keys: Keys, args: argparse.Namespace) -> int:
    edges = [args.edge] if args.edge else await live_processes(redis, keys, "edge")
    if not edges:
        print("no live edge to place the call through (start one, or pass --edge)")
        return 1
    call_id = f"{secrets.token_hex(8)}@sessiond"
    sid = new_sid(call_id)
    data = {
        "target": args.target,
        "to": args.target,
        "from": args.from_uri,
        "call_id": call_id,
        "local_tag": secrets.token_hex(5),
        "edge": edges[0],
    }
    if args.latch_private:
        data["latch_private"] = True
    event = Event(f"ctl:call:{sid}", "MakeCall", data, sid)
    await Store(redis, keys).publish(keys.partition_of(sid), event)
    print(sid)
    return 0


async def _registrations(redis: Any, keys: Keys, args: argparse.Namespace) -> int:
    """Both directions: the edges' registrations to others (and --ping keepalives), then
    the bindings others hold with us (our --registrar domains)."""
    now = time.time()
    rows = [
        (row.get("aor") or row.get("target", ""), row)
        for row in await queries.registrations(redis, keys)
    ]
    print("OURS, TO OTHERS")
    head = f"{'AOR / TARGET':40} {'STATE':13} {'EXPIRES IN':>10} {'LAST':>4} {'REACH':>5}"
    print(f"{head} {'RTT':>8}")
    for name, row in sorted(rows, key=lambda r: r[0]):
        left = f"{float(row['expires_at']) - now:.0f}s" if row.get("expires_at") else ""
        rtt = f"{row['rtt_ms']}ms" if row.get("rtt_ms") else ""
        print(
            f"{name:40} {row.get('state', 'keepalive'):13} {left:>10} "
            f"{row.get('last_code') or row.get('ping_code', ''):>4} "
            f"{row.get('reachable', ''):>5} {rtt:>8}"
        )
    print(f"{len(rows)} registration(s) and keepalive(s)")
    bindings = await all_locations(redis, keys, now)
    print("\nOTHERS', TO US")
    print(
        f"{'AOR':32} {'CONTACT':40} {'EXPIRES IN':>10} {'Q':>4} {'TRANSPORT':9} {'SOURCE':22} EDGE"
    )
    for aor, b in sorted(bindings, key=lambda r: (r[0], -(r[1].q or 1.0))):
        q = "" if b.q is None else f"{b.q:g}"
        path = f" path {','.join(b.path)}" if b.path else ""  # calls go through it (RFC 3327)
        print(
            f"{aor:32} {b.contact:40} {b.expires_in(now):>9}s {q:>4} {b.transport:9} "
            f"{b.source:22} {b.edge}{path}"
        )
    print(f"{len(bindings)} binding(s) of {len({a for a, _ in bindings})} AOR(s)")
    return 0


async def _user(redis: Any, keys: Keys, args: argparse.Namespace) -> int:
    """``ctl user add|passwd|del|list|load``: the registrar's accounts (H(A1) only)."""
    users = Users(redis, keys)
    action = args.user_command
    if action == "list":
        names = await users.names()
        print("\n".join(names + [f"{len(names)} user(s)"]))
        return 0
    domains = await users.domains()
    try:
        if action == "load":
            entries = [(n, *split_user(name, domains), pw) for n, name, pw in read_file(args.file)]
        else:
            user, domain = split_user(args.user, domains)
    except (ValueError, UsersFileError) as exc:
        print(f"sessiond ctl user {action}: {exc}", file=sys.stderr)
        return 2
    if action == "load":
        await users.put([Account(u, d, pw) for _, u, d, pw in entries])
        print(f"{len(entries)} user(s) written from {args.file}")
        return 0
    exists = await users.exists(user, domain)
    if action == "del":
        await users.delete(user, domain)
        print(f"{user}@{domain} deleted" if exists else f"no user {user}@{domain}")
        return 0 if exists else 1
    if action == "passwd" and not exists:
        print(f"no user {user}@{domain} (add it with ctl user add)")
        return 1
    if action == "add" and exists:
        print(f"user {user}@{domain} exists (change its password with ctl user passwd)")
        return 1
    password = sys.stdin.readline().rstrip("\r\n") if args.password == "-" else args.password
    if not password:
        print(f"sessiond ctl user {action}: empty password", file=sys.stderr)
        return 2
    await users.put([Account(user, domain, password)])
    print(f"{user}@{domain} {'added' if action == 'add' else 'password changed'}")
    return 0


async def _drain(redis: Any, keys: Keys, args: argparse.Namespace) -> int:
    await request_drain(redis, keys, args.worker)
    print(f"drain requested for {args.worker}: it stops reading, finishes its batch and exits")
    return 0


async def _workers(redis: Any, keys: Keys, args: argparse.Namespace) -> int:
    rows = await queries.workers(redis, keys)
    now = time.time()
    print(f"{'WORKER':40} {'STATUS':6} {'LAST SEEN':>9} {'PENDING':>8}  PARTITIONS")
    for w in rows:
        print(
            f"{w.name:40} {'alive' if w.alive else 'dead':6} {now - w.last_seen:8.1f}s "
            f"{w.pending:8}  {_ranges(w.partitions) or '-'}"
        )
    return 0


async def _orphans(redis: Any, keys: Keys, args: argparse.Namespace) -> int:
    """Legs on live media nodes that no live session owns; exit status 1 if there are any."""
    found = await orphan_legs_async(redis, keys)
    for leg in found:
        print(f"{leg.node:20} {leg.media_id:28} {leg.reason}")
    print(f"{len(found)} orphan media legs")
    return 1 if found else 0


def _ranges(numbers: list[int]) -> str:
    """[0, 1, 2, 5, 7, 8] -> '0-2,5,7-8'."""
    spans: list[list[int]] = []
    for n in sorted(numbers):
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ",".join(f"{a}-{b}" if a != b else str(a) for a, b in spans)


def add_parser(sub: Any) -> None:
    ctl_parser = sub.add_parser("ctl", help="inspect and control live sessions and processes")
    ctl_parser.add_argument(
        "--redis",
        default=None,
        help="Redis URL (default: the embedded store of the local `sessiond run`)",
    )
    ctl_parser.add_argument(
        "--partitions", type=positive_int, default=None, help="default: the run's, else 16"
    )
    ctl_parser.add_argument(
        "--namespace", default=None, help="key prefix (default: the run's, else sessiond)"
    )
    csub = ctl_parser.add_subparsers(dest="ctl_command", required=True)
    lst = csub.add_parser("list", help="sessions, oldest state first")
    lst.add_argument("--state", default=None)
    show = csub.add_parser("show", help="fields, history, possible next events")
    show.add_argument("sid")
    hangup = csub.add_parser("hangup", help="end a call (sends it a Hangup event)")
    hangup.add_argument("sid")
    drain = csub.add_parser("drain", help="ask a worker to finish its work and exit")
    drain.add_argument("worker")
    csub.add_parser("workers", help="live and dead workers, with pending entries")
    csub.add_parser(
        "registrations",
        help="the edges' registrations and keepalives, and the bindings registered with us",
    )
    user = csub.add_parser("user", help="the registrar's accounts (stored as digest H(A1))")
    usub = user.add_subparsers(dest="user_command", required=True)
    for name, text in (("add", "add a user"), ("passwd", "change a user's password")):
        one = usub.add_parser(name, help=text)
        one.add_argument("user", metavar="USER[@DOMAIN]", help="DOMAIN: the one served if omitted")
        one.add_argument("password", help="the password ('-': read a line from stdin)")
    usub.add_parser("del", help="delete a user").add_argument("user", metavar="USER[@DOMAIN]")
    usub.add_parser("list", help="every user@domain")
    load = usub.add_parser("load", help="add or update users from a file")
    load.add_argument("file", help="lines user[@domain]:password (# comments)")
    csub.add_parser("orphans", help="media legs no live session owns (exit status 1 if any)")
    play = csub.add_parser("play", help="play a tone or a WAV file on a call")
    play.add_argument("sid")
    what = play.add_mutually_exclusive_group(required=True)
    what.add_argument("--tone", type=float, help="frequency in Hz")
    what.add_argument("--file", help="WAV file path (on the media node)")
    play.add_argument("--seconds", type=float, default=None)
    record = csub.add_parser("record", help="record a call to a WAV file (on the media node)")
    record.add_argument("sid")
    record.add_argument("path", nargs="?", default="/tmp/sessiond-{sid}.wav")
    record.add_argument("--direction", choices=["in", "out", "both"], default="both")
    record.add_argument("--stop", action="store_true", help="close the recording")
    dtmf = csub.add_parser("dtmf", help="send DTMF digits on a call")
    dtmf.add_argument("sid")
    dtmf.add_argument("digits")
    dtmf.add_argument("--info", action="store_true", help="by SIP INFO instead of RFC 4733")
    for name, text in (("hold", "put the far end on hold"), ("resume", "take it off hold")):
        csub.add_parser(name, help=text).add_argument("sid")
    transfer = csub.add_parser("transfer", help="blind transfer: REFER the far end to URI")
    transfer.add_argument("sid")
    transfer.add_argument("target", help="SIP URI the far end should call")
    conference.add_parser(csub)
    call = csub.add_parser("call", help="place a call; prints the new session id")
    call.add_argument("target", help="SIP URI to call, e.g. sip:bob@127.0.0.1:5062")
    call.add_argument("--from", dest="from_uri", default="sip:sessiond@127.0.0.1")
    call.add_argument("--edge", default=None, help="edge to use (default: any live one)")
    call.add_argument(
        "--latch-private",
        action="store_true",
        help="the callee is behind NAT: send its media only where its RTP comes from, "
        "never to a private address its SDP names",
    )
