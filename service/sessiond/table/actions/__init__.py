"""Actions: the named effects a transition runs, one module per domain. Each one is real
code that builds commands for the edge, the media process or the application, or updates
session fields, and declares its arguments (checked when a table loads).

A command is only data; the worker emits it after the transition is stored. Commands carry
everything the receiver needs (call ids, tags, URIs, SDP) so an edge or media process that
restarted can still execute them. Edge and media commands are built as their typed records
(:mod:`sessiond.core.messages`); timer commands (read by the store), app events and events
for other sessions (event data passed along as it came) stay plain maps.
"""

from __future__ import annotations

from sessiond.table.actions import (
    conference,
    fields,
    fork,
    hold,
    media,
    session_timer,
    sessions,
    sip,
    timers,
)
from sessiond.table.actions.sessions import uri_of
from sessiond.table.argspec import Spec, merge
from sessiond.table.model import ActionFn

ACTIONS: dict[str, Spec[ActionFn]] = merge(
    sip.action,
    media.action,
    hold.action,
    timers.action,
    session_timer.action,
    sessions.action,
    fields.action,
    conference.action,
    fork.action,
)

__all__ = ["ACTIONS", "uri_of"]
