"""The host's image file behind a block device: opening it, and its errors."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from devmig._errors import DevmigError, Problem

__all__ = ["ImageError", "_image_problem", "_open_image"]


class ImageError(DevmigError):
    """The host's image file is missing, cannot be opened or read, or has an unusable size.

    Codes: ``IMAGE_MISSING`` (no ``image`` host setting), ``IMAGE_INVALID``
    (not a path), ``IMAGE_UNREADABLE`` (open failed), ``IMAGE_SIZE`` (empty or
    not a whole number of blocks), ``IMAGE_IO`` (a read or write failed or
    came up short).
    """

    default_code = "IMAGE_INVALID"



def _image_problem(code: str, message: str, **kw: Any) -> ImageError:
    return ImageError([Problem(code, ("host", "image"), message, **kw)])


def _open_image(host: Mapping[str, Any], block_size: int) -> tuple[int, int]:
    """Open the image named by the host settings; return ``(fd, capacity in blocks)``.

    With ``image_fd`` (an open descriptor: how the agent hands over an image it
    opened inside its image directory) the device uses a duplicate of it and
    never opens ``image`` by name.
    """
    raw = host.get("image")
    given = host.get("image_fd")
    if isinstance(given, int) and not isinstance(given, bool):
        return _sized(
            os.dup(given),
            os.fsdecode(os.fspath(raw)) if isinstance(raw, (str, os.PathLike)) else "the image",
            block_size,
        )
    if raw is None:
        raise _image_problem(
            "IMAGE_MISSING",
            "the block device needs an image file (host setting 'image')",
            hint='create it with host={"image": "/path/to.img"}',
        )
    if not isinstance(raw, (str, os.PathLike)):
        raise _image_problem("IMAGE_INVALID", "the image must be a path", value=type(raw).__name__)
    path = os.fsdecode(os.fspath(raw))
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError as exc:
        raise _image_problem("IMAGE_UNREADABLE", f"cannot open {path}: {exc.strerror}", value=path) from exc
    return _sized(fd, path, block_size)


def _sized(fd: int, path: str, block_size: int) -> tuple[int, int]:
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
    except OSError as exc:
        os.close(fd)
        raise _image_problem("IMAGE_UNREADABLE", f"cannot size {path}: {exc.strerror}", value=path) from exc
    if size == 0 or size % block_size:
        os.close(fd)
        blocks = max(1, -(-size // block_size))
        raise _image_problem(
            "IMAGE_SIZE",
            f"{path} has {size} bytes, not a whole number of {block_size}-byte blocks",
            value=size,
            allowed={"min": block_size, "multiple_of": block_size},
            hint=f"make it {blocks * block_size} bytes (block-size={block_size})",
        )
    return fd, size // block_size
