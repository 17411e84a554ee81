"""Connection reuse for new requests (edge/transport.py): a phone behind NAT that opened a
TLS connection to us is reached over that connection by a request to exactly the address it
comes from (RFC 5923; a NATed phone cannot take a new connection), with no server
certificate asked of it; a URI naming a host name still needs a verified connection of its
own. Real sockets on loopback: the "phone" is an ssl client whose source port nothing
listens on, so a new connection to it would be refused."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sessiond.edge.tls import TlsConfig, TlsContexts
from sessiond.edge.transport import ListenSpec, Transports
from tls_certs import Ca


class Listener:
    """A Transports with one TLS listener, recording what arrives."""

    def __init__(self, ca: Ca) -> None:
        ours = ca.issue("edge")
        self.received: list[tuple[bytes, str, tuple[str, int]]] = []
        self.transports = Transports(
            lambda data, transport, source: self.received.append((data, transport, source)),
            tls=TlsContexts(TlsConfig(str(ours.cert), str(ours.key), str(ca.path))),
        )


@pytest.fixture
async def edge(tmp_path: Path) -> AsyncIterator[tuple[Listener, int, Ca]]:
    ca = Ca(tmp_path)
    listener = Listener(ca)
    spec = await listener.transports.listen(ListenSpec("TLS", "127.0.0.1", 0))
    yield listener, spec.port, ca
    listener.transports.close()


async def phone(ca: Ca, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A phone's TLS connection to the listener (it trusts the CA; it has no certificate)."""
    context = ssl.create_default_context(cafile=str(ca.path))
    return await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname="localhost"
    )


async def registered(transports: Transports, addr: tuple[str, int]) -> None:
    for _ in range(200):
        if transports.has("TLS", addr):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the connection from {addr} was not registered")


async def test_a_request_to_the_address_a_phone_connects_from_goes_over_its_connection(
    edge: tuple[Listener, int, Ca],
) -> None:
    listener, port, ca = edge
    transports = listener.transports
    reader, writer = await phone(ca, port)
    source = writer.get_extra_info("sockname")[:2]
    addr = (str(source[0]), int(source[1]))
    await registered(transports, addr)
    try:
        assert transports.connections == 1
        # sip:alice@127.0.0.1:<its port>;transport=tls: the URI names the IP address
        assert await transports.connect("TLS", addr, addr[0])
        transports.send("TLS", addr, b"OPTIONS sip:alice@x SIP/2.0\r\n\r\n")
        got = await asyncio.wait_for(reader.read(100), 5)
        assert got.startswith(b"OPTIONS sip:alice@x")
        assert transports.connections == 1  # no new connection was opened
    finally:
        writer.close()


async def test_a_host_name_still_needs_a_verified_connection_of_its_own(
    edge: tuple[Listener, int, Ca],
) -> None:
    listener, port, ca = edge
    transports = listener.transports
    reader, writer = await phone(ca, port)
    source = writer.get_extra_info("sockname")[:2]
    addr = (str(source[0]), int(source[1]))
    await registered(transports, addr)
    try:
        # sips:alice@localhost:<its port>: a name the phone's connection proved nothing about;
        # a new connection is tried (nothing listens there: refused) and nothing is sent
        assert not await transports.connect("TLS", addr, "localhost")
        assert not await transports.connect("TLS", addr, "127.0.0.2")  # another address
        assert transports.connections == 1
    finally:
        writer.close()


async def test_a_closed_phone_connection_is_not_reused(edge: tuple[Listener, int, Ca]) -> None:
    listener, port, ca = edge
    transports = listener.transports
    _, writer = await phone(ca, port)
    source = writer.get_extra_info("sockname")[:2]
    addr = (str(source[0]), int(source[1]))
    await registered(transports, addr)
    writer.close()
    for _ in range(200):
        if not transports.has("TLS", addr):
            break
        await asyncio.sleep(0.01)
    assert not await transports.connect("TLS", addr, addr[0])
