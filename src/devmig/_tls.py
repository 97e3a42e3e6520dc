"""TLS for devmig's processes: one context per process and configuration, built once.

``httpx`` builds a new :class:`ssl.SSLContext` for every client it creates and
loads the whole CA bundle into it: about 50 ms of CPU each time, paid by an
agent for every call it makes to a peer (check, incoming, status, queries)
and by the CLI for every client. Here each context is built once per process
and configuration (cached), on first use; an ``http://`` URL never uses it.

A process's :class:`TlsConfig` says which CA it trusts, which certificate it
shows (as a server, and as a client where the server asks for one) and
whether its servers require client certificates. An agent or a manager sets
it at start-up (:func:`use`); any other process (the CLI) takes it from the
environment: ``DEVMIG_TLS_CA`` (trust this CA instead of the system store),
``DEVMIG_TLS_CERT`` and ``DEVMIG_TLS_KEY`` (present this client certificate).
Without a CA the client context is httpx's own (the same trust store and
environment variables, :func:`httpx2.create_ssl_context`).
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import httpx2

__all__ = ["TlsConfig", "client_tls", "current", "is_loopback", "server_tls", "use"]


@dataclass(frozen=True)
class TlsConfig:
    """What one process's TLS uses (files; hashable, so contexts are cached per configuration)."""

    cert: Path | None = None
    """This process's certificate (PEM): shown by its servers, and as its client certificate."""
    key: Path | None = None
    """The certificate's private key (PEM)."""
    ca: Path | None = None
    """The CA peers' certificates must chain to: servers this process calls, and client
    certificates its servers require (default for clients: the system trust store)."""
    client_certs: bool = False
    """Whether this process's servers (API and migration stream) require a client certificate
    signed by ``ca`` — refused in the handshake otherwise, before a request is read."""

    @property
    def serving(self) -> bool:
        """Whether this configuration has a server certificate (its servers speak TLS)."""
        return self.cert is not None and self.key is not None

    @classmethod
    def from_env(cls) -> TlsConfig:
        """``DEVMIG_TLS_CA``, ``DEVMIG_TLS_CERT``, ``DEVMIG_TLS_KEY`` (unset: none)."""

        def path(name: str) -> Path | None:
            value = os.environ.get(name)
            return Path(value) if value else None

        return cls(cert=path("DEVMIG_TLS_CERT"), key=path("DEVMIG_TLS_KEY"), ca=path("DEVMIG_TLS_CA"))


_process: list[TlsConfig] = []


def use(config: TlsConfig) -> None:
    """Make ``config`` this process's TLS configuration (an agent's or a manager's, at start-up)."""
    _process[:] = [config]


@cache
def _env_config() -> TlsConfig:
    return TlsConfig.from_env()


def current() -> TlsConfig:
    """This process's configuration: the one given to :func:`use`, else the environment's."""
    return _process[0] if _process else _env_config()


def client_tls(config: TlsConfig | None = None) -> ssl.SSLContext:
    """Return the TLS client context of ``config`` (default: the process's), built once per configuration."""
    return _client_context(config if config is not None else current())


@cache
def _client_context(config: TlsConfig) -> ssl.SSLContext:
    if config.ca is None:
        ctx = httpx2.create_ssl_context()
    else:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(config.ca))
    if config.serving:
        ctx.load_cert_chain(str(config.cert), str(config.key))
    return ctx


@cache
def server_tls(config: TlsConfig) -> ssl.SSLContext:
    """The server context of ``config`` (API and migration stream), built once per configuration.

    Raises:
        ValueError: the configuration has no certificate.
    """
    if not config.serving:
        raise ValueError("a TLS server needs a certificate and its key")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(config.cert), str(config.key))
    if config.client_certs:
        if config.ca is None:
            raise ValueError("requiring client certificates needs the CA they are signed by")
        ctx.load_verify_locations(cafile=str(config.ca))
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine's loopback."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
