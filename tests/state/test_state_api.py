"""The public surface of devmig.state and the sans-IO rule."""

from __future__ import annotations

from pathlib import Path

from source_tree import calls_in_file, imports_in_file

import devmig.state
from devmig.state import _records

EDGES = ("devmig.agent", "devmig.inventory", "devmig.orchestration", "devmig.manager", "devmig.local", "devmig.cli")
STATE_DIR = Path(devmig.state.__file__).parent
FORBIDDEN = {
    "asyncio",
    "socket",
    "threading",
    "time",
    "selectors",
    "subprocess",
    "os",
    "io.open",
    "sqlalchemy",
    "httpx",
    "fastapi",
}


def test_all_is_curated_and_importable():
    exported = set(devmig.state.__all__)
    assert len(exported) == len(devmig.state.__all__)
    for name in exported:
        assert not name.startswith("_")
        assert getattr(devmig.state, name) is not None
    public = {n for n in vars(devmig.state) if not n.startswith("_")}
    assert public - exported == set()  # nothing public by accident (modules are private)
    expected = {
        "StateDeclaration", "SectionSpec", "FieldSpec", "RegionSpec", "StateLayout", "Region",
        "StreamEncoder", "StreamDecoder", "PrecopySource", "state_digest", "inspect_stream",
        "StreamSummary", "NEED_DATA", "ROUND_END", "Header", "Bulk", "Zero", "RoundEnd",
        "Section", "Trailer",
    }  # fmt: skip
    assert expected <= exported


def test_implementation_modules_are_private():
    for path in STATE_DIR.glob("*.py"):
        assert path.name == "__init__.py" or path.name.startswith("_"), path


def test_state_is_sans_io():
    for path in STATE_DIR.glob("*.py"):
        assert "open" not in calls_in_file(path), f"{path.name} opens a file"
        for name in imports_in_file(path):
            assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"
            assert name not in FORBIDDEN, f"{path.name} imports {name}"
            assert not name.startswith(EDGES), name


def test_order_table_is_the_one_both_sides_read():
    from devmig.state import _decoder, _encoder

    assert _encoder.ORDER is _records.ORDER
    assert _decoder.ORDER is _records.ORDER
