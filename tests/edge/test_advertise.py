"""Advertised addresses (issue 14): what the edge writes in Via, Contact and the Contact it
registers is the ``--advertise`` address, not the one it bound; the flags' parsing."""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.edge.test_edge import Peer, command, invite, running

from sessiond.cli.main import build_parser
from sessiond.cli.processes import listeners, media_addresses
from sessiond.core.addresses import HostPort, is_private, is_wildcard, reachable_host
from sessiond.edge.process import Edge
from sessiond.edge.transport import ListenSpec
from sessiond.store import Keys
from sessiond.store.store import decode_event

PUBLIC = "203.0.113.7"


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("203.0.113.7", "203.0.113.7", None),
        ("203.0.113.7:5080", "203.0.113.7", 5080),
        ("sip.example.com", "sip.example.com", None),
        ("[2001:db8::7]:5060", "2001:db8::7", 5060),
        ("[2001:db8::7]", "2001:db8::7", None),
        ("2001:db8::7", "2001:db8::7", None),
    ],
)
def test_advertise_values(text: str, host: str, port: int | None) -> None:
    parsed = HostPort.parse(text)
    assert (parsed.host, parsed.port) == (host, port)
    assert HostPort.parse(str(parsed)) == parsed


@pytest.mark.parametrize(
    "text", ["", "0.0.0.0", "[::]", "1.2.3.4:0", "1.2.3.4:x", "[2001:db8::1]x", "a b", "zz::1"]
)
def test_bad_advertise_values_name_the_flag(text: str) -> None:
    with pytest.raises(ValueError, match="--advertise"):
        HostPort.parse(text)


def test_private_and_wildcard() -> None:
    for host in ("10.1.2.3", "172.16.0.1", "192.168.1.10", "100.64.0.1", "fd00::1", "fe80::1"):
        assert is_private(host), host
    for host in ("203.0.113.7", "127.0.0.1", "8.8.8.8", "2001:db8::1", "example.com"):
        assert not is_private(host), host
    assert is_private("::ffff:192.168.1.2")
    assert is_wildcard("0.0.0.0")
    assert is_wildcard("::")
    assert is_wildcard("[::]")
    assert not is_wildcard("127.0.0.1")
    assert reachable_host("0.0.0.0", HostPort(PUBLIC)) == PUBLIC
    assert reachable_host("127.0.0.1", None) == "127.0.0.1"
    assert not is_wildcard(reachable_host("0.0.0.0", None))


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["run", *argv])


def test_one_advertise_for_every_listener_or_one_each() -> None:
    specs, adv = listeners(
        _args("--listen", "udp:0.0.0.0:5060", "--listen", "tcp:0.0.0.0:5060", "--advertise", PUBLIC)
    )
    assert [s.transport for s in specs] == ["UDP", "TCP"]
    assert adv == [HostPort(PUBLIC), HostPort(PUBLIC)]
    specs, adv = listeners(
        _args(
            *("--listen", "udp:0.0.0.0:5060", "--listen", "udp:127.0.0.1:5070"),
            *("--advertise", f"{PUBLIC}:5099", "--advertise", "-"),
        )
    )
    assert adv == [HostPort(PUBLIC, 5099), None]
    with pytest.raises(ValueError, match="one per --listen"):
        listeners(_args("--listen", "udp:0.0.0.0:1", "--advertise", "a", "--advertise", "b"))


def test_advertise_alone_listens_everywhere_and_moves_media() -> None:
    args = _args("--advertise", PUBLIC)
    specs, adv = listeners(args)
    assert (specs[0].transport, specs[0].host, specs[0].port) == ("UDP", "0.0.0.0", 5060)
    assert media_addresses(args, adv) == ("0.0.0.0", PUBLIC)
    args = _args("--advertise", PUBLIC, "--media-advertise", "198.51.100.9")
    assert media_addresses(args, listeners(args)[1]) == ("0.0.0.0", "198.51.100.9")
    plain = _args()
    assert media_addresses(plain, listeners(plain)[1]) == ("127.0.0.1", "127.0.0.1")
    named = _args("--advertise", "sip.example.com")
    with pytest.raises(ValueError, match="give --media-advertise IP"):
        media_addresses(named, listeners(named)[1])
    named = _args("--advertise", "sip.example.com", "--media-advertise", PUBLIC)
    assert media_addresses(named, listeners(named)[1]) == ("0.0.0.0", PUBLIC)
    for bad in (f"{PUBLIC}:9", "media.example.com"):
        with pytest.raises(ValueError, match="--media-advertise"):
            media_addresses(_args("--media-advertise", bad), [])


