"""QEMU's own device state descriptions as model documents (sans-IO).

:func:`import_vmstate` turns the JSON ``qemu-system-x86_64 -dump-vmstate FILE``
writes into a model document, one parameterless model per vmstate section
(``qemu.org/devices/<section>``) with its state layout; the release diff
judges two such documents by QEMU's one-directional rules (docs/qemu.md).
"""

from devmig.qemu._vmstate import import_vmstate, machine_of

__all__ = ["import_vmstate", "machine_of"]
