"""Opaque devices (DESIGN §9): a device published without migration information.

A provider reports such a device under the model ``opaque:`` + a sha256 of
what identifies its implementation (a backend's program, a driver's type).
It moves only to the very same identity: for any other destination the check
answers ``NO_MIGRATION_INFO`` instead of ``MODEL_UNKNOWN``. Published
documents may not use the prefix (providers refuse them).
"""

from __future__ import annotations

from devmig._errors import Problem

__all__ = ["OPAQUE_PREFIX", "is_opaque", "no_migration_info"]

OPAQUE_PREFIX = "opaque:"
"""The prefix of every opaque model id."""


def is_opaque(model_id: str) -> bool:
    """Return whether ``model_id`` names an opaque device (``opaque:...``)."""
    return model_id.startswith(OPAQUE_PREFIX)


def no_migration_info(model_id: str, where: str) -> Problem:
    """The ``NO_MIGRATION_INFO`` reason: an opaque device meets another identity.

    Args:
        model_id: the opaque model id of the device.
        where: the destination, for the message (``host host-b``).
    """
    return Problem(
        "NO_MIGRATION_INFO",
        ("model",),
        f"the device publishes no migration information ({model_id}); "
        f"{where} does not run the very same implementation",
        value=model_id,
        hint="an opaque device moves only to a host with the same program or driver type; "
        "publish a model document to move it anywhere else",
        context={"rule": 1},
    )
