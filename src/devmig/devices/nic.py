"""The reference NIC (``example.org/devices/nic``), releases 1.0.0, 2.0.0 and 3.0.0 of ``acme-nic``.

The guest's view: receive and transmit queues with ring indices, counters, a
MAC filter table, and — when ``rss=on`` — flow-hash steering over the receive
queues through a hash key and (from 2.0.0, ``rx-table-size``) a
guest-programmable indirection table; from 3.0.0, TCP segmentation offload
(``tso``). The output log holds every transmitted frame and every receive
completion or drop.

Each release is its own class with its own code. 2.0.0 adds the indirection
table and an *optional* ``stats`` section (host-side counters a 1.0.0 reader
skips); 3.0.0 adds TSO and replaces the linear MAC filter scan with an index.
Whatever the release, one canonical configuration gives one state shape and
one behaviour, so the releases migrate between each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from devmig._errors import StreamError
from devmig._examples import load_example
from devmig.device import Device
from devmig.model import ModelDocument
from devmig.state import FieldSpec, SectionSpec, StateDeclaration

__all__ = ["NIC_MODEL", "NicV1", "NicV2", "NicV3"]

NIC_MODEL = "example.org/devices/nic"
BROADCAST = (1 << 48) - 1
MTU = 1500
MSS = 1448
KEY_BYTES = 40


NIC_STATE = StateDeclaration(
    sections=[
        SectionSpec(
            "queues",
            [FieldSpec("rx_index", "u32[]", max="rx-queues"), FieldSpec("tx_index", "u32[]", max="tx-queues")],
        ),
        SectionSpec(
            "counters",
            [
                FieldSpec("rx_packets", "u64"),
                FieldSpec("rx_bytes", "u64"),
                FieldSpec("rx_dropped", "u64"),
                FieldSpec("tx_packets", "u64"),
                FieldSpec("tx_bytes", "u64"),
            ],
        ),
        SectionSpec("filters", [FieldSpec("macs", "u64[]", max="mac-filters")]),
        SectionSpec(
            "rss",
            [FieldSpec("key", "bytes", max=KEY_BYTES), FieldSpec("table", "u8[]", max="rx-table-size")],
            when={"rss": True},
        ),
        SectionSpec("tso", [FieldSpec("segments", "u64")], when={"tso": True}),
        SectionSpec("stats", [FieldSpec("table_writes", "u64"), FieldSpec("filter_hits", "u64")], optional=True),
    ],
    # 1.0.0 knows no ``rx-table-size``, releases before 3.0.0 no ``tso``: there they are off
    off_values={"rx-table-size": 0, "tso": False},
)


def _doc(name: str) -> ModelDocument:
    return load_example(name)


def _flow_hash(key: bytes, flow: int) -> int:
    """A Toeplitz-like flow hash: deterministic, cheap, and the same in every release."""
    acc = 0
    for i in range(0, 32, 8):
        byte = (flow >> i) & 0xFF
        acc = (acc * 31 + byte * key[(i // 8) % len(key)]) & 0xFFFFFFFF
    return acc


class NicV1(Device):
    """acme-nic 1.0.0: queues, counters, MAC filters, RSS by hash modulo the queue count."""

    document_source = staticmethod(lambda: _doc("acme-nic/1.0.0"))
    model_id = NIC_MODEL
    state = NIC_STATE

    def setup(self) -> None:
        p = self.params
        self.rx_index = [0] * int(p["rx-queues"])
        self.tx_index = [0] * int(p["tx-queues"])
        self.counters = dict.fromkeys(("rx_packets", "rx_bytes", "rx_dropped", "tx_packets", "tx_bytes"), 0)
        self.macs = [0] * int(p["mac-filters"])
        self.macs[0] = 0x525400000001  # the station address
        self.rss_key = bytes((7 * i + 11) & 0xFF for i in range(KEY_BYTES))

    # -- behaviour -------------------------------------------------------------

    def work(self, rng: np.random.Generator) -> None:
        # Every release draws the same numbers in the same order, whatever it uses.
        op, flow, length, slot, value, pick = (int(x) for x in rng.integers(0, 1 << 32, size=6))
        op %= 10
        if op < 5:
            self._receive(flow, 60 + length % 1455, pick)
        elif op < 8:
            self._transmit(flow, 60 + length % 9000)
        elif op == 8:
            self._program_filter(slot, (value << 16 | pick & 0xFFFF) & BROADCAST)
        else:
            self._program_table(slot, value)

    def _receive(self, flow: int, length: int, pick: int) -> None:
        choice = pick % 4
        if choice == 0:
            dst = BROADCAST
        elif choice == 3:
            dst = 0x020000000000 | (pick >> 8) & 0xFFFFFF  # a stranger: dropped unless filtered
        else:
            dst = self.macs[(pick >> 2) % len(self.macs)]
        if dst != BROADCAST and not self._accepts(dst):
            self.counters["rx_dropped"] += 1
            self.log.append(("rx-drop", dst, length))
            return
        queue = self._steer(flow)
        self.rx_index[queue] = (self.rx_index[queue] + 1) & 0xFFFFFFFF
        self.counters["rx_packets"] += 1
        self.counters["rx_bytes"] += length
        self.log.append(("rx", queue, self.rx_index[queue], length))

    def _accepts(self, mac: int) -> bool:
        return mac != 0 and mac in self.macs

    def _steer(self, flow: int) -> int:
        if not self.params["rss"]:
            return 0
        return _flow_hash(self.rss_key, flow) % len(self.rx_index)

    def _transmit(self, flow: int, length: int) -> None:
        queue = flow % len(self.tx_index)
        if length > MTU:
            length = MTU  # without TSO the guest driver segments; the device sends MTU frames
        self.tx_index[queue] = (self.tx_index[queue] + 1) & 0xFFFFFFFF
        self.counters["tx_packets"] += 1
        self.counters["tx_bytes"] += length
        self.log.append(("tx", queue, self.tx_index[queue], length, 1))

    def _program_filter(self, slot: int, mac: int) -> None:
        index = slot % len(self.macs)
        if index == 0:
            return  # the station address is fixed
        self.macs[index] = mac
        self.log.append(("filter", index, mac))

    def _program_table(self, slot: int, value: int) -> None:
        """1.0.0 has no indirection table: the guest's write is ignored."""

    # -- state -----------------------------------------------------------------

    def save_sections(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {
            "queues": {"rx_index": list(self.rx_index), "tx_index": list(self.tx_index)},
            "counters": dict(self.counters),
            "filters": {"macs": list(self.macs)},
        }
        if self.params["rss"]:
            out["rss"] = {"key": self.rss_key, "table": self._table()}
        return out

    def _table(self) -> list[int]:
        return []

    def load_sections(self, sections: Mapping[str, Mapping[str, Any]]) -> None:
        queues = sections["queues"]
        if len(queues["rx_index"]) != len(self.rx_index) or len(queues["tx_index"]) != len(self.tx_index):
            raise StreamError("SECTION_INVALID", "queue count differs from the configuration", section="queues")
        macs = list(sections["filters"]["macs"])
        if len(macs) != len(self.macs):
            raise StreamError("SECTION_INVALID", "MAC filter table size differs", section="filters")
        if "rss" in sections:
            key = bytes(sections["rss"]["key"])
            if len(key) != KEY_BYTES:
                raise StreamError("SECTION_INVALID", f"RSS key must be {KEY_BYTES} bytes", section="rss")
            self._load_table(list(sections["rss"]["table"]))
            self.rss_key = key
        self.rx_index = list(queues["rx_index"])
        self.tx_index = list(queues["tx_index"])
        self.counters = {k: int(v) for k, v in sections["counters"].items()}
        self.macs = macs

    def _load_table(self, table: list[int]) -> None:
        if table:
            raise StreamError("SECTION_INVALID", "this configuration has no indirection table", section="rss")


class NicV2(NicV1):
    """acme-nic 2.0.0: adds the guest-programmable RSS indirection table (``rx-table-size``)."""

    document_source = staticmethod(lambda: _doc("acme-nic/2.0.0"))

    def setup(self) -> None:
        super().setup()
        size = int(self.params.get("rx-table-size", 0))
        queues = len(self.rx_index)
        self.table = np.arange(size, dtype=np.uint8) % max(queues, 1)
        self.table_writes = 0
        self.filter_hits = 0

    def _steer(self, flow: int) -> int:
        if not self.params["rss"]:
            return 0
        hashed = _flow_hash(self.rss_key, flow)
        if self.table.size:
            return int(self.table[hashed % self.table.size])
        return hashed % len(self.rx_index)

    def _accepts(self, mac: int) -> bool:
        hit = super()._accepts(mac)
        self.filter_hits += hit
        return hit

    def _program_table(self, slot: int, value: int) -> None:
        if not self.params["rss"] or self.table.size == 0:
            return
        index = slot % self.table.size
        self.table[index] = value % len(self.rx_index)
        self.table_writes += 1
        self.log.append(("rss-table", index, int(self.table[index])))

    def _table(self) -> list[int]:
        return [int(x) for x in self.table]

    def _load_table(self, table: list[int]) -> None:
        if len(table) != self.table.size:
            raise StreamError("SECTION_INVALID", "indirection table size differs", section="rss")
        if any(q >= len(self.rx_index) for q in table):
            raise StreamError("SECTION_INVALID", "indirection table names a queue that does not exist",
                              section="rss")
        self.table = np.array(table, dtype=np.uint8)

    def save_sections(self) -> dict[str, dict[str, Any]]:
        out = super().save_sections()
        out["stats"] = {"table_writes": self.table_writes, "filter_hits": self.filter_hits}
        return out

    def load_sections(self, sections: Mapping[str, Mapping[str, Any]]) -> None:
        super().load_sections(sections)
        stats = sections.get("stats", {})
        self.table_writes = int(stats.get("table_writes", 0))
        self.filter_hits = int(stats.get("filter_hits", 0))


class NicV3(NicV2):
    """acme-nic 3.0.0: adds TCP segmentation offload and an indexed MAC filter lookup."""

    document_source = staticmethod(lambda: _doc("acme-nic/3.0.0"))

    def setup(self) -> None:
        super().setup()
        self.segments = 0
        self._reindex()

    def _reindex(self) -> None:
        self._mac_index: dict[int, int] = {}
        for mac in self.macs:
            if mac:
                self._mac_index[mac] = self._mac_index.get(mac, 0) + 1

    def _accepts(self, mac: int) -> bool:
        hit = self._mac_index.get(mac, 0) > 0
        self.filter_hits += hit
        return hit

    def _program_filter(self, slot: int, mac: int) -> None:
        index = slot % len(self.macs)
        if index == 0:
            return
        old = self.macs[index]
        if old:
            self._mac_index[old] -= 1
        self.macs[index] = mac
        if mac:
            self._mac_index[mac] = self._mac_index.get(mac, 0) + 1
        self.log.append(("filter", index, mac))

    def _transmit(self, flow: int, length: int) -> None:
        if not self.params.get("tso", False) or length <= MTU:
            super()._transmit(flow, length)
            return
        queue = flow % len(self.tx_index)
        count = -(-length // MSS)
        self.tx_index[queue] = (self.tx_index[queue] + 1) & 0xFFFFFFFF
        self.counters["tx_packets"] += count
        self.counters["tx_bytes"] += length
        self.segments += count
        self.log.append(("tx", queue, self.tx_index[queue], length, count))

    def save_sections(self) -> dict[str, dict[str, Any]]:
        out = super().save_sections()
        if self.params.get("tso", False):
            out["tso"] = {"segments": self.segments}
        return out

    def load_sections(self, sections: Mapping[str, Mapping[str, Any]]) -> None:
        super().load_sections(sections)
        self.segments = int(sections.get("tso", {}).get("segments", 0))
        self._reindex()
