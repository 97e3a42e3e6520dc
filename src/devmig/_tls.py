"""One TLS client context per process, shared by every HTTP client devmig opens.

``httpx`` builds a new :class:`ssl.SSLContext` for every client it creates and
loads the whole CA bundle into it: about 50 ms of CPU each time, paid by an
agent for every call it makes to a peer (check, incoming, status, queries)
and by the CLI for every client. The context is built the same way
(:func:`httpx2.create_ssl_context`: the same trust store and environment
variables), once, on first use; an ``http://`` URL never uses it.
"""

from __future__ import annotations

import ssl
from functools import cache

import httpx2

__all__ = ["client_tls"]


@cache
def client_tls() -> ssl.SSLContext:
    """Return the process's TLS client context (verifying peers against the default trust store)."""
    return httpx2.create_ssl_context()
