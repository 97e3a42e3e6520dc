"""Compatibility: pairwise checks and release diffs (sans-IO core)."""

from devmig.compat._changes import BREAKS, DIRECTIONS, RULES, Change, Direction, ReleaseDiff
from devmig.compat._check import check
from devmig.compat._diff import diff
from devmig.compat._history import ReleaseHistory
from devmig.compat._verdict import Verdict

__all__ = ["BREAKS", "DIRECTIONS", "RULES", "Change", "Direction", "ReleaseDiff", "ReleaseHistory", "Verdict", "check", "diff"]
