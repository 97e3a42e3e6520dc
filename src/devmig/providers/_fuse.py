"""A :class:`MemorySysfs` — the driver twin's tree — mounted as a filesystem with FUSE.

Real tools then act on the twin as on a driver: ``cat`` and ``echo`` on its
attributes, Debian's ``mdevctl`` on ``class/mdev_bus`` and ``bus/mdev``. The
mount behaves as sysfs does where tools look: every ``write()`` call is one
store (refusals come back as the driver's ``errno``), an open with
``O_TRUNC`` truncates nothing, attributes read to EOF with no page cache in
between (``direct_io``), and the kernel caches no entry or attribute
(timeouts 0), so a device directory ``create`` makes is visible at once.

It uses ``mfusepy`` (ctypes bindings of libfuse 3; Debian's ``fuse3``
package), imported only when a tree is mounted.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

from devmig._errors import DevmigError, Problem
from devmig.providers._sysfs import MemorySysfs, SysfsError

__all__ = ["fuse_mounted", "fuse_unmount", "serve_fuse"]

_SIZE = 4096  # what sysfs reports for every attribute; reads go on to EOF


def _operations(files: MemorySysfs) -> Any:
    """Return the mfusepy ``Operations`` serving ``files``."""
    try:
        import mfusepy  # type: ignore[import-untyped]
    except (ImportError, OSError, AttributeError) as e:  # no libfuse on this machine
        raise DevmigError(
            [
                Problem(
                    "FUSE_UNAVAILABLE",
                    ("fuse",),
                    f"cannot load FUSE: {e}",
                    hint="install libfuse 3 (Debian: apt-get install fuse3)",
                )
            ]
        ) from e

    def fail(e: SysfsError) -> OSError:
        return OSError(e.errno, e.strerror)  # mfusepy answers any OSError with its errno

    def rel(path: str) -> str:
        return path.lstrip("/")

    class TwinOperations(mfusepy.Operations):  # type: ignore[misc]
        use_ns = True

        def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
            kind = files.kind(rel(path))
            now = time.time_ns()
            base = {"st_uid": 0, "st_gid": 0, "st_atime": now, "st_mtime": now, "st_ctime": now}
            if kind == "dir":
                return {**base, "st_mode": stat.S_IFDIR | 0o755, "st_nlink": 2}
            if kind == "link":
                return {
                    **base,
                    "st_mode": stat.S_IFLNK | 0o777,
                    "st_nlink": 1,
                    "st_size": len(files.readlink(rel(path))),
                }
            if kind == "file":
                try:
                    mode = getattr(files.attribute(rel(path)), "mode", 0o644)
                except SysfsError as e:
                    raise fail(e) from None
                return {**base, "st_mode": stat.S_IFREG | mode, "st_nlink": 1, "st_size": _SIZE}
            raise mfusepy.FuseOSError(errno.ENOENT)

        def readdir(self, path: str, fh: int) -> list[str]:
            try:
                return [".", "..", *files.listdir(rel(path))]
            except SysfsError as e:
                raise fail(e) from None

        def readlink(self, path: str) -> str:
            try:
                return files.readlink(rel(path))
            except SysfsError as e:
                raise fail(e) from None

        def open(self, path: str, flags: int) -> int:
            if files.kind(rel(path)) is None:
                raise mfusepy.FuseOSError(errno.ENOENT)
            return 0

        def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
            try:
                return files.read(rel(path))[offset : offset + size]
            except SysfsError as e:
                raise fail(e) from None

        def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
            try:
                files.write(rel(path), bytes(data))
            except SysfsError as e:
                raise fail(e) from None
            return len(data)

        def truncate(self, path: str, length: int, fh: int | None = None) -> int:
            return 0  # `echo x > attr` opens with O_TRUNC: sysfs ignores it

    return TwinOperations()


def serve_fuse(files: MemorySysfs, mountpoint: str, *, allow_other: bool = False) -> None:
    """Mount ``files`` at ``mountpoint`` and serve it until unmounted (blocks).

    Args:
        files: the tree (a driver twin's ``files``).
        mountpoint: an existing empty directory.
        allow_other: let other users than the mounting one in (needs
            ``user_allow_other`` or root).

    Raises:
        DevmigError: ``FUSE_UNAVAILABLE`` when libfuse cannot be loaded.
    """
    operations = _operations(files)  # raises FUSE_UNAVAILABLE without libfuse
    import mfusepy

    options: dict[str, Any] = {
        "foreground": True,
        "direct_io": True,
        "attr_timeout": 0,
        "entry_timeout": 0,
        "negative_timeout": 0,
        "fsname": "devmig-twin",
    }
    if allow_other:
        options["allow_other"] = True
    mfusepy.FUSE(operations, mountpoint, **options)


def fuse_unmount(mountpoint: str) -> None:
    """Unmount a FUSE mount (``fusermount3 -u``, else ``umount``); nothing if it is not mounted."""
    if not os.path.ismount(mountpoint):
        return
    tool = shutil.which("fusermount3") or shutil.which("fusermount")
    command = [tool, "-u", "-z", mountpoint] if tool else ["umount", "-l", mountpoint]
    subprocess.run(command, check=False, capture_output=True, timeout=30)


@contextlib.contextmanager
def fuse_mounted(files: MemorySysfs, mountpoint: str, *, timeout: float = 10.0) -> Iterator[str]:
    """Mount ``files`` at ``mountpoint`` from a thread of this process, for a ``with`` block.

    The twin stays a Python object a test can inspect while tools act on the
    mount; leaving the block unmounts it.

    Raises:
        DevmigError: ``FUSE_UNAVAILABLE``; ``FUSE_MOUNT_FAILED`` when the
            mount did not appear within ``timeout`` seconds.
    """
    _operations(files)  # fail early, here, when FUSE cannot be loaded
    failure: list[BaseException] = []

    def run() -> None:
        try:
            serve_fuse(files, mountpoint)
        except BaseException as e:  # reported to the waiting thread
            failure.append(e)

    thread = threading.Thread(target=run, name=f"devmig-twin-fuse:{mountpoint}", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not os.path.ismount(mountpoint):
        if failure or not thread.is_alive() or time.monotonic() > deadline:
            fuse_unmount(mountpoint)
            raise DevmigError(
                [
                    Problem(
                        "FUSE_MOUNT_FAILED",
                        ("fuse",),
                        f"the twin did not mount at {mountpoint}",
                        value=mountpoint,
                        hint=str(failure[0]) if failure else "is /dev/fuse there?",
                    )
                ]
            )
        time.sleep(0.02)
    try:
        yield mountpoint
    finally:
        fuse_unmount(mountpoint)
        thread.join(timeout)
