"""Write docs/openapi/agent.json and docs/openapi/manager.json from the apps themselves.

    uv run python tools/gen_openapi.py           # regenerate both files
    uv run python tools/gen_openapi.py --check   # exit 1 when a file is stale

tests/docs/test_openapi_files.py fails when a committed file differs from
what the app serves at ``/openapi.json``; run the first command and commit.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[1] / "docs" / "openapi"


def agent_openapi() -> dict[str, Any]:
    """The agent's OpenAPI document (the app is built, never started)."""
    from devmig.agent import AgentSettings, create_app

    return create_app(AgentSettings(token="openapi")).openapi()


def manager_openapi() -> dict[str, Any]:
    """The manager's OpenAPI document (the app is built, never started)."""
    from devmig.manager import ManagerSettings, create_manager_app

    return create_manager_app(ManagerSettings(db_url="sqlite://", token="openapi"), poll=False).openapi()


def render(document: dict[str, Any]) -> str:
    """The committed form: indented JSON, keys in the app's order, one final newline."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def expected_files() -> dict[Path, str]:
    """Each committed file and the text it must have."""
    return {OUT / "agent.json": render(agent_openapi()), OUT / "manager.json": render(manager_openapi())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale files (exit 1)")
    args = parser.parse_args(argv)
    stale = []
    for path, text in expected_files().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(path)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    for path in stale:
        print(f"{'stale' if args.check else 'wrote'} {path.relative_to(OUT.parents[1])}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
