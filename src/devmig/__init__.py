"""devmig: safe, automatic migration of VFIO devices between hosts.

The package re-exports the error hierarchy; the sub-packages hold the rest:
``devmig.model`` (documents and configurations), ``devmig.compat``
(compatibility verdicts and release diffs), ``devmig.state`` (device state and
the migration stream), ``devmig.migration`` (the VFIO v2 state machine),
``devmig.device`` (the device SDK) and the I/O edges (``agent``, ``fleet``,
``cli``).
"""

from devmig._errors import (
    CompatibilityError,
    ConfigError,
    DevmigError,
    DocumentError,
    Loc,
    Problem,
    StreamError,
    TransitionError,
)

__version__ = "0.1.0"

__all__ = [
    "CompatibilityError",
    "ConfigError",
    "DevmigError",
    "DocumentError",
    "Loc",
    "Problem",
    "StreamError",
    "TransitionError",
    "__version__",
]
