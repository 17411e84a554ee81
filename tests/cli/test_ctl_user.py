"""``sessiond ctl user`` against a real Redis: only H(A1) is stored, for MD5 and SHA-256."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as sync_redis

from sessiond.cli.main import main
from sessiond.sip.digest import compute_ha1

pytestmark = pytest.mark.redis


@pytest.fixture
def ns(redis_url: str) -> Iterator[tuple[list[str], sync_redis.Redis, str]]:
    namespace = f"tu{uuid.uuid4().hex[:8]}"
    client = sync_redis.Redis.from_url(redis_url)
    yield ["ctl", "--redis", redis_url, "--namespace", namespace], client, namespace
    for key in client.scan_iter(match=f"{namespace}:*"):
        client.delete(key)
    client.close()


def test_add_passwd_del_list(
    ns: tuple[list[str], sync_redis.Redis, str], capsys: pytest.CaptureFixture[str]
) -> None:
    base, client, namespace = ns
    assert main([*base, "user", "add", "alice@Example.com", "s3cret"]) == 0
    stored = client.hgetall(f"{namespace}:user:alice@example.com")
    assert stored[b"ha1_md5"].decode() == compute_ha1("MD5", "alice", "example.com", "s3cret")
    assert stored[b"ha1_sha256"].decode() == compute_ha1(
        "SHA-256", "alice", "example.com", "s3cret"
    )
    assert b"s3cret" not in b"".join(stored.values())
    assert main([*base, "user", "add", "alice@example.com", "again"]) == 1
    assert "exists" in capsys.readouterr().out
    assert main([*base, "user", "passwd", "alice@example.com", "n3w"]) == 0
    stored = client.hgetall(f"{namespace}:user:alice@example.com")
    assert stored[b"ha1_md5"].decode() == compute_ha1("MD5", "alice", "example.com", "n3w")
    assert main([*base, "user", "passwd", "nobody@example.com", "x"]) == 1
    # a bare user needs the one served domain
    assert main([*base, "user", "add", "bob", "pw"]) == 2
    assert "name the domain" in capsys.readouterr().err
    client.sadd(f"{namespace}:registrar-domains", "example.com")
    assert main([*base, "user", "add", "bob", "pw"]) == 0
    assert main([*base, "user", "list"]) == 0
    out = capsys.readouterr().out
    assert "alice@example.com\nbob@example.com\n2 user(s)" in out
    assert main([*base, "user", "del", "bob"]) == 0
    assert not client.exists(f"{namespace}:user:bob@example.com")
    assert main([*base, "user", "del", "bob"]) == 1


def test_load_a_users_file(
    ns: tuple[list[str], sync_redis.Redis, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    base, client, namespace = ns
    users = tmp_path / "users"
    users.write_text("# phones\nalice@example.com:one\n\ncarol@example.org:two:with:colons\n")
    assert main([*base, "user", "load", str(users)]) == 0
    assert "2 user(s) written" in capsys.readouterr().out
    ha1 = client.hget(f"{namespace}:user:carol@example.org", "ha1_md5")
    assert ha1.decode() == compute_ha1("MD5", "carol", "example.org", "two:with:colons")
    users.write_text("alice@example.com:one\nbroken line\n")
    assert main([*base, "user", "load", str(users)]) == 2
    assert f"{users}:2: expected user[@domain]:password" in capsys.readouterr().err
    assert main([*base, "user", "load", str(tmp_path / "missing")]) == 2
    assert "cannot read" in capsys.readouterr().err
