"""Count the uses of ``typing.Any`` in src/devmig, per package, outside documented JSON boundaries.

A use is a reference to ``Any`` in the code (``Any``, ``typing.Any``, ``t.Any``); the ``import``
lines that bring the name in are not uses. A line that ends with the comment ``# JSON boundary``
is where raw JSON legitimately enters or leaves (a parsed request body, a document before
validation) and is not counted; every such line is listed with ``--boundaries`` so the exemptions
stay visible.

    uv run python tools/count_any.py               # a table, then the total
    uv run python tools/count_any.py --json        # {"total": N, "boundary": M, "packages": {...}}
    uv run python tools/count_any.py --boundaries  # also list the exempted lines

Exit status 0; the numbers are for people and for the issue that asked for them.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections import Counter
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "devmig"
BOUNDARY = "# JSON boundary"


def any_lines(source: str) -> list[int]:
    """The line of every use of ``Any`` in ``source`` (one entry per use)."""
    tree = ast.parse(source)
    lines: list[int] = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Name) and node.id == "Any") or (
            isinstance(node, ast.Attribute) and node.attr == "Any"
        ):
            lines.append(node.lineno)
        elif (  # string annotations ("dict[str, Any]") are uses too
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and "Any" in node.value
            and _is_annotation_text(node.value)
        ):
            lines.extend([node.lineno] * _count_any_in_text(node.value))
    return lines


def _is_annotation_text(text: str) -> bool:
    try:
        ast.parse(text, mode="eval")
    except SyntaxError:
        return False
    return len(text) < 200 and "\n" not in text


def _count_any_in_text(text: str) -> int:
    tree = ast.parse(text, mode="eval")
    return sum(1 for node in ast.walk(tree) if isinstance(node, ast.Name) and node.id == "Any")


def package_of(path: Path) -> str:
    """``devmig.agent`` for src/devmig/agent/_host.py; ``devmig`` for top-level modules."""
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:2]) if len(parts) > 2 else parts[0]


def count(src: Path = SRC) -> tuple[Counter[str], Counter[str], list[str]]:
    """Counted uses per package, exempted uses per package, and the exempted lines."""
    counted: Counter[str] = Counter()
    exempt: Counter[str] = Counter()
    listed: list[str] = []
    for path in sorted(src.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        source_lines = text.splitlines()
        package = package_of(path)
        for line in any_lines(text):
            code = source_lines[line - 1]
            if code.rstrip().endswith(BOUNDARY):
                exempt[package] += 1
                listed.append(f"{path.relative_to(src.parent.parent)}:{line}: {code.strip()}")
            else:
                counted[package] += 1
    return counted, exempt, listed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="one JSON object")
    parser.add_argument("--boundaries", action="store_true", help="list the exempted lines")
    args = parser.parse_args(argv)
    counted, exempt, listed = count()
    total = sum(counted.values())
    if args.json:
        print(
            json.dumps(
                {
                    "total": total,
                    "boundary": sum(exempt.values()),
                    "packages": dict(sorted(counted.items())),
                }
            )
        )
        return 0
    width = max(map(len, counted), default=10)
    for package, n in sorted(counted.items(), key=lambda item: (-item[1], item[0])):
        print(f"{package:<{width}}  {n:4d}")
    print(f"{'total':<{width}}  {total:4d}   ({sum(exempt.values())} at JSON boundaries)")
    if args.boundaries:
        print("\n".join(listed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
