"""The files of a sysfs tree, behind one small interface with an in-memory twin.

The ``kernel`` provider reads and writes sysfs only through
:class:`SysfsFiles`: :class:`DiskSysfs` over a directory (``/sys``, or a tree
a test built), :class:`MemorySysfs` in memory. Paths are POSIX strings
relative to the root (``class/mdev_bus``); symbolic links are followed as
real sysfs has them (``class/mdev_bus/<parent>`` → ``../../devices/...``).
Every failure is a :class:`SysfsError` carrying the ``errno`` a driver would
give (``EINVAL`` for a refused value), whichever implementation raised it.

A :class:`MemorySysfs` file is an :class:`Attribute`: a stored value, or an
object with a driver's semantics (the driver twin's). One re-entrant lock
serialises every operation, so an attribute's ``write`` runs alone even when
several threads (a FUSE mount, concurrent creations) use the tree.
"""

from __future__ import annotations

import errno
import os
import posixpath
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

__all__ = [
    "Attribute",
    "DiskSysfs",
    "MemorySysfs",
    "StoredAttribute",
    "SysfsError",
    "SysfsFiles",
]

_MAX_LINKS = 40


class SysfsError(Exception):
    """A sysfs operation failed.

    Attributes:
        errno: the error number (``errno.EINVAL``: the driver refused the value).
        path: the path, relative to the root.
        strerror: the system's words for ``errno``.
    """

    def __init__(self, code: int, path: str, detail: str = "") -> None:
        self.errno = code
        self.path = path
        self.strerror = os.strerror(code)
        self.detail = detail
        super().__init__(f"{path}: {self.strerror}" + (f" ({detail})" if detail else ""))

    @property
    def name(self) -> str:
        """The symbolic name of ``errno`` (``EINVAL``)."""
        return errno.errorcode.get(self.errno, str(self.errno))


@runtime_checkable
class SysfsFiles(Protocol):
    """A sysfs tree: read, write and walk, following symbolic links."""

    def read(self, path: str) -> bytes:
        """Return a file's contents, read to EOF (a binary attribute outgrows a page)."""
        ...

    def write(self, path: str, data: bytes) -> None:
        """Write ``data`` to a file in one write, as ``echo`` does.

        Raises:
            SysfsError: the write was refused (its ``errno``).
        """
        ...

    def listdir(self, path: str) -> list[str]:
        """Return a directory's entries, sorted."""
        ...

    def is_dir(self, path: str) -> bool:
        """Return whether ``path`` is a directory (after following links)."""
        ...

    def exists(self, path: str) -> bool:
        """Return whether ``path`` exists (after following links)."""
        ...

    def realpath(self, path: str) -> str:
        """Return ``path`` with every link resolved, relative to the root.

        Raises:
            SysfsError: ``ENOENT`` when it does not exist, ``ELOOP``.
        """
        ...

    def describe(self, path: str) -> str:
        """Return the path as a person would find it (``/sys/class/mdev_bus``)."""
        ...


def _norm(path: str) -> str:
    out = posixpath.normpath("/" + path.strip("/")).lstrip("/")
    return "" if out == "." else out


# --------------------------------------------------------------------------- on disk


class DiskSysfs:
    """A sysfs tree on disk: ``/sys`` itself, or a test's directory shaped like it.

    Args:
        root: the tree's root directory.
    """

    def __init__(self, root: str | Path = "/sys") -> None:
        self.root = Path(root)
        self._real_root = Path(os.path.realpath(self.root))

    def _path(self, path: str) -> Path:
        return self.root / _norm(path)

    def read(self, path: str) -> bytes:
        try:
            with self._path(path).open("rb") as f:
                return f.read()
        except OSError as e:
            raise SysfsError(e.errno or errno.EIO, _norm(path)) from e

    def write(self, path: str, data: bytes) -> None:
        try:
            fd = os.open(self._path(path), os.O_WRONLY)
        except OSError as e:
            raise SysfsError(e.errno or errno.EIO, _norm(path)) from e
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise SysfsError(
                    errno.EIO, _norm(path), f"short write: {written} of {len(data)} bytes"
                )
        except OSError as e:
            raise SysfsError(e.errno or errno.EIO, _norm(path)) from e
        finally:
            os.close(fd)

    def listdir(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(self._path(path)))
        except OSError as e:
            raise SysfsError(e.errno or errno.EIO, _norm(path)) from e

    def is_dir(self, path: str) -> bool:
        return self._path(path).is_dir()

    def exists(self, path: str) -> bool:
        return self._path(path).exists()

    def realpath(self, path: str) -> str:
        target = self._path(path)
        if not target.exists():
            raise SysfsError(errno.ENOENT, _norm(path))
        real = Path(os.path.realpath(target))
        try:
            rel = real.relative_to(self._real_root).as_posix()
        except ValueError as e:  # a link leaving the tree
            raise SysfsError(errno.EXDEV, _norm(path), f"resolves outside the tree: {real}") from e
        return "" if rel == "." else rel

    def describe(self, path: str) -> str:
        return str(self._path(path))


