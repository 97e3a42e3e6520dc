"""Agent URLs: what the manager registers and what a source agent says it is reached at.

An agent URL is ``http://`` or ``https://``, a host name, an optional port and
path, at most :data:`MAX_URL` characters, and nothing else: no user name or
password (they would be shown by every read of the inventory), no query or
fragment, no whitespace or control characters. :func:`agent_url` refuses
anything else with ``URL_INVALID`` and never quotes credentials back.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from devmig._errors import DevmigError, Problem

__all__ = ["MAX_URL", "agent_url"]

MAX_URL = 512
"""Characters of an agent URL."""


def _refuse(loc: tuple[str | int, ...], message: str, value: str | None) -> DevmigError:
    return DevmigError(
        [Problem("URL_INVALID", loc, message, value=value, allowed={"schemes": ["http", "https"], "max": MAX_URL},
                 hint="give http://HOST:PORT or https://HOST:PORT, without credentials")]
    )


def agent_url(raw: object, loc: tuple[str | int, ...] = ("url",)) -> str:
    """Return ``raw`` as a valid agent URL (without a trailing slash).

    Raises:
        DevmigError: ``URL_INVALID`` (422) naming what is wrong: not a string,
            too long, a scheme other than http/https, credentials, no host, a
            bad port, a query or fragment, whitespace or control characters.
    """
    if not isinstance(raw, str):
        raise _refuse(loc, "an agent URL is a string", None)
    if len(raw) > MAX_URL:
        raise _refuse(loc, f"an agent URL has at most {MAX_URL} characters, not {len(raw)}", None)
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
        raise _refuse(loc, "an agent URL has no whitespace or control characters", None)
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        raise _refuse(loc, "not a URL with a valid host and port", None) from None
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise _refuse(loc, "an agent URL carries no user name or password (they would be shown)", None)
    if parts.scheme not in ("http", "https"):
        raise _refuse(loc, f"an agent URL is http or https, not {parts.scheme or 'schemeless'}", parts.scheme or None)
    if not parts.hostname:
        raise _refuse(loc, "an agent URL names a host", raw)
    if port == 0:
        raise _refuse(loc, "port 0 is not an agent's port", raw)
    if parts.query or parts.fragment or raw.endswith(("?", "#")):
        raise _refuse(loc, "an agent URL has no query or fragment", raw)
    return raw.rstrip("/")
