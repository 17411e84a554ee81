"""The registrar's users: digest H(A1) values in Redis, never a password.

``user:<user>@<domain>`` is a hash with ``ha1_md5`` and ``ha1_sha256``: H(user:realm:password)
under MD5 and SHA-256 (RFC 8760), where the realm is the domain (the registrar challenges a
REGISTER for ``sip:alice@example.com`` with ``realm="example.com"``), so either algorithm
can be answered. ``sessiond ctl user`` writes them; the edges only read them.

A users file (``ctl user load FILE``) has one ``user[@domain]:password`` per line, as the
edge's ``--auth-file``; ``#`` comments and blank lines are ignored.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sessiond.core.errors import SessiondError
from sessiond.sip.digest import compute_ha1
from sessiond.store.keys import Keys

FIELDS = {"MD5": "ha1_md5", "SHA-256": "ha1_sha256"}


class UsersFileError(SessiondError):
    """A users file cannot be read (messages name the file and line)."""


@dataclass(frozen=True, slots=True)
class Account:
    user: str
    domain: str
    password: str


def ha1_fields(user: str, domain: str, password: str) -> dict[str, str]:
    fields = {f: compute_ha1(alg, user, domain, password) for alg, f in FIELDS.items()}
    return {**fields, "updated_at": f"{time.time():.0f}"}


def split_user(text: str, domains: list[str]) -> tuple[str, str]:
    """``user@domain`` -> (user, domain); a bare ``user`` takes the one served domain
    (ValueError when none or several are known, or the name is unusable)."""
    user, at, domain = text.partition("@")
    if not user or any(c in user for c in ":;<> \t") or (at and not domain):
        raise ValueError(f"{text!r} is not USER or USER@DOMAIN")
    if at:
        return user, domain.lower()
    if len(domains) == 1:
        return user, domains[0]
    known = ", ".join(sorted(domains)) or "none known yet"
    raise ValueError(f"{text!r}: name the domain, USER@DOMAIN (domains served: {known})")


def read_file(path: str | Path) -> list[tuple[int, str, str]]:
    """(line number, user[@domain], password) of each entry of a users file."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsersFileError(f"{path}:0: cannot read: {exc}") from exc
    out, problems = [], []
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        name, sep, password = text.partition(":")
        if not sep or not name or not password:
            problems.append(f"{path}:{number}: expected user[@domain]:password")
        else:
            out.append((number, name, password))
    if problems:
        raise UsersFileError("\n".join(problems))
    return out


class Users:
    def __init__(self, redis: Any, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def domains(self) -> list[str]:
        return sorted(d.decode() for d in await self.redis.smembers(self.keys.registrar_domains()))

    async def serve(self, domains: list[str]) -> None:
        """Note the domains an edge serves (for a bare USER in ``ctl user``)."""
        if domains:
            await self.redis.sadd(self.keys.registrar_domains(), *domains)

    async def put(self, accounts: list[Account]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for a in accounts:
            pipe.hset(
                self.keys.user(a.user, a.domain), mapping=ha1_fields(a.user, a.domain, a.password)
            )
        await pipe.execute()

    async def exists(self, user: str, domain: str) -> bool:
        return bool(await self.redis.exists(self.keys.user(user, domain)))

    async def delete(self, user: str, domain: str) -> bool:
        return bool(await self.redis.delete(self.keys.user(user, domain)))

    async def ha1(self, user: str, domain: str, algorithm: str) -> str | None:
        field = FIELDS.get(algorithm.upper())
        if field is None:
            return None
        raw = await self.redis.hget(self.keys.user(user, domain), field)
        return raw.decode() if isinstance(raw, bytes) else raw

    async def names(self) -> list[str]:
        prefix = f"{self.keys.ns}:user:"
        found = [
            (k.decode() if isinstance(k, bytes) else str(k)).removeprefix(prefix)
            async for k in self.redis.scan_iter(match=f"{prefix}*", count=1000)
        ]
        return sorted(found)
