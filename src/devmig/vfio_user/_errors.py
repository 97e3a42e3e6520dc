"""The one error type of the vfio-user package, carrying an errno as data.

A :class:`VfioUserError` is a :class:`~devmig.DevmigError` whose ``errno``
is the value an error reply carries (or carried). Codes:

* ``VFIO_USER_MALFORMED`` — a message we received breaks the protocol
  (short, oversized, wrong ``argsz``, descriptors where none belong, unknown
  command); a server answers it with ``errno``.
* ``VFIO_USER_REFUSED`` — a well-formed request the device refuses in its
  current state (``EINVAL`` for a migration arc it cannot take, ...).
* ``VFIO_USER_ERROR_REPLY`` — the peer answered our command with an error reply.
* ``VFIO_USER_STRICT`` — a reply breaks a rule libvfio-user's receive helper
  enforces (size, echoed id, type, errno range); see :mod:`._client`.
* ``VFIO_USER_CLOSED`` — the connection is closed or in its ERROR state.
"""

from __future__ import annotations

import errno as _errno

from devmig._errors import DevmigError, Problem

__all__ = ["VfioUserError"]


class VfioUserError(DevmigError):
    """A vfio-user protocol problem, with the errno an error reply carries.

    Args:
        message: one sentence for a person.
        errno: the errno value (``EINVAL`` unless said otherwise).
        code: one of the codes of this module.
        value: the offending value, when there is one.
    """

    default_code = "VFIO_USER_MALFORMED"

    def __init__(
        self,
        message: str,
        *,
        errno: int = _errno.EINVAL,
        code: str | None = None,
        value: object = None,
    ) -> None:
        self.errno = errno
        name = _errno.errorcode.get(errno, str(errno))
        super().__init__(
            [
                Problem(
                    code or self.default_code,
                    ("vfio-user",),
                    message,
                    value=value,
                    context={"errno": errno, "errno_name": name},
                )
            ]
        )
