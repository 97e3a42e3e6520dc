"""The agent's image directory: where block-device images may live, and how they are opened.

A block device's ``image`` is a host-only setting a client sends (``POST
/v1/devices``, or a source agent in ``incoming``). The agent opens it only
inside its image directory (``devmig agent --image-dir``, default
``STATE_DIR/images``):

* the name is relative to the directory, or an absolute path under it;
  ``..`` is refused, and a path outside is refused without looking at it
  (``IMAGE_OUTSIDE`` says nothing about what exists there);
* every component is opened with ``openat`` relative to the directory's
  descriptor and ``O_NOFOLLOW`` (a symbolic link anywhere is
  ``IMAGE_SYMLINK``), so the file opened is the file checked, whatever
  changes meanwhile;
* only a regular file is an image (not a FIFO, a device node or a directory).

The open descriptor is what the device gets (host setting ``image_fd``,
duplicated by :mod:`devmig.devices.blk`); the path is what the API shows and
what travels to a destination (relative to the directory, so two agents whose
image directories are one shared store agree on it).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path, PurePosixPath

from devmig._errors import Problem
from devmig.devices.blk import ImageError

__all__ = ["ImageDirectory", "OpenedImage"]

_MAX_NAME = 1024


def _problem(code: str, message: str, **kw: object) -> ImageError:
    return ImageError([Problem(code, ("host", "image"), message, **kw)])  # type: ignore[arg-type]


class OpenedImage:
    """An image opened inside the directory: its descriptor, its path and its identity."""

    def __init__(self, fd: int, path: Path, name: str) -> None:
        self.fd = fd
        self.path = path
        """The absolute path inside this agent's image directory (what the API shows)."""
        self.name = name
        """The path relative to the image directory (what travels to a destination)."""
        st = os.fstat(fd)
        self.identity = (st.st_dev, st.st_ino)
        """``(st_dev, st_ino)``: two names of one file (a hard link) are one image."""

    def close(self) -> None:
        """Close the descriptor (the device keeps its own duplicate)."""
        os.close(self.fd)


class ImageDirectory:
    """The one directory block-device images may live in.

    Args:
        root: the directory (created if missing; symbolic links in *its own*
            path are resolved once, here: they are the operator's choice).
    """

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = Path(os.path.realpath(root))

    def name_of(self, raw: object) -> PurePosixPath:
        """Return the image's path relative to the directory, refusing anything that could leave it.

        Raises:
            ImageError: ``IMAGE_INVALID`` (not a non-empty path string),
                ``IMAGE_OUTSIDE`` (absolute and not under the directory, or with ``..``).
        """
        if not isinstance(raw, str) or not raw or "\0" in raw or len(raw) > _MAX_NAME:
            raise _problem("IMAGE_INVALID", f"the image must be a path of 1 to {_MAX_NAME} characters",
                           value=type(raw).__name__ if not isinstance(raw, str) else None)
        path = PurePosixPath(raw)
        outside = _problem(
            "IMAGE_OUTSIDE", "the image must be a file inside the agent's image directory",
            hint="name it relative to the image directory (devmig agent --image-dir), without '..'",
        )
        if path.is_absolute():
            try:
                path = path.relative_to(PurePosixPath(self.root))
            except ValueError:
                raise outside from None
        parts = [p for p in path.parts if p != "."]
        if not parts or ".." in parts:
            raise outside
        return PurePosixPath(*parts)

    def open(self, raw: object) -> OpenedImage:
        """Open an existing image read-write, without following any symbolic link.

        Raises:
            ImageError: as :meth:`name_of`; ``IMAGE_SYMLINK`` (a component is a
                symbolic link), ``IMAGE_UNREADABLE`` (missing or cannot be opened),
                ``IMAGE_INVALID`` (not a regular file).
        """
        name = self.name_of(raw)
        fd = self._openat(name, os.O_RDWR)
        return self._checked(fd, name)

    def create(self, file_name: str, size: int) -> OpenedImage:
        """Create a new zero-filled image of ``size`` bytes (refusing to replace anything).

        Raises:
            ImageError: ``IMAGE_UNREADABLE`` when it cannot be created (it exists, no space).
        """
        name = self.name_of(file_name)
        fd = self._openat(name, os.O_RDWR | os.O_CREAT | os.O_EXCL)
        try:
            os.ftruncate(fd, size)
        except OSError as exc:
            os.close(fd)
            self.remove(str(name))
            raise _problem("IMAGE_UNREADABLE", f"cannot size the new image {name}: {exc.strerror}") from exc
        return self._checked(fd, name)

    def remove(self, name: str) -> None:
        """Remove an image the agent made (a missing one is not an error; never follows a link)."""
        rel = self.name_of(name)
        parent = self._open_parent(rel)
        try:
            os.unlink(rel.name, dir_fd=parent)
        except FileNotFoundError:
            pass
        finally:
            os.close(parent)

    # -- inside ------------------------------------------------------------------------

    def _open_parent(self, name: PurePosixPath) -> int:
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for part in name.parts[:-1]:
                nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                os.close(fd)
                fd = nxt
        except OSError as exc:
            os.close(fd)
            raise self._open_error(name, exc) from exc
        return fd

    def _openat(self, name: PurePosixPath, flags: int) -> int:
        parent = self._open_parent(name)
        try:
            return os.open(name.name, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o600, dir_fd=parent)
        except OSError as exc:
            raise self._open_error(name, exc) from exc
        finally:
            os.close(parent)

    def _open_error(self, name: PurePosixPath, exc: OSError) -> ImageError:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            return _problem("IMAGE_SYMLINK", f"{name} (in the image directory) goes through a symbolic link or "
                            "a non-directory; images are opened without following links", value=str(name))
        if exc.errno == errno.EISDIR:
            return _problem("IMAGE_INVALID", f"{name} is not a regular file", value=str(name))
        return _problem("IMAGE_UNREADABLE", f"cannot open {name} in the image directory: {exc.strerror}",
                        value=str(name))

    def _checked(self, fd: int, name: PurePosixPath) -> OpenedImage:
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                raise _problem("IMAGE_INVALID", f"{name} is not a regular file", value=str(name))
            os.set_blocking(fd, True)
            return OpenedImage(fd, self.root / name, str(name))
        except BaseException:
            os.close(fd)
            raise
