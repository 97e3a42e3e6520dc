"""Agent tokens at rest: sealed with Fernet (``cryptography``) before the inventory stores them.

``devmig hosts add URL --agent-token T`` gives the manager a host's agent
token. The manager keeps it in its inventory (column ``hosts.agent_token``),
sealed with a key from its settings: ``--token-key`` / ``DEVMIG_TOKEN_KEY``,
or else derived from its own API token (``--token`` / ``DEVMIG_TOKEN``). Any
secret string is a key: HKDF-SHA256 turns it into the 32 bytes Fernet needs
(AES-128-CBC with HMAC-SHA256, authenticated). A restarted manager with the
same key opens every token again and carries on; with another key a sealed
token does not open (it is logged and treated as absent; add the host's token
again). No read of the API and no page of the dashboard shows a token.
"""

from __future__ import annotations

import base64
import logging

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["TokenVault"]

log = logging.getLogger("devmig.manager")

_SALT = b"devmig/agent-tokens/1"


class TokenVault:
    """Seals and opens agent tokens with one key.

    Args:
        secret: the key material (any non-empty string).
    """

    def __init__(self, secret: str) -> None:
        if not secret:
            raise ValueError("the token key is empty")
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=b"fernet").derive(secret.encode())
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    def seal(self, token: str) -> str:
        """Return ``token`` encrypted and authenticated (ASCII, safe to store)."""
        return self._fernet.encrypt(token.encode()).decode("ascii")

    def open(self, sealed: str, host: str = "") -> str | None:
        """Return the token inside ``sealed``; ``None`` (logged) when this key did not seal it."""
        try:
            return self._fernet.decrypt(sealed.encode("ascii")).decode()
        except (InvalidToken, ValueError, UnicodeError):
            log.warning("the stored agent token of host %s does not open with this manager's token key; "
                        "add the host's token again (devmig hosts add URL --agent-token T)", host or "?")
            return None