# --------------------------------------------------------------------------- in memory


class Attribute(Protocol):
    """A file of a :class:`MemorySysfs`: what reading gives and what writing does."""

    def read(self) -> bytes:
        """Return the contents (``EACCES`` etc. as a :class:`SysfsError` with path ``""``)."""
        ...

    def write(self, data: bytes) -> None:
        """Accept a write, or raise :class:`SysfsError` (path ``""``: the tree fills it in)."""
        ...


@dataclass
class StoredAttribute:
    """A file holding what was last written (read-only unless ``writable``)."""

    data: bytes = b""
    writable: bool = False
    writes: list[bytes] = field(default_factory=list)
    """Every write accepted, in order (tests assert on them)."""

    @property
    def mode(self) -> int:
        """The file's permission bits, as ``ls -l`` would show them."""
        return 0o644 if self.writable else 0o444

    def read(self) -> bytes:
        return self.data

    def write(self, data: bytes) -> None:
        if not self.writable:
            raise SysfsError(errno.EACCES, "")
        self.data = data
        self.writes.append(data)


@dataclass(frozen=True, slots=True)
class _Link:
    target: str  # as written: relative to the link's directory, or absolute from the root


class MemorySysfs:
    """A sysfs tree in memory: directories, attribute files and symbolic links.

    Args:
        label: what :meth:`describe` prefixes paths with (``/sys``).
    """

    def __init__(self, label: str = "/sys") -> None:
        self.label = label.rstrip("/") or "/"
        self.lock = threading.RLock()
        self._dirs: dict[str, set[str]] = {"": set()}
        self._files: dict[str, Attribute] = {}
        self._links: dict[str, _Link] = {}
        self.log: list[tuple[str, bytes, str | None]] = []
        """Every write: ``(path as given, data, None or the refusal's errno name)``."""

    # -- building -----------------------------------------------------------------

    def mkdir(self, path: str) -> None:
        """Make a directory and its parents (an existing one is kept)."""
        path = _norm(path)
        with self.lock:
            parts = path.split("/") if path else []
            for i in range(len(parts)):
                here, name = "/".join(parts[:i]), parts[i]
                child = f"{here}/{name}" if here else name
                if child in self._files or child in self._links:
                    raise SysfsError(errno.EEXIST, child)
                self._dirs.setdefault(child, set())
                self._dirs[self._real(here)].add(name)

    def add_file(self, path: str, attribute: Attribute | bytes | str) -> Attribute:
        """Add (or replace) a file; bytes or text make a read-only :class:`StoredAttribute`."""
        path = _norm(path)
        if isinstance(attribute, str):
            attribute = attribute.encode()
        if isinstance(attribute, bytes):
            attribute = StoredAttribute(attribute)
        with self.lock:
            parent, name = posixpath.split(path)
            self.mkdir(parent)
            self._files[path] = attribute
            self._dirs[parent].add(name)
        return attribute

    def symlink(self, path: str, target: str) -> None:
        """Add a symbolic link at ``path`` to ``target`` (relative to the link's directory)."""
        path = _norm(path)
        with self.lock:
            parent, name = posixpath.split(path)
            self.mkdir(parent)
            self._links[path] = _Link(target)
            self._dirs[parent].add(name)

    def remove(self, path: str) -> None:
        """Remove a file, link or directory (with everything under it); nothing if absent."""
        path = _norm(path)
        with self.lock:
            parent, name = posixpath.split(path)
            if path in self._dirs:
                for child in list(self._dirs[path]):
                    self.remove(f"{path}/{child}")
                del self._dirs[path]
            self._files.pop(path, None)
            self._links.pop(path, None)
            if parent in self._dirs:
                self._dirs[parent].discard(name)

    def attribute(self, path: str) -> Attribute:
        """Return the attribute of a file (after following links)."""
        with self.lock:
            real = self._resolve(path)
            found = self._files.get(real)
            if found is None:
                raise SysfsError(errno.EISDIR if real in self._dirs else errno.ENOENT, _norm(path))
            return found

    # -- resolving ----------------------------------------------------------------

    def _resolve(self, path: str, depth: int = 0) -> str:
        """Resolve every link of ``path``; raise ``ENOENT`` when some component is missing."""
        if depth > _MAX_LINKS:
            raise SysfsError(errno.ELOOP, _norm(path))
        parts = _norm(path).split("/") if _norm(path) else []
        here = ""
        for i, name in enumerate(parts):
            child = f"{here}/{name}" if here else name
            link = self._links.get(child)
            if link is not None:
                joined = (
                    link.target
                    if link.target.startswith("/")
                    else posixpath.join(here, link.target)
                )
                child = self._resolve(_norm(joined), depth + 1)
            elif child not in self._dirs and child not in self._files:
                raise SysfsError(errno.ENOENT, _norm(path))
            if i < len(parts) - 1 and child not in self._dirs:
                raise SysfsError(errno.ENOTDIR, _norm(path))
            here = child
        return here

    def _real(self, path: str) -> str:
        return self._resolve(path)

    # -- SysfsFiles -------------------------------------------------------------------

    def read(self, path: str) -> bytes:
        with self.lock:
            attribute = self.attribute(path)
            try:
                return attribute.read()
            except SysfsError as e:
                raise SysfsError(e.errno, _norm(path), e.detail) from None

    def write(self, path: str, data: bytes) -> None:
        with self.lock:
            try:
                attribute = self.attribute(path)
                attribute.write(bytes(data))
            except SysfsError as e:
                self.log.append((_norm(path), bytes(data), e.name))
                raise SysfsError(e.errno, _norm(path), e.detail) from None
            self.log.append((_norm(path), bytes(data), None))

    def listdir(self, path: str) -> list[str]:
        with self.lock:
            real = self._resolve(path)
            if real not in self._dirs:
                raise SysfsError(errno.ENOTDIR, _norm(path))
            return sorted(self._dirs[real])

    def is_dir(self, path: str) -> bool:
        with self.lock:
            try:
                return self._resolve(path) in self._dirs
            except SysfsError:
                return False

    def exists(self, path: str) -> bool:
        with self.lock:
            try:
                self._resolve(path)
            except SysfsError:
                return False
            return True

    def realpath(self, path: str) -> str:
        with self.lock:
            return self._resolve(path)

    def describe(self, path: str) -> str:
        path = _norm(path)
        return posixpath.join(self.label, path) if path else self.label

    # -- walking, for a filesystem view (FUSE) -----------------------------------------

    def kind(self, path: str) -> str | None:
        """Return ``dir``, ``file`` or ``link`` for ``path`` itself (links not followed), or ``None``."""
        path = _norm(path)
        with self.lock:
            try:
                parent = self._resolve(posixpath.dirname(path)) if "/" in path else ""
            except SysfsError:
                return None
            here = posixpath.join(parent, posixpath.basename(path)) if path else ""
            if here in self._links:
                return "link"
            if here in self._dirs:
                return "dir"
            if here in self._files:
                return "file"
            return None

    def readlink(self, path: str) -> str:
        """Return a link's target as written."""
        path = _norm(path)
        with self.lock:
            parent = self._resolve(posixpath.dirname(path)) if "/" in path else ""
            link = self._links.get(posixpath.join(parent, posixpath.basename(path)))
            if link is None:
                raise SysfsError(errno.EINVAL, path)
            return link.target
