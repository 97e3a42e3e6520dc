"""VERSION negotiation: the capabilities JSON and the rules both sides apply.

The VERSION payload is ``major u16 | minor u16`` then optional UTF-8 JSON
``{"capabilities": {...}}``; libvfio-user sends (and requires) a terminating
NUL, which counts in ``msg_size``. devmig sends the NUL and accepts JSON
with or without it. Known keys are type-checked (a wrong type, a JSON
syntax error or a non-object refuses the VERSION with ``EINVAL``); unknown
keys are ignored, as the specification asks.

The server answers major 0, minor ``min(client's, 2)`` (libvfio-user's 0.2;
QEMU 11.1 proposes 0.0 and refuses more), and capabilities libvfio-user
style: ``max_msg_fds``, ``max_data_xfer_size``, ``migration.pgsize`` (when
the device migrates) and ``write_multiple`` only when the client offered it
and the server supports it.
"""

from __future__ import annotations

import errno
import json
from dataclasses import dataclass
from typing import Any, Final

from devmig.vfio_user._errors import VfioUserError

__all__ = [
    "DEFAULT_MAX_DATA_XFER_SIZE",
    "MAX_VERSION_JSON",
    "PROTOCOL_MAJOR",
    "PROTOCOL_MINOR",
    "Capabilities",
]

PROTOCOL_MAJOR: Final = 0
PROTOCOL_MINOR: Final = 2
DEFAULT_MAX_DATA_XFER_SIZE: Final = 1 << 20
MAX_VERSION_JSON: Final = 4096
"""The longest capabilities JSON accepted (libvfio-user's bound is of the same order)."""
PAGE_SIZE: Final = 4096


@dataclass(frozen=True, slots=True)
class Capabilities:
    """One side's VERSION capabilities (the specification's defaults when absent).

    Attributes:
        max_msg_fds: descriptors the sender can receive per message.
        max_data_xfer_size: the largest data count the sender accepts in
            REGION_READ/WRITE, DMA_READ/WRITE and MIG_DATA_READ/WRITE.
        max_dma_maps: how many DMA mappings the sender accepts.
        pgsizes: supported page sizes (a bit mask of sizes).
        migration_pgsize: libvfio-user's ``migration.pgsize``, ``None`` when absent.
        write_multiple: REGION_WRITE_MULTI is offered (client) or accepted (server).
        twin_socket: the sender offers the twin-socket mode (devmig never enables it).
    """

    max_msg_fds: int = 1
    max_data_xfer_size: int = DEFAULT_MAX_DATA_XFER_SIZE
    max_dma_maps: int = 65535
    pgsizes: int = PAGE_SIZE
    migration_pgsize: int | None = None
    write_multiple: bool = False
    twin_socket: bool = False

    def to_json(self) -> dict[str, Any]:
        """The ``{"capabilities": ...}`` object; defaults of the specification are left out."""
        caps: dict[str, Any] = {
            "max_msg_fds": self.max_msg_fds,
            "max_data_xfer_size": self.max_data_xfer_size,
        }
        if self.max_dma_maps != 65535:
            caps["max_dma_maps"] = self.max_dma_maps
        if self.pgsizes != PAGE_SIZE:
            caps["pgsizes"] = self.pgsizes
        if self.migration_pgsize is not None:
            caps["migration"] = {"pgsize": self.migration_pgsize}
        if self.write_multiple:
            caps["write_multiple"] = True
        if self.twin_socket:
            caps["twin_socket"] = {"supported": True}
        return {"capabilities": caps}

    def encode(self) -> bytes:
        """The JSON text with its terminating NUL (libvfio-user requires it)."""
        return json.dumps(self.to_json(), separators=(",", ":")).encode() + b"\0"

    @classmethod
    def decode(cls, data: bytes) -> Capabilities:
        """Parse the JSON part of a VERSION payload (empty: every default).

        Raises:
            VfioUserError: ``EINVAL`` for bad UTF-8 or JSON, a non-object, a
                known key of the wrong type or range, or a pgsize other than 4096.
        """
        text = data[:-1] if data.endswith(b"\0") else data
        if not text:
            return cls()
        if len(text) > MAX_VERSION_JSON:
            raise VfioUserError(
                "VERSION capabilities are too long", errno=errno.E2BIG, value=len(text)
            )
        try:
            doc = json.loads(text.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise VfioUserError(f"VERSION capabilities are not JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise VfioUserError("VERSION JSON must be an object")
        caps = doc.get("capabilities", {})
        if not isinstance(caps, dict):
            raise VfioUserError("'capabilities' must be an object")
        out: dict[str, Any] = {}
        for key, low in (
            ("max_msg_fds", 0),
            ("max_data_xfer_size", 1),
            ("max_dma_maps", 1),
            ("pgsizes", 1),
        ):
            if key in caps:
                out[key] = _int(caps[key], key, low)
        migration = caps.get("migration")
        if migration is not None:
            if not isinstance(migration, dict):
                raise VfioUserError("'migration' must be an object")
            if "pgsize" in migration:
                pgsize = _int(migration["pgsize"], "migration.pgsize", 1)
                if pgsize != PAGE_SIZE:
                    raise VfioUserError("migration.pgsize must be 4096", value=pgsize)
                out["migration_pgsize"] = pgsize
        if "write_multiple" in caps:
            out["write_multiple"] = _bool(caps["write_multiple"], "write_multiple")
        twin = caps.get("twin_socket")
        if twin is not None:
            if not isinstance(twin, dict):
                raise VfioUserError("'twin_socket' must be an object")
            out["twin_socket"] = _bool(twin.get("supported", False), "twin_socket.supported")
        return cls(**out)

    def server_reply(self, offered: Capabilities) -> Capabilities:
        """What a server with these capabilities answers a client that ``offered``.

        Limits are the server's own; ``write_multiple`` only when both offer it;
        twin-socket is never enabled.
        """
        return Capabilities(
            max_msg_fds=self.max_msg_fds,
            max_data_xfer_size=self.max_data_xfer_size,
            max_dma_maps=self.max_dma_maps,
            pgsizes=self.pgsizes,
            migration_pgsize=self.migration_pgsize,
            write_multiple=self.write_multiple and offered.write_multiple,
        )


def _int(value: Any, key: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value < 1 << 63:
        raise VfioUserError(f"capability {key} must be an integer >= {low}", value=value)
    return value


def _bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise VfioUserError(f"capability {key} must be a boolean", value=value)
    return value
