"""The hygiene of ``devmig.migration``: its public names, and every module of it sans-IO.

The package holds two parts -- the VFIO state machine (``_states``, ``_machine``) and the hand-off
protocol (``_handoff_*``) -- and each names what it must export. Every module of the package is held
to a stricter rule than ``tests/test_sans_io.py`` (which walks the whole core): beside the I/O and
concurrency modules it imports no ``os``, ``io``, ``pathlib``, ``secrets`` or ``random`` (the
protocol's secrets and clock come from its caller), and no ``open(`` appears in its text.
"""

from __future__ import annotations

import pytest
from source_tree import SRC, imports_in_file

import devmig.migration as migration
from devmig import DevmigError
from devmig.migration import HandoffError

PACKAGE = SRC / "devmig" / "migration"
MODULES = sorted(p.name for p in PACKAGE.glob("*.py"))
FORBIDDEN = {
    "asyncio",
    "socket",
    "threading",
    "time",
    "io",
    "os",
    "pathlib",
    "secrets",
    "random",
    "sqlalchemy",
    "fastapi",
    "httpx",
}
EXPORTS = {
    "state-machine": {
        "ARCS",
        "NEXT_HOP",
        "REQUIRED_FLAGS",
        "ArcCallback",
        "MigrationFlags",
        "State",
        "StateMachine",
        "arcs",
        "next_state",
        "supported_states",
        "transition_path",
    },
    "hand-off": {
        "DestinationHandoff",
        "DestinationPhase",
        "HandoffError",
        "Message",
        "NEED_DATA",
        "Outcome",
        "PAUSED",
        "SOURCE_TRANSITIONS",
        "DESTINATION_TRANSITIONS",
        "SourceHandoff",
        "SourcePhase",
        "Tickets",
        "read_query",
        "source_journal_answer",
        "destination_journal_answer",
    },
}


@pytest.mark.parametrize("part", EXPORTS)
def test_public_api(part: str) -> None:
    assert EXPORTS[part] <= set(migration.__all__)
    assert list(migration.__all__) == sorted(migration.__all__)
    for name in migration.__all__:
        assert hasattr(migration, name), name
    assert issubclass(HandoffError, DevmigError)


def test_the_modules_are_found() -> None:
    assert {"__init__.py", "_states.py", "_machine.py", "_handoff_tables.py", "_handoff_frames.py"} <= set(
        MODULES
    )


@pytest.mark.parametrize("module", MODULES)
def test_sans_io(module: str) -> None:
    path = PACKAGE / module
    imported = {name.split(".")[0] for name in imports_in_file(path)}
    assert not imported & FORBIDDEN, (module, imported & FORBIDDEN)
    assert "open(" not in path.read_text(encoding="utf-8")


def test_need_data_is_the_state_codecs_object() -> None:
    """The hand-off and the codec both mean "feed me more bytes": one sentinel, not two look-alikes."""
    import devmig.state as state

    assert migration.NEED_DATA is state.NEED_DATA
    assert migration.PAUSED is not state.NEED_DATA
    assert repr(migration.NEED_DATA) == "NEED_DATA" and repr(migration.PAUSED) == "PAUSED"
