"""Digests and stream bytes of every reference device at fixed seeds, recorded once.

``uv run python tests/devices/state_recording.py`` (re)writes
``tests/devices/data/state_recording.json``; ``test_state_layouts.py`` checks
that the devices still produce exactly these digests (release-, round- and
format-independent). It was first written from the code *before* the state
declarations moved from Python callables to §7 expressions, so an unchanged
digest proves the rewrite kept every device's state byte for byte. The stream
hashes were written again for stream format 2 (framing trailer, issue 17) with
every digest unchanged.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from devmig._errors import ConfigError
from devmig.device import Device
from devmig.devices import CATALOG, OTHER_MODELS
from devmig.model import Config, expand

HERE = Path(__file__).parent
RECORDING = HERE / "data" / "state_recording.json"
STEPS = 40
SEED = 11
MAX_MEMORY_MIB = 64  # accel regions above this are skipped: the recording stays small


def classes() -> list[type[Device]]:
    """Every reference device class: each release of each model."""
    out: list[type[Device]] = []
    for group in (CATALOG, OTHER_MODELS):
        for releases in group.values():
            out.extend(releases)
    return out


def configs(cls: type[Device]) -> Iterator[Config]:
    """The init configuration, every version, and each parameter's boundary values from init."""
    model = cls.model()
    seen: set[str] = set()
    candidates = ["", *(f"version={v.name}" for v in model.versions)]
    for name, param in model.params.items():
        values: list[Any] = []
        if param.type_name == "int":
            for r in param.allowed:  # type: ignore[union-attr]
                values += [r.min, r.last]
        else:
            values += list(param.allowed)  # type: ignore[union-attr]
        for value in values:
            text = ("on" if value else "off") if isinstance(value, bool) else str(value)
            candidates.append(f"{name}={text}")
            candidates.append(f"version=1,{name}={text}")
    for text in candidates:
        try:
            config = expand(model, text)
        except ConfigError:
            continue
        full = config.full(model)
        if int(full.get("mem-size-mib", 0)) > MAX_MEMORY_MIB:
            continue
        if config.string in seen:
            continue
        seen.add(config.string)
        yield config


def host_for(cls: type[Device], directory: Path) -> dict[str, Any]:
    if cls.implementation().name != "acme-blk":
        return {}
    path = directory / "image.img"
    path.write_bytes(np.random.default_rng(7).bytes(128 * 1024))
    return {"image": str(path)}


def record(cls: type[Device], config: Config, directory: Path) -> dict[str, str]:
    """Return the digest and the stream's xxh3-128 after ``STEPS`` steps at ``SEED``."""
    import xxhash

    from devmig.migration import State

    device = cls(config, host=host_for(cls, directory), seed=SEED)
    try:
        device.step(STEPS)
        digest = device.digest().hex()
        device.set_state(State.STOP)
        stream = device.save_stream()
        return {"digest": digest, "stream": xxhash.xxh3_128_hexdigest(stream)}
    finally:
        device.close()


def recording() -> dict[str, dict[str, dict[str, str]]]:
    out: dict[str, dict[str, dict[str, str]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for cls in classes():
            key = f"{cls.implementation().render()} {cls.model_id}"
            out[key] = {c.string: record(cls, c, Path(tmp)) for c in configs(cls)}
    return out


if __name__ == "__main__":
    data = recording()
    RECORDING.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"{sum(len(v) for v in data.values())} cells in {len(data)} classes", file=sys.stderr)
