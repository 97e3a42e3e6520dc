"""The model document of DESIGN §7 (normative), one copy for every test folder that builds on it.

:data:`NIC_DOC` is the example copied verbatim from DESIGN §7: one model, ``example.org/devices/nic``,
of the ``acme-nic`` 3.0.0 implementation. It is shared: tests deep-copy it before editing.

This folder is on ``sys.path`` (``pythonpath`` in ``[tool.pytest.ini_options]``), so tests import it
by its bare, unique name.
"""

from __future__ import annotations

from typing import Any

NIC_ID = "example.org/devices/nic"

NIC_DOC: dict[str, Any] = {
    "format": "devmig/model-document/1",
    "implementation": {"name": "acme-nic", "release": "3.0.0"},
    "models": [
        {
            "model": NIC_ID,
            "description": "Example NIC with receive-side scaling",
            "params": {
                "rss": {"type": "bool", "off": False, "init": True},
                "rx-queues": {
                    "type": "int",
                    "allowed": [{"min": 1, "max": 16}],
                    "off": 1,
                    "init": 8,
                },
                "rx-table-size": {
                    "type": "int",
                    "allowed": [{"min": 0, "max": 64, "step": 16}],
                    "off": 0,
                    "init": 64,
                },
                "link-speed": {
                    "type": "str",
                    "allowed": ["1G", "10G", "25G"],
                    "off": "1G",
                    "init": "25G",
                },
            },
            "constraints": [
                {
                    "when": {"rss": True},
                    "require": {"rx-queues": {"min": 2}},
                    "message": "RSS needs at least two receive queues",
                }
            ],
            "versions": [
                {"name": "1", "params": {}},
                {"name": "2", "params": {"rss": True, "rx-queues": 4, "rx-table-size": 32}},
                {
                    "name": "3",
                    "params": {
                        "rss": True,
                        "rx-queues": 8,
                        "rx-table-size": 64,
                        "link-speed": "25G",
                    },
                },
            ],
        }
    ],
}
