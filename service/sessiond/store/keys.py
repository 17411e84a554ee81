"""Every Redis key name sessiond uses, built in this one module.

Cluster safety: a session's keys (hash, history, applied events, registry entries) share the
hash tag ``{T}``, where T is derived from the call's Call-ID, so each Lua script touches one
slot. Stream partitions carry their own tag ``{pN}`` so a partition's events stream and its
timer set also share a slot. Session ids embed T (``T-random``), so the keys of a session can
be computed from its id alone.

    sessiond:{T}:session:<sid>           hash    the session (plain text fields)
    sessiond:{T}:history:<sid>           list    one text line per transition, capped
    sessiond:{T}:applied:<sid>           hash    event id -> "" (duplicate refusal)
    sessiond:{T}:outbox:<sid>            hash    event id -> outbox, until it was emitted
    sessiond:{T}:dialog:<local_tag>:<call_id>     string  -> sid (in-dialog traffic)
    sessiond:{T}:initial:<remote_tag>:<call_id>   string  -> sid (UAS, before our To tag)
    sessiond:{T}:media:<media_id>        string  -> sid (written by older sessionds only: a
                                         media id is "<sid>.m")
    sessiond:{T}:media-owner:<media_id>  hash    the node that claimed the leg (media_claim.lua)
    sessiond:{pN}:events                 stream  event partition N (consumer group "workers")
    sessiond:{pN}:timers                 zset    due timers of partition N, score = due time
    sessiond:{edge:NAME}:commands        stream  commands for one edge
    sessiond:{media:NAME}:commands       stream  commands for one media node
    sessiond:{media}:commands            stream  commands any media node may take
    sessiond:{media:NAME}:legs           hash    media id -> "=create-cmd-id" (or "sid
                                                 create-cmd-id"), @incarnation
    sessiond:media-lost:<name>           string  claim of the worker announcing a lost node
    sessiond:media-capacity              hash    node -> "free capacity beat" (its heartbeat)
    sessiond:{app}:events                stream  events for applications
    sessiond:{room:NAME}:room            hash    a conference room: media_node, created_at...
    sessiond:{room:NAME}:members         hash    session id -> member flags
    sessiond:rooms                       set     the names of the rooms (for listing)
    sessiond:process:<kind>:<name>       string  heartbeat of a live process (TTL)
    sessiond:processes:<kind>            zset    process name -> last heartbeat time
    sessiond:drain:<name>                string  present: that process should drain and exit
    sessiond:answered:<sent-by>:<branch>:<method>  string  our final response (edge, 32 s)
    sessiond:registration:<aor>          hash    our registration of <aor> (edge; state, expiry)
    sessiond:keepalive:<uri>             hash    OPTIONS keepalive to a --ping target (edge)
    sessiond:location:<user>@<domain>    hash    bindings of an AOR we serve: contact -> JSON
                                                 (register.lua; TTL of the longest binding)
    sessiond:user:<user>@<domain>        hash    a registrar user's H(A1)s (never the password)
    sessiond:registrar-domains           set     the domains edges serve with --registrar
"""

from __future__ import annotations

from sessiond.core.ids import TAG_LEN, call_tag, sid_tag

#: Consumer groups: the workers on the event partitions, the media nodes and the edges on
#: their command streams (applications pick their own group on ``{app}:events``).
WORKERS_GROUP = "workers"
MEDIA_GROUP = "media"
EDGE_GROUP = "edge"
#: Approximate cap (XADD MAXLEN ~) of every stream a process appends to.
STREAM_MAXLEN = 100_000
#: Seconds a process's heartbeat key lives; it is written every second.
HEARTBEAT_TTL = 5
#: How many recent command ids a consumer remembers to drop repeated commands.
SEEN_IDS = 50_000


