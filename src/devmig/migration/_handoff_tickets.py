"""Single-use migration secrets, as the destination agent issues and redeems them.

The destination agent issues one secret per migration (DESIGN §6 step 3) and
the source proves it in HELLO. A secret is compared in constant time
(:func:`hmac.compare_digest`, also against a stand-in when the migration is
unknown, so timing does not tell which ids exist), expires, and is spent by
the first HELLO that proves it: a second connection with the same secret is
refused, and does not disturb the migration the first one carries. A HELLO
with a wrong secret spends nothing, so a stranger cannot burn a migration's
ticket.

The clock is injected: the book never reads the time itself.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass

from devmig.migration._handoff_frames import (
    _ID,
    MAX_MIGRATION_ID,
    MAX_SECRET,
    MIN_SECRET,
    HandoffError,
)

__all__ = ["Tickets"]

AUTH_FAILED = "AUTH_FAILED"
SECRET_EXPIRED = "SECRET_EXPIRED"
SECRET_REUSED = "SECRET_REUSED"
TICKET_INVALID = "TICKET_INVALID"

_STAND_IN = bytes(MAX_SECRET)


@dataclass(slots=True)
class _Ticket:
    secret: bytes
    expires_at: float
    spent: bool = False


class Tickets:
    """The secrets a destination agent has issued, one per migration id.

    Args:
        clock: returns the current time, in the unit of ``expires_at``
            (e.g. ``time.monotonic``).
    """

    __slots__ = ("_clock", "_tickets")

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._tickets: dict[str, _Ticket] = {}

    def issue(self, migration_id: str, secret: bytes, *, expires_at: float) -> None:
        """Record the secret of a new migration.

        Args:
            migration_id: the migration's id (``[A-Za-z0-9][A-Za-z0-9._:-]*``,
                at most 128 characters).
            secret: 16 to 64 random bytes, from a cryptographic source.
            expires_at: when a HELLO stops being accepted, on the clock's scale.

        Raises:
            HandoffError: ``TICKET_INVALID`` for a malformed id or secret, or an
                id already issued.
        """
        if not (_ID.fullmatch(migration_id) and len(migration_id) <= MAX_MIGRATION_ID):
            raise HandoffError(TICKET_INVALID, "malformed migration id", value=migration_id)
        if not MIN_SECRET <= len(secret) <= MAX_SECRET:
            raise HandoffError(
                TICKET_INVALID,
                "a secret must be 16 to 64 bytes",
                value=len(secret),
                allowed=[MIN_SECRET, MAX_SECRET],
            )
        if migration_id in self._tickets:
            raise HandoffError(
                TICKET_INVALID, "this migration already has a secret", value=migration_id
            )
        self._tickets[migration_id] = _Ticket(bytes(secret), expires_at)

    def revoke(self, migration_id: str) -> None:
        """Forget a migration's secret (no HELLO is accepted for it any more)."""
        self._tickets.pop(migration_id, None)

    def __contains__(self, migration_id: object) -> bool:
        return migration_id in self._tickets

    def redeem(self, migration_id: str, secret: bytes) -> None:
        """Prove a HELLO's secret and spend it.

        Raises:
            HandoffError: ``AUTH_FAILED`` when the migration is unknown or the
                secret is wrong; ``SECRET_REUSED`` when it was already spent;
                ``SECRET_EXPIRED`` when it is past its expiry. Only a
                successful call spends the secret.
        """
        ticket = self._tickets.get(migration_id)
        expected = ticket.secret if ticket is not None else _STAND_IN
        if not hmac.compare_digest(secret, expected) or ticket is None:
            raise HandoffError(AUTH_FAILED, "the migration id or its secret is wrong")
        if ticket.spent:
            raise HandoffError(
                SECRET_REUSED,
                "this migration's secret was already used by another connection",
                hint="a secret admits one connection; ask the destination for a new migration",
            )
        if self._clock() >= ticket.expires_at:
            raise HandoffError(SECRET_EXPIRED, "this migration's secret has expired")
        ticket.spent = True