def _cli(*argv: str) -> tuple[int, str]:
    service = str(Path(__file__).parents[2] / "service")
    done = subprocess.run(
        [sys.executable, "-m", "sessiond", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": service},
    )
    return done.returncode, done.stderr


def test_cli_refuses_a_bad_advertise_in_one_line() -> None:
    code, err = _cli("run", "--listen", "udp:127.0.0.1:0", "--advertise", "0.0.0.0")
    assert code == 2
    assert err.strip().splitlines() == [
        "sessiond run: --advertise '0.0.0.0': a wildcard address cannot be advertised"
    ]
    media = ("media", "--redis", "embedded", "--rtp-ports", "30000-30010")
    code, err = _cli(*media, "--address", "127.0.0.1", "--advertise", "1.2.3.4:9")
    assert code == 2
    assert "--advertise" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.redis
async def test_headers_carry_the_advertised_address(backend: tuple[str, Any, Keys]) -> None:
    """Bound on 127.0.0.1, advertised as 203.0.113.7:5099: our INVITE's Via and Contact and
    our 200's Contact name the advertised address; the response still reaches the peer."""
    _, client, keys = backend
    e = Edge(
        client,
        keys,
        "e1",
        [ListenSpec("UDP", "127.0.0.1", 0)],
        advertise=[HostPort(PUBLIC, 5099)],
    )
    task = await running(e)
    peer = Peer()
    try:
        assert (e.address.host, e.address.port) == (PUBLIC, 5099)
        bound = e.transports.specs[0].port
        await peer.send(invite(peer, "adv1@h"), bound)
        assert (await peer.recv()).startswith("SIP/2.0 100")
        await asyncio.sleep(0.3)
        stream = keys.events(keys.partition_of_call("adv1@h"))
        txn = decode_event((await client.xrange(stream))[0][1]).data["txn"]
        await command(e, "respond", {"code": 200, "txn": txn, "local_tag": "t"}, "c1")
        ok = await peer.expect("200")
        assert f"Contact: <sip:sessiond@{PUBLIC}:5099>" in ok
        cmd = {
            "call_id": "adv2@h",
            "local_tag": "lt",
            "local_uri": f"sip:alice@{PUBLIC}",
            "remote_uri": f"sip:bob@127.0.0.1:{peer.port}",
            "remote_target": f"sip:bob@127.0.0.1:{peer.port}",
            "remote_tag": "",
            "route_set": "",
            "cseq": 1,
            "sdp": "v=0\r\n",
        }
        await command(e, "invite", cmd, "u1")
        sent = await peer.expect("INVITE")
        assert f"Via: SIP/2.0/UDP {PUBLIC}:5099;branch=" in sent
        assert f"Contact: <sip:sessiond@{PUBLIC}:5099>" in sent
        assert "127.0.0.1:" + str(bound) not in sent
    finally:
        e.stop()
        await asyncio.wait_for(task, 5)
        peer.sock.close()


@pytest.mark.redis
async def test_an_edge_on_0000_registers_its_advertised_contact(
    backend: tuple[str, Any, Keys],
) -> None:
    """Bound on 0.0.0.0 and advertised as 203.0.113.7: the REGISTER's Contact and Via name
    the advertised address (before, a wildcard edge registered an unusable Contact)."""
    from sessiond.edge.registrar_client import OutboundConfig

    _, client, keys = backend
    registrar = Peer()
    aor = f"sip:alice@127.0.0.1:{registrar.port}"
    e = Edge(
        client,
        keys,
        "e1",
        [ListenSpec("UDP", "0.0.0.0", 0)],
        advertise=[HostPort(PUBLIC)],
        outbound=OutboundConfig(register=(aor,), expires=60),
    )
    task = await running(e)
    try:
        register = await registrar.expect("REGISTER")
        bound = e.transports.specs[0].port
        assert f"Contact: <sip:alice@{PUBLIC}:{bound}>" in register
        assert f"Via: SIP/2.0/UDP {PUBLIC}:{bound};branch=" in register
    finally:
        e.stop()
        await asyncio.wait_for(task, 10)
        registrar.sock.close()
