"""Write the reference devices' generated state layouts into the shipped example documents.

    uv run python tools/gen_state_layouts.py          # rewrite src/devmig/examples/*/*.json
    uv run python tools/gen_state_layouts.py --check  # exit 1 when a document is out of date

Only each model's ``"state"`` member changes; the rest of each file is kept as written.
"""

from __future__ import annotations

import sys
from pathlib import Path

from devmig.devices._layouts import example_with_layouts, names

EXAMPLES = Path(__file__).resolve().parent.parent / "src" / "devmig" / "examples"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name in names():
        implementation, release = name.split("/", 1)
        path = EXAMPLES / implementation / f"{release}.json"
        text = example_with_layouts(name)
        if path.read_text(encoding="utf-8") != text:
            stale.append(name)
            if not check:
                path.write_text(text, encoding="utf-8")
    for name in stale:
        print(("out of date: " if check else "wrote: ") + name)
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
