"""docs/api.md's table of error codes is exactly what tools/gen_error_codes.py writes from the registry."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from devmig._codes import CODES

REPO = Path(__file__).resolve().parents[2]
REGENERATE = "uv run python tools/gen_error_codes.py"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("devmig_gen_error_codes", REPO / "tools" / "gen_error_codes.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_table_matches_the_registry() -> None:
    committed = (REPO / "docs" / "api.md").read_text(encoding="utf-8")
    expected = _generator().expected_doc(committed)
    if committed != expected:
        old = set(committed.splitlines())
        changed = [line for line in expected.splitlines() if line not in old][:5]
        pytest.fail(f"docs/api.md's error codes are stale: run `{REGENERATE}` and commit it.\n"
                    f"first lines that differ: {changed}", pytrace=False)


def test_every_code_is_documented() -> None:
    text = (REPO / "docs" / "api.md").read_text(encoding="utf-8")
    missing = [name for name in CODES if f"| `{name}` |" not in text]
    assert not missing, f"docs/api.md does not list: {missing}"


def test_the_generator_writes_every_code_once_with_its_status() -> None:
    table = _generator().render_table()
    for code in CODES.values():
        rows = [line for line in table.splitlines() if line.startswith(f"| `{code.name}` |")]
        assert len(rows) == 1, code.name
        assert rows[0].split(" | ")[1] == (str(code.status) if code.status is not None else "—")


def test_a_doc_without_the_markers_is_refused() -> None:
    with pytest.raises(ValueError, match="needs the lines"):
        _generator().expected_doc("# HTTP APIs\n")
