"""tiny-uart: the device of docs/tutorial.md, releases 1.0.0 and 2.0.0."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from devmig import StreamError
from devmig.device import Device
from devmig.model import ModelDocument, load_document
from devmig.state import FieldSpec, SectionSpec, StateDeclaration

UART_MODEL = "example.org/tutorial/uart"
HERE = Path(__file__).parent


def published(release: str) -> ModelDocument:
    """Load the model document a release publishes (validated on load)."""
    return load_document((HERE / f"uart-{release}.json").read_text())


UART_STATE = StateDeclaration(
    sections=[
        SectionSpec("fifos", [FieldSpec("rx", "u8[]", max="fifo-depth"),
                              FieldSpec("tx", "u8[]", max="fifo-depth")]),
        SectionSpec("counters", [FieldSpec("rx_bytes", "u64"), FieldSpec("tx_bytes", "u64"),
                                 FieldSpec("overruns", "u64")]),
        SectionSpec("flow", [FieldSpec("paused", "u64")], when={"flow-control": True}),
    ],
    off_values={"flow-control": False},  # 1.0.0 has no flow-control: there it is off
)


class UartV1(Device):
    """tiny-uart 1.0.0: receive and transmit FIFOs, overrun when the receive FIFO is full."""

    document_source = staticmethod(lambda: published("1.0.0"))
    model_id = UART_MODEL
    state = UART_STATE

    def setup(self) -> None:
        self.depth = int(self.params["fifo-depth"])
        self.rx: deque[int] = deque()
        self.tx: deque[int] = deque()
        self.counters = {"rx_bytes": 0, "tx_bytes": 0, "overruns": 0}

    def work(self, rng: np.random.Generator) -> None:
        # Always draw the same numbers, whatever happens with them: every
        # release must see the same workload.
        op, byte = (int(x) for x in rng.integers(0, 256, size=2))
        op %= 8
        if op < 3:
            self.line_delivers(byte)
        elif op < 5:
            self.guest_reads()
        elif op < 7:
            self.guest_writes(byte)
        else:
            self.line_sends()

    def line_delivers(self, byte: int) -> None:
        if len(self.rx) == self.depth:
            self.counters["overruns"] += 1
            self.log.append(("overrun", byte))
            return
        self.rx.append(byte)
        self.counters["rx_bytes"] += 1

    def guest_reads(self) -> None:
        if self.rx:
            self.log.append(("rx", self.rx.popleft()))

    def guest_writes(self, byte: int) -> None:
        if len(self.tx) == self.depth:
            self.log.append(("tx-full", byte))
        else:
            self.tx.append(byte)

    def line_sends(self) -> None:
        if self.tx:
            self.log.append(("tx", self.tx.popleft()))
            self.counters["tx_bytes"] += 1

    def save_sections(self) -> dict[str, dict[str, Any]]:
        return {
            "fifos": {"rx": list(self.rx), "tx": list(self.tx)},
            "counters": dict(self.counters),
        }

    def load_sections(self, sections: Mapping[str, Mapping[str, Any]]) -> None:
        # Sizes and types are already checked against the declaration.
        self.rx = deque(sections["fifos"]["rx"])
        self.tx = deque(sections["fifos"]["tx"])
        self.counters = {name: int(v) for name, v in sections["counters"].items()}


class UartV2(UartV1):
    """tiny-uart 2.0.0: deeper FIFOs, and hardware flow control (``flow-control``)."""

    document_source = staticmethod(lambda: published("2.0.0"))

    def setup(self) -> None:
        super().setup()
        self.flow = bool(self.params["flow-control"])
        self.paused = 0

    def line_delivers(self, byte: int) -> None:
        if self.flow and len(self.rx) >= self.depth * 3 // 4:
            self.paused += 1  # RTS is deasserted: the peer holds the byte back
            self.log.append(("paused", byte))
            return
        super().line_delivers(byte)

    def save_sections(self) -> dict[str, dict[str, Any]]:
        out = super().save_sections()
        if self.flow:
            out["flow"] = {"paused": self.paused}
        return out

    def load_sections(self, sections: Mapping[str, Mapping[str, Any]]) -> None:
        super().load_sections(sections)
        if self.flow:
            if len(self.rx) > self.depth * 3 // 4:
                raise StreamError("SECTION_INVALID", "receive FIFO fuller than flow control allows",
                                  section="fifos")
            self.paused = int(sections["flow"]["paused"])
