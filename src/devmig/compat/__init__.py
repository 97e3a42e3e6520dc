"""Compatibility of devices across implementations and releases (sans-IO core, DESIGN §3).

Two questions, answered by pure functions on loaded documents:

- :func:`check` — can a device ``(its model's source definition, canonical
  configuration)`` move to a destination (a host report, a model document or
  a bare model)? The :class:`Verdict` names the implementation that accepts,
  or every reason why none does (codes ``MODEL_UNKNOWN``, ``PARAM_UNKNOWN``,
  ``VALUE_NOT_ALLOWED``, ``CONSTRAINT_VIOLATED``, ``OFF_VALUE_MISMATCH``; for an
  opaque device, ``opaque:...``, ``NO_MIGRATION_INFO`` unless the destination
  runs the very same identity)::

      verdict = check(nic_v3, expand(nic_v3, "version=3"), host_report)
      verdict.raise_for()          # CompatibilityError with every reason

- :func:`diff` — what changed from release OLD to release NEW of a model
  document, and what each change breaks (``upgrade``, ``rollback``,
  ``instantiate``); :data:`RULES` lists the rule ids, :data:`BREAKS` what
  each breaking rule breaks. The diff and the check never disagree: a
  configuration OLD accepts that NEW refuses always shows as an upgrade break.

:class:`ReleaseHistory` learns from earlier documents which release added a
parameter or first allowed a value, for hints.
"""

from devmig.compat._baseline import Baseline, baseline
from devmig.compat._changes import BREAKS, DIRECTIONS, RULES, Change, Direction, ReleaseDiff
from devmig.compat._check import check
from devmig.compat._diff import diff
from devmig.compat._history import ReleaseHistory
from devmig.compat._opaque import OPAQUE_PREFIX, is_opaque
from devmig.compat._placement import HOST_CODES, Placement, place
from devmig.compat._profile import (
    FleetSnapshot,
    HostState,
    Profile,
    ProfileRegistry,
    document_json,
    fingerprint_of,
    newest_definition,
    profile_fingerprint,
    profile_json,
    release_key,
)
from devmig.compat._qemu_state import (
    QEMU_MODEL_PREFIX,
    QemuSectionVersion,
    is_qemu_model,
    qemu_description,
    qemu_versions,
)
from devmig.compat._requests import DeviceRequest, NewDevice, RunningDevice
from devmig.compat._rollback import RollbackSet, return_targets, rollback_set
from devmig.compat._upgrade import UpgradePlan, plan_upgrade, planned_profile
from devmig.compat._verdict import Verdict

__all__ = [
    "BREAKS",
    "DIRECTIONS",
    "HOST_CODES",
    "OPAQUE_PREFIX",
    "QEMU_MODEL_PREFIX",
    "RULES",
    "Baseline",
    "Change",
    "DeviceRequest",
    "Direction",
    "FleetSnapshot",
    "HostState",
    "NewDevice",
    "Placement",
    "Profile",
    "ProfileRegistry",
    "QemuSectionVersion",
    "ReleaseDiff",
    "ReleaseHistory",
    "RollbackSet",
    "RunningDevice",
    "UpgradePlan",
    "Verdict",
    "baseline",
    "check",
    "diff",
    "document_json",
    "fingerprint_of",
    "is_opaque",
    "is_qemu_model",
    "newest_definition",
    "place",
    "plan_upgrade",
    "planned_profile",
    "profile_fingerprint",
    "profile_json",
    "qemu_description",
    "qemu_versions",
    "release_key",
    "return_targets",
    "rollback_set",
]
