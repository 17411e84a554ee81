"""SIP over TLS (RFC 3261 26.2, RFC 5630): the certificate, the contexts, and their reload.

Theory of operation
-------------------
:class:`TlsConfig` is what the command line asked for (``--tls-cert``, ``--tls-key``,
``--tls-ca``, ``--tls-verify-client``). :class:`TlsContexts` builds from it two
:class:`ssl.SSLContext` with Python's :mod:`ssl` (OpenSSL; nothing hand-made):

- the *server* context of the ``tls:`` listeners: our certificate chain and key; with
  ``--tls-verify-client`` it asks every client for a certificate signed by ``--tls-ca``
  (mutual TLS) and refuses the handshake without one;
- the *client* context of our outbound connections (calls and registrations to ``sips:``
  or ``;transport=tls`` targets): the server's certificate must chain to ``--tls-ca`` (a
  private CA) or, without it, to the system's trust store, and must name the host we dial
  (hostname verification; the name is also sent as SNI). Our certificate, when there is
  one, is offered to servers that ask for it.

TLS 1.2 is the oldest version either side accepts.

Reload (:meth:`TlsContexts.reload`, on SIGHUP) builds both
contexts anew from the files. Only when that succeeds are they swapped in: new handshakes
use them (the listener's context hands every handshake to the current server context from
its SNI callback, which OpenSSL calls for each ClientHello, with or without a server name),
connections already up keep theirs. A new certificate that cannot be loaded (unreadable,
not PEM, a key that does not match) is logged in one line and the old one stays.

Errors name the flag and the file (:class:`TlsConfigError`), so the command line can print
them as one line and exit non-zero.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass

from sessiond.core.errors import SessiondError

log = logging.getLogger("sessiond.edge.tls")


class TlsConfigError(SessiondError, ValueError):
    """A TLS file or flag cannot be used; the message names the flag and the file."""


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """The TLS flags of ``sessiond edge`` / ``sessiond run``."""

    cert: str | None = None  # --tls-cert: PEM certificate chain, ours first
    key: str | None = None  # --tls-key: PEM private key (unencrypted)
    ca: str | None = None  # --tls-ca: PEM CA bundle (servers we dial, clients we verify)
    verify_client: bool = False  # --tls-verify-client

    @property
    def has_certificate(self) -> bool:
        return self.cert is not None and self.key is not None

    def check(self, listens_tls: bool) -> None:
        """TlsConfigError when the flags do not fit together."""
        if (self.cert is None) != (self.key is None):
            given, missing = ("--tls-cert", "--tls-key")[:: 1 if self.cert else -1]
            raise TlsConfigError(f"{given} needs {missing}")
        if listens_tls and not self.has_certificate:
            raise TlsConfigError("--listen tls:... needs --tls-cert and --tls-key")
        if self.verify_client and not listens_tls:
            raise TlsConfigError("--tls-verify-client needs a --listen tls:... listener")
        if self.verify_client and self.ca is None:
            raise TlsConfigError("--tls-verify-client needs --tls-ca (the CA of the clients)")

    def files(self) -> list[str]:
        return [path for path in (self.cert, self.key, self.ca) if path is not None]


class TlsContexts:
    """The current server and client contexts, swapped as a whole on reload."""

    def __init__(self, config: TlsConfig) -> None:
        self.config = config
        self._server, self._client = self._build()  # TlsConfigError at startup
        self.reloads = 0  # successful reloads since start
        self.failures = 0  # reloads that kept the old certificate

    @property
    def server(self) -> ssl.SSLContext:
        """The listeners' context (it hands each handshake to the current one)."""
        return self._server

    @property
    def client(self) -> ssl.SSLContext:
        """The context of a new outbound connection."""
        return self._client

    def reload(self) -> bool:
        """Load the files again; on any problem log one line and keep the old contexts."""
        try:
            server, client = self._build()
        except TlsConfigError as exc:
            self.failures += 1
            log.error("TLS reload failed, keeping the previous certificate: %s", exc)
            return False
        self._server, self._client = server, client
        self.reloads += 1
        log.info("TLS certificate reloaded from %s", self.config.cert or "(no certificate)")
        return True

    def _build(self) -> tuple[ssl.SSLContext, ssl.SSLContext]:
        config = self.config
        for flag, path in (("--tls-cert", config.cert), ("--tls-key", config.key)):
            if path is not None:
                _readable(flag, path)
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.minimum_version = ssl.TLSVersion.TLSv1_2
        client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        client.minimum_version = ssl.TLSVersion.TLSv1_2
        if config.cert is not None and config.key is not None:
            _load_chain(server, config.cert, config.key)
            _load_chain(client, config.cert, config.key)
        if config.ca is not None:
            _readable("--tls-ca", config.ca)
            for ctx in (server, client):
                try:
                    ctx.load_verify_locations(cafile=config.ca)
                except ssl.SSLError as exc:
                    why = _reason(exc)
                    raise TlsConfigError(
                        f"--tls-ca {config.ca}: no PEM certificate ({why})"
                    ) from None
        if config.verify_client:
            server.verify_mode = ssl.CERT_REQUIRED
        server.sni_callback = self._handshake
        return server, client

    def _handshake(self, sslobj: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        """Every server handshake uses the newest server context (OpenSSL calls this for each
        ClientHello, with ``name`` None when the client sent no SNI)."""
        if sslobj.context is not self._server:
            sslobj.context = self._server


def _readable(flag: str, path: str) -> None:
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as exc:
        raise TlsConfigError(f"{flag} {path}: {exc.strerror or exc}") from None


def _load_chain(ctx: ssl.SSLContext, cert: str, key: str) -> None:
    try:
        ctx.load_cert_chain(cert, key)
        return
    except ssl.SSLError as exc:
        reason = _reason(exc)
    if "KEY_VALUES_MISMATCH" in reason.upper() or "VALUES MISMATCH" in reason.upper():
        raise TlsConfigError(
            f"--tls-key {key}: does not match the certificate of --tls-cert {cert}"
        )
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        probe.load_verify_locations(cafile=cert)
    except ssl.SSLError:
        raise TlsConfigError(f"--tls-cert {cert}: no PEM certificate ({reason})") from None
    raise TlsConfigError(f"--tls-key {key}: not a PEM private key, or an encrypted one ({reason})")


def _reason(exc: ssl.SSLError) -> str:
    return str(exc.reason or exc.strerror or exc)
