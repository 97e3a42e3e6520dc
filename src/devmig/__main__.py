"""``python -m devmig``: the same as the ``devmig`` command."""

from devmig.cli import main

main()
