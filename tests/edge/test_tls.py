"""The TLS contexts (edge/tls.py): flag and file errors that name them, a real handshake
with the loaded certificate, verification by the client context, and reload (a new
certificate is served to new connections; a bad one is refused and the old one kept)."""

from __future__ import annotations

import asyncio
import shutil
import ssl
from pathlib import Path

import pytest

from sessiond.edge.tls import TlsConfig, TlsConfigError, TlsContexts
from tls_certs import Ca, serial_of


@pytest.fixture
def ca(tmp_path: Path) -> Ca:
    return Ca(tmp_path)


async def served_serial(contexts: TlsContexts, ca: Ca, name: str = "localhost") -> int:
    """Handshake with a server on ``contexts.server``; the serial of the certificate it
    presented (the client trusts ``ca`` and checks ``name``)."""
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0, ssl=contexts.server)
    port = server.sockets[0].getsockname()[1]
    client = ssl.create_default_context(cafile=str(ca.path))
    try:
        _, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client, server_hostname=name
        )
        der = writer.get_extra_info("ssl_object").getpeercert(True)
        writer.close()
        return serial_of(der)
    finally:
        server.close()
        await server.wait_closed()


def test_flags_that_do_not_fit_together_are_named() -> None:
    with pytest.raises(TlsConfigError, match="--tls-cert and --tls-key"):
        TlsConfig().check(listens_tls=True)
    with pytest.raises(TlsConfigError, match="--tls-cert needs --tls-key"):
        TlsConfig(cert="a.crt").check(listens_tls=True)
    with pytest.raises(TlsConfigError, match="--tls-key needs --tls-cert"):
        TlsConfig(key="a.key").check(listens_tls=False)
    with pytest.raises(TlsConfigError, match="--tls-verify-client needs --tls-ca"):
        TlsConfig("a", "b", verify_client=True).check(listens_tls=True)
    TlsConfig().check(listens_tls=False)  # outbound TLS with the system's trust store


def test_unusable_files_are_named(ca: Ca, tmp_path: Path) -> None:
    good = ca.issue("server")
    other = ca.issue("other")
    missing = str(tmp_path / "missing.crt")
    with pytest.raises(TlsConfigError, match=f"--tls-cert {missing}: No such file"):
        TlsContexts(TlsConfig(missing, str(good.key)))
    with pytest.raises(TlsConfigError, match=f"--tls-key {other.key}: does not match"):
        TlsContexts(TlsConfig(str(good.cert), str(other.key)))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(TlsConfigError, match=f"--tls-cert {garbage}: no PEM certificate"):
        TlsContexts(TlsConfig(str(garbage), str(good.key)))
    with pytest.raises(TlsConfigError, match=f"--tls-key {garbage}: not a PEM private key"):
        TlsContexts(TlsConfig(str(good.cert), str(garbage)))
    with pytest.raises(TlsConfigError, match=f"--tls-ca {garbage}: no PEM certificate"):
        TlsContexts(TlsConfig(str(good.cert), str(good.key), str(garbage)))


async def test_the_listener_serves_the_certificate_and_the_client_verifies(
    ca: Ca, tmp_path: Path
) -> None:
    issued = ca.issue("server")
    contexts = TlsContexts(TlsConfig(str(issued.cert), str(issued.key), str(ca.path)))
    assert await served_serial(contexts, ca) == issued.serial
    # our client context trusts --tls-ca and checks the name
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0, ssl=contexts.server)
    port = server.sockets[0].getsockname()[1]
    try:
        _, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=contexts.client, server_hostname="localhost"
        )
        writer.close()
        with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
            await asyncio.open_connection(
                "127.0.0.1", port, ssl=contexts.client, server_hostname="sip.example.com"
            )
        untrusting = TlsContexts(TlsConfig())  # the system's trust store only
        with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
            await asyncio.open_connection(
                "127.0.0.1", port, ssl=untrusting.client, server_hostname="localhost"
            )
    finally:
        server.close()
        await server.wait_closed()


async def test_reload_serves_the_new_certificate_and_keeps_the_old_on_a_bad_one(
    ca: Ca, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = ca.issue("first")
    live_cert, live_key = tmp_path / "live.crt", tmp_path / "live.key"
    shutil.copy(first.cert, live_cert)
    shutil.copy(first.key, live_key)
    contexts = TlsContexts(TlsConfig(str(live_cert), str(live_key)))
    listener = contexts.server  # what a listener holds for its whole life
    assert await served_serial(contexts, ca) == first.serial

    second = ca.issue("second")
    shutil.copy(second.cert, live_cert)
    shutil.copy(second.key, live_key)
    assert contexts.reload()
    assert contexts.server is not listener
    assert await served_serial_through(listener, ca) == second.serial

    third = ca.issue("third")
    shutil.copy(third.cert, live_cert)  # and the key of the second: they do not match
    caplog.clear()
    assert not contexts.reload()
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1
    assert "keeping the previous certificate" in errors[0].getMessage()
    assert "does not match" in errors[0].getMessage()
    assert await served_serial_through(listener, ca) == second.serial
    assert (contexts.reloads, contexts.failures) == (1, 1)


async def served_serial_through(listener: ssl.SSLContext, ca: Ca) -> int:
    """Like :func:`served_serial`, through the context a listener was created with."""
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0, ssl=listener)
    port = server.sockets[0].getsockname()[1]
    client = ssl.create_default_context(cafile=str(ca.path))
    try:
        _, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client, server_hostname="localhost"
        )
        der = writer.get_extra_info("ssl_object").getpeercert(True)
        writer.close()
        return serial_of(der)
    finally:
        server.close()
        await server.wait_closed()


async def test_a_verifying_listener_refuses_a_client_without_a_certificate(ca: Ca) -> None:
    issued = ca.issue("server")
    client_cert = ca.issue("client", ("phone.example",))
    contexts = TlsContexts(
        TlsConfig(str(issued.cert), str(issued.key), str(ca.path), verify_client=True)
    )
    got: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got.append(await reader.read(100))
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=contexts.server)
    port = server.sockets[0].getsockname()[1]
    try:
        bare = ssl.create_default_context(cafile=str(ca.path))
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=bare, server_hostname="localhost"
        )
        writer.write(b"x")  # TLS 1.3: the refusal arrives after the client's handshake
        try:
            refused = await asyncio.wait_for(reader.read(100), 5)
        except (ssl.SSLError, ConnectionResetError):
            refused = b""
        assert refused == b""  # closed, the bytes never reached the server (got, below)
        writer.close()
        holder = ssl.create_default_context(cafile=str(ca.path))
        holder.load_cert_chain(client_cert.cert, client_cert.key)
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=holder, server_hostname="localhost"
        )
        writer.write(b"hello")
        await writer.drain()
        assert await asyncio.wait_for(reader.read(100), 5) == b""
        writer.close()
        assert got == [b"hello"]
    finally:
        server.close()
        await server.wait_closed()
