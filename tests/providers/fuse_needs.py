"""What the FUSE tests need: /dev/fuse, libfuse 3, and the tools named; skipped without, failing in CI."""

from __future__ import annotations

import os
import shutil

import pytest


def require(*tools: str, root: bool = False) -> None:
    """Skip the test (fail it under ``CI=true``) unless FUSE and ``tools`` are there (and root, if asked)."""
    missing = [t for t in tools if shutil.which(t) is None]
    if not os.path.exists("/dev/fuse"):
        missing.append("/dev/fuse")
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError, AttributeError):
        missing.append("libfuse 3 (fuse3)")
    if root and os.geteuid() != 0:
        missing.append("root")
    if missing:
        message = f"needs {', '.join(missing)}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI needs FUSE and mdevctl (tools/test-services installs them): {message}")
        pytest.skip(message)
