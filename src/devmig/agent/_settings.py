"""Agent settings: which releases it hosts, where it listens, its limits and policies."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from devmig._errors import DevmigError, Problem
from devmig._tls import TlsConfig

__all__ = ["AgentSettings", "PrecopyPolicy", "parse_releases", "parse_size"]

SHORT_NAMES = {"nic": "acme-nic", "blk": "acme-blk", "accel": "acme-accel"}
"""Short names accepted by ``--release`` (``nic=2.0.0``)."""


class PrecopyPolicy(BaseModel):
    """When the source leaves pre-copy for stop-copy.

    It leaves when the first pass is done and the dirty bytes can be sent
    within a quarter of the target downtime (the rest is for loading and the
    hand-off) at the rate measured re-sending dirty pages, when dirty bytes
    stop shrinking for ``stall_rounds`` rounds, or after ``max_rounds`` rounds.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    downtime_target_ms: float = Field(100.0, gt=0)
    max_rounds: int = Field(10, ge=0)
    stall_rounds: int = Field(3, ge=1)


class AgentSettings(BaseModel):
    """Everything ``create_app`` needs; ``devmig agent`` builds it from its options."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host_name: str = Field("localhost", min_length=1)
    releases: dict[str, str] = Field(default_factory=dict)
    """Implementation name → release; implementations not named run their newest release."""
    token: str = Field(default_factory=lambda: secrets.token_urlsafe(24))
    max_device_memory: int | None = None
    """Bytes of device memory (bulk regions) all devices together may use."""
    stream_listen: str = "127.0.0.1:0"
    """Where migration streams arrive: ``HOST:PORT`` or ``unix:/path``."""
    advertise_stream: str | None = None
    """The stream address handed to sources (default: the bound ``stream_listen``); set it when sources
    reach this agent through NAT or a proxy."""
    advertise_url: str | None = None
    """The URL peers reach this agent's API at: sent to a destination as ``source.url`` (its in-doubt
    queries come back there). ``devmig agent`` sets the address it listens on unless told otherwise."""
    state_dir: Path | None = None
    """Where the migration journal and block images live (a temporary directory if unset)."""
    image_dir: Path | None = None
    """The only directory block-device images may be in (default ``STATE_DIR/images``); give agents that
    migrate block devices between them one shared directory (their shared storage)."""
    work_interval_s: float = Field(0.01, gt=0)
    """Seconds between workload ticks of running devices."""
    steps_per_tick: int = Field(1, ge=0)
    precopy: PrecopyPolicy = Field(default_factory=PrecopyPolicy)
    stall_timeout_s: float = Field(10.0, gt=0)
    """A peer that sends nothing for this long is ``PEER_STALLED``."""
    max_pending_streams: int = Field(32, ge=1)
    """Stream connections accepted whose HELLO is not proved yet, at once; more are closed at accept."""
    secret_ttl_s: float = Field(60.0, gt=0)
    """How long an incoming migration's secret stays valid."""
    max_stream_rate: float | None = None
    """Bytes per second to pace streams at (None: as fast as the link goes)."""
    mem_prealloc: bool = False
    """Touch every page of a new device's memory at creation (like QEMU's ``-mem-prealloc``),
    so an incoming migration does not fault pages in while it streams."""
    providers: tuple[str, ...] = ()
    """Providers beside the sdk devices (DESIGN §9): ``kernel[:SYSFS_ROOT]``, ``vfio-user:SETTINGS.json``."""
    max_body_bytes: int = Field(1 << 20, ge=1024)
    """Bytes a request body may have (413 ``BODY_TOO_LARGE`` past it, before parsing or authentication work)."""
    tls: TlsConfig | None = None
    """TLS of the API and the migration stream (server certificate, trusted CA, client certificates);
    ``None``: plain TCP (``--insecure-plain-tcp``, or loopback)."""
    prefill_seed: int | None = None
    """Benchmarks: devices created through the API (not migration destinations) start
    with seeded pseudo-random memory instead of zeros (so none of it is a ZERO record)."""


def parse_releases(text: str) -> dict[str, str]:
    """Parse ``nic=2.0.0,blk=1.0.0`` into ``{"acme-nic": "2.0.0", ...}``.

    Raises:
        DevmigError: ``USAGE`` for a malformed item.
    """
    out: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, release = item.partition("=")
        if not sep or not name or not release:
            raise DevmigError(
                [Problem("USAGE", ("release",), f"--release items are NAME=RELEASE, not {item!r}", value=item,
                         hint="e.g. --release nic=2.0.0,blk=1.0.0,accel=3.0.0")]
            )
        out[SHORT_NAMES.get(name, name)] = release
    return out


_SIZE = re.compile(r"^\s*(\d+)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """Parse ``512M``, ``4G``, ``1048576`` into bytes (binary units).

    Raises:
        DevmigError: ``USAGE`` when the text is not a size.
    """
    match = _SIZE.match(text)
    if not match:
        raise DevmigError(
            [Problem("USAGE", ("size",), f"not a size: {text!r}", value=text, hint="e.g. 512M, 4G or 1073741824")]
        )
    unit = (match.group(2) or "").lower()[:1]
    return int(match.group(1)) * _UNITS[unit]
