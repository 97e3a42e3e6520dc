"""The committed OpenAPI files (docs/openapi/) are exactly what the agent and the manager serve."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
REGENERATE = "uv run python tools/gen_openapi.py"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("devmig_gen_openapi", REPO / "tools" / "gen_openapi.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["agent.json", "manager.json"])
def test_committed_openapi_matches_the_app(name: str) -> None:
    expected = {path.name: text for path, text in _generator().expected_files().items()}[name]
    path = REPO / "docs" / "openapi" / name
    assert path.exists(), f"docs/openapi/{name} is missing: run `{REGENERATE}` and commit it"
    committed = path.read_text(encoding="utf-8")
    if committed != expected:
        old, new = json.loads(committed), json.loads(expected)
        added = sorted(set(new.get("paths", {})) - set(old.get("paths", {})))
        removed = sorted(set(old.get("paths", {})) - set(new.get("paths", {})))
        pytest.fail(
            f"docs/openapi/{name} is stale (the app's API changed): run `{REGENERATE}` and commit it.\n"
            f"paths added: {added or 'none'}; paths removed: {removed or 'none'}",
            pytrace=False,
        )



def test_every_path_of_the_apps_is_documented() -> None:
    """docs/api.md names every path of both apps, so a new endpoint needs a line of prose too."""
    gen = _generator()
    text = (REPO / "docs" / "api.md").read_text(encoding="utf-8")
    missing = [p for doc in (gen.agent_openapi(), gen.manager_openapi()) for p in doc["paths"] if p not in text]
    assert not missing, f"docs/api.md does not mention: {missing}"