class Keys:
    """Key names under one namespace (default ``sessiond``)."""

    def __init__(self, namespace: str = "sessiond", partitions: int = 16) -> None:
        self.ns = namespace
        self.partitions = partitions

    # -- per session ------------------------------------------------------------------------
    def session(self, sid: str) -> str:
        return f"{self.ns}:{{{sid_tag(sid)}}}:session:{sid}"

    def history(self, sid: str) -> str:
        return f"{self.ns}:{{{sid_tag(sid)}}}:history:{sid}"

    def applied(self, sid: str) -> str:
        return f"{self.ns}:{{{sid_tag(sid)}}}:applied:{sid}"

    def outboxes(self, sid: str) -> str:
        """The outboxes of a session's applied events that were not emitted yet (the key
        is gone once they all were)."""
        return f"{self.ns}:{{{sid_tag(sid)}}}:outbox:{sid}"

    def session_keys(self, sid: str) -> list[str]:
        return [self.session(sid), self.history(sid), self.applied(sid), self.outboxes(sid)]

    # -- registry ---------------------------------------------------------------------------
    def dialog(self, call_id: str, local_tag: str) -> str:
        return f"{self.ns}:{{{call_tag(call_id)}}}:dialog:{local_tag}:{call_id}"

    def initial(self, call_id: str, remote_tag: str) -> str:
        return f"{self.ns}:{{{call_tag(call_id)}}}:initial:{remote_tag}:{call_id}"

    def media(self, media_id: str) -> str:
        """The media registry entry an older sessiond wrote (media id -> sid); events of
        a leg carry their session id, and a session is live while its hash has no
        ``ended_by``, so no such entry is written any more."""
        return f"{self.ns}:{{{sid_tag(media_id)}}}:media:{media_id}"

    def media_owner(self, media_id: str) -> str:
        """Which media node claimed a leg's create (node, incarnation, create ids), or that
        the leg was destroyed before any did: in the session's slot."""
        return f"{self.ns}:{{{sid_tag(media_id)}}}:media-owner:{media_id}"

    def registry_keys(self, session: dict[str, str]) -> list[str]:
        """The registry entries that map to this session, computed from its fields."""
        call_id = session.get("call_id", "")
        keys = [self.dialog(call_id, session.get("local_tag", ""))]
        if session.get("role") == "UAS":
            keys.append(self.initial(call_id, session.get("remote_tag", "")))
        return keys

    # -- streams and timers -----------------------------------------------------------------
    def partition_of(self, sid_or_media_id: str) -> int:
        return int(sid_or_media_id[:TAG_LEN], 16) % self.partitions

    def partition_of_call(self, call_id: str) -> int:
        return int(call_tag(call_id), 16) % self.partitions

    def events(self, partition: int) -> str:
        return f"{self.ns}:{{p{partition}}}:events"

    def timers(self, partition: int) -> str:
        return f"{self.ns}:{{p{partition}}}:timers"

    def edge_commands(self, edge: str) -> str:
        return f"{self.ns}:{{edge:{edge}}}:commands"

    def media_commands(self, node: str) -> str:
        return f"{self.ns}:{{media:{node}}}:commands"

    def media_pool(self) -> str:
        return f"{self.ns}:{{media}}:commands"

    def media_legs(self, node: str) -> str:
        """The legs a media node serves, so their calls hear about it if the node is lost."""
        return f"{self.ns}:{{media:{node}}}:legs"

    def media_lost_claim(self, node: str) -> str:
        """Held (SET NX, with a TTL) by the one worker announcing a lost node's legs."""
        return f"{self.ns}:media-lost:{node}"

    def media_capacity(self) -> str:
        """Each media node's free and total legs, written at its heartbeat, read by edges."""
        return f"{self.ns}:media-capacity"

    def app_events(self) -> str:
        return f"{self.ns}:{{app}}:events"

    def room(self, name: str) -> str:
        """A conference room: the media node mixing it, when it was made, how often it
        moved (plain fields); its members are in :meth:`room_members`, in the same slot."""
        return f"{self.ns}:{{room:{name}}}:room"

    def room_members(self, name: str) -> str:
        """A room's members: session id -> flags (``muted=0 deaf=0 gain_db=0 whisper_to=``)."""
        return f"{self.ns}:{{room:{name}}}:members"

    def rooms(self) -> str:
        """The names of the rooms that exist (an index for listing; may name a room whose
        keys have just gone)."""
        return f"{self.ns}:rooms"

    def answered(self, sent_by: str, branch: str, method: str) -> str:
        """An edge's final response to one request (64*T1), for retransmissions that reach
        an edge restarted since it answered."""
        return f"{self.ns}:answered:{sent_by}:{branch}:{method}"

    def registration(self, aor: str) -> str:
        """An edge's registration of ``aor`` as a client: state, expiry, last response,
        keepalive results (plain fields for redis-cli and ``sessiond ctl registrations``)."""
        return f"{self.ns}:registration:{aor}"

    def keepalive(self, target: str) -> str:
        """OPTIONS keepalive results for a ``--ping`` target that is not a registrar."""
        return f"{self.ns}:keepalive:{target}"

    def location(self, user: str, domain: str) -> str:
        """The bindings of the AOR ``sip:user@domain`` we are the registrar of: one hash,
        contact URI -> binding (JSON, see :mod:`sessiond.store.location`)."""
        return f"{self.ns}:location:{user}@{domain.lower()}"

    def user(self, user: str, domain: str) -> str:
        """A registrar user's digest H(A1) values (``sessiond ctl user``)."""
        return f"{self.ns}:user:{user}@{domain.lower()}"

    def registrar_domains(self) -> str:
        """The domains edges started with ``--registrar`` serve (for ``ctl user add USER``
        without a domain)."""
        return f"{self.ns}:registrar-domains"

    def heartbeat(self, kind: str, name: str) -> str:
        return f"{self.ns}:process:{kind}:{name}"

    def processes(self, kind: str) -> str:
        return f"{self.ns}:processes:{kind}"

    def leases(self) -> list[str]:
        """One lease per event partition; the worker holding it reads that partition. All in
        one hash slot, so the lease script can take them at once in a Redis Cluster."""
        return [f"{self.ns}:{{leases}}:p{p}" for p in range(self.partitions)]

    def drain(self, name: str) -> str:
        return f"{self.ns}:drain:{name}"

    def table_source(self, name: str, rev: str) -> str:
        return f"{self.ns}:table:{name}:{rev}"
