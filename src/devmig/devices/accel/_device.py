"""What every accelerator release shares: the order of a step, ECC, FP16 registers, the section codec."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Final

import numpy as np

from devmig._errors import Problem, StreamError
from devmig.device import Device, DeviceError
from devmig.devices.accel._commands import (
    _DRAWS,
    CHECKSUM,
    COMMAND_FIELDS,
    COPY,
    ENGINE_FIELDS,
    FILL,
    MAX_SPAN,
    MAX_SUBMIT,
    OP_NAMES,
    SCALE,
    Command,
    EngineRow,
    _beats,
    _command,
    _command_problem,
    _engine_row,
    _guest_command,
)
from devmig.devices.accel._kernels import _Kernels
from devmig.devices.accel._schedulers import _Scheduler
from devmig.devices.accel._state import ACCEL_STATE, COUNTERS, MIB, STATS

__all__ = ["ECC_ODDS", "_AccelDevice"]

ECC_ODDS: Final = 32
"""One step in 32 (by the draw) reports a correctable error when ``ecc=on``."""


def _invalid(section: str, message: str, value: object = None) -> StreamError:
    return StreamError("SECTION_INVALID", message, section=section, value=value)


def _rows(section: str, values: Mapping[str, Any], names: Sequence[str]) -> list[tuple[int, ...]]:
    columns = [list(values[name]) for name in names]
    if len({len(c) for c in columns}) > 1:
        raise _invalid(section, "its arrays have different lengths", [len(c) for c in columns])
    return [tuple(int(v) for v in row) for row in zip(*columns, strict=True)]


class _AccelDevice(Device):
    """What every release shares: the workload, ECC, FP16 registers and the section codec.

    A release picks its scheduler and kernels (class attributes); the order of
    a step (the package's theory of operation) lives here, once.
    """

    state = ACCEL_STATE
    scheduler_type: ClassVar[type[_Scheduler]]
    kernels_type: ClassVar[type[_Kernels]]
    keeps_stats: ClassVar[bool] = False
    hot_set_bytes: ClassVar[int] = 64 * MIB
    """The default hot set; the host setting ``hot_set_mib`` overrides it; capped at memory size."""

    def setup(self) -> None:
        p = self.params
        self.memory = self.regions[0]
        self.blocks = int(p["mem-size-mib"])
        self.engine_count = int(p["engines"])
        self.depth = int(p["queue-depth"])
        self.ecc = p.get("ecc", False) is True  # accel-lite has no ``ecc``
        self.fp16 = p.get("fp16", False) is True  # 1.0.0 and accel-lite have no ``fp16``
        self.hot_bytes = min(self._host_hot_set(), self.memory.size)
        self.next_tag = 1
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.corrected = self.scrubbed = self.scrub_cursor = 0
        self.syndromes = [0] * self.blocks if self.ecc else []
        self.acc = [0] * self.engine_count if self.fp16 else []
        self.fp16_ops = 0
        self.stats = dict.fromkeys(STATS, 0)
        self.scheduler = self.scheduler_type(self.depth, self.engine_count)
        self.kernels = self.kernels_type(self.memory)

    def _host_hot_set(self) -> int:
        mib = self.host.get("hot_set_mib")
        if mib is None:
            return self.hot_set_bytes
        if isinstance(mib, bool) or not isinstance(mib, int) or mib < 1:
            raise DeviceError(
                [
                    Problem(
                        "HOST_SETTING_INVALID",
                        ("host", "hot_set_mib"),
                        "the hot set must be a whole number of MiB, at least 1",
                        value=mib if isinstance(mib, (int, str)) else repr(mib),
                        allowed={"min": 1},
                    )
                ]
            )
        return mib * MIB

    # -- behaviour -------------------------------------------------------------

    def work(self, rng: np.random.Generator) -> None:
        # Every release draws the same numbers in the same order, whatever is enabled.
        # 32-bit draws: the low halves of raw 64-bit outputs (Generator.integers costs ~10 us more a step)
        draws = (rng.bit_generator.random_raw(_DRAWS) & 0xFFFFFFFF).tolist()
        for i in range(draws[0] % (MAX_SUBMIT + 1)):
            self._submit(draws[2 + 5 * i : 7 + 5 * i])
        if self.keeps_stats:
            self.stats["peak_queue"] = max(self.stats["peak_queue"], self.scheduler.pending())
        if self.ecc:
            self._scrub(draws[1])
        self.scheduler.dispatch()
        if self.keeps_stats:
            busy = self.scheduler.busy()
            self.stats["busy_engine_steps"] += busy
            self.stats["idle_engine_steps"] += self.engine_count - busy
        for engine, command in self.scheduler.advance():
            self._execute(engine, command)

    def _submit(self, draws: Sequence[int]) -> None:
        op, dst, src, length, arg = _guest_command(draws, self.hot_bytes, self.fp16)
        if self.scheduler.pending() >= self.depth:
            self.counters["rejected"] += 1
            self.log.append(("queue-full", OP_NAMES[op]))
            return
        self.scheduler.submit((self.next_tag, op, dst, src, length, arg))
        self.next_tag = self.next_tag % 0xFFFFFFFF + 1  # tag 0 means "idle"
        self.counters["submitted"] += 1

    def _scrub(self, draw: int) -> None:
        self.scrub_cursor = (self.scrub_cursor + 1) % self.blocks
        self.scrubbed += 1
        if draw % ECC_ODDS == 0:
            block = (draw // ECC_ODDS) % self.blocks
            self.syndromes[block] = min(self.syndromes[block] + 1, 0xFFFFFFFF)
            self.corrected += 1
            self.log.append(("ecc-corrected", block, self.syndromes[block]))

    def _execute(self, engine: int, command: Command) -> None:
        tag, op, dst, src, length, arg = command
        k = self.kernels
        if op == CHECKSUM:
            result = k.checksum(src, length)
            self.counters["checksums"] += 1
        else:
            if op == FILL:
                k.fill(dst, length, arg)
            elif op == COPY:
                k.copy(dst, src, length)
            elif op == SCALE:
                k.scale(dst, length, arg)
            else:
                self.acc[engine] = k.axpy(dst, src, length, arg, self.acc[engine])
                self.fp16_ops += 1
            result = k.checksum(dst, length)
            self.counters["bytes_written"] += length
        self.counters["completed"] += 1
        self.log.append(("done", tag, engine, OP_NAMES[op], result))

    # -- state -----------------------------------------------------------------

    def save_sections(self) -> dict[str, dict[str, Any]]:
        queue, engines, next_engine = self.scheduler.snapshot()
        out: dict[str, dict[str, Any]] = {
            "workload": {"hot_bytes": self.hot_bytes, "next_tag": self.next_tag},
            "queue": {name: [row[i] for row in queue] for i, name in enumerate(COMMAND_FIELDS)},
            "engines": {"next": next_engine}
            | {name: [row[i] for row in engines] for i, name in enumerate(ENGINE_FIELDS)},
            "counters": dict(self.counters),
        }
        if self.ecc:
            out["ecc"] = {
                "corrected": self.corrected,
                "scrubbed": self.scrubbed,
                "scrub_cursor": self.scrub_cursor,
                "syndromes": list(self.syndromes),
            }
        if self.fp16:
            out["fp16"] = {"acc": list(self.acc), "ops": self.fp16_ops}
        if self.keeps_stats:
            out["stats"] = dict(self.stats)
        return out

    def load_sections(self, sections: Mapping[str, Mapping[str, Any]]) -> None:
        """Validate every loaded section against this configuration, then apply them all.

        Raises:
            StreamError: ``SECTION_INVALID`` naming the section, for values that
                are well-typed but impossible here (a span outside memory, an
                opcode this configuration lacks, array lengths that differ from
                the engine count, a hot set that is not whole 64 KiB blocks).
        """
        workload = sections["workload"]
        hot = int(workload["hot_bytes"])
        if hot < MAX_SPAN or hot % MAX_SPAN or hot > self.memory.size:
            raise _invalid(
                "workload", "the hot set must be whole 64 KiB blocks inside device memory", hot
            )
        next_tag = int(workload["next_tag"])
        if next_tag == 0:
            raise _invalid("workload", "tag 0 is reserved for idle engines", next_tag)
        queue = [_command(row) for row in _rows("queue", sections["queue"], COMMAND_FIELDS)]
        engine_section = sections["engines"]
        engines = [_engine_row(row) for row in _rows("engines", engine_section, ENGINE_FIELDS)]
        next_engine = int(engine_section["next"])
        if len(engines) != self.engine_count or next_engine >= self.engine_count:
            raise _invalid(
                "engines", f"the configuration has {self.engine_count} engines", len(engines)
            )
        self._check_commands(queue, engines)
        counters = {name: int(sections["counters"][name]) for name in COUNTERS}
        ecc = dict(sections["ecc"]) if self.ecc else {}
        if ecc and (
            len(ecc["syndromes"]) != self.blocks or int(ecc["scrub_cursor"]) >= self.blocks
        ):
            raise _invalid("ecc", f"ECC counters must cover the {self.blocks} MiB blocks of memory")
        fp16 = dict(sections["fp16"]) if self.fp16 else {}
        if fp16 and len(fp16["acc"]) != self.engine_count:
            raise _invalid(
                "fp16", f"one accumulator per engine ({self.engine_count})", len(fp16["acc"])
            )
        stats = sections.get("stats", {})
        # Everything validated: apply.
        self.hot_bytes, self.next_tag = hot, next_tag
        self.scheduler.restore(queue, engines, next_engine)
        self.counters = counters
        if ecc:
            self.corrected, self.scrubbed = int(ecc["corrected"]), int(ecc["scrubbed"])
            self.scrub_cursor = int(ecc["scrub_cursor"])
            self.syndromes = [int(v) for v in ecc["syndromes"]]
        if fp16:
            self.acc, self.fp16_ops = [int(v) for v in fp16["acc"]], int(fp16["ops"])
        self.stats = {name: int(stats.get(name, 0)) for name in STATS}

    def _check_commands(self, queue: Sequence[Command], engines: Sequence[EngineRow]) -> None:
        tags: set[int] = set()
        for where, rows in (("queue", queue), ("engines", engines)):
            for index, row in enumerate(rows):
                tag, op, dst, src, length, _arg = row[:6]
                if where == "engines" and tag == 0:
                    if any(row):
                        raise _invalid(where, f"idle engine {index} holds a command", list(row))
                    continue
                problem = _command_problem(op, dst, src, length, self.memory.size, self.fp16)
                if tag == 0 or tag in tags:
                    problem = f"tag {tag} is 0 or not unique"
                elif where == "engines" and problem is None and row[6] >= _beats(op, length):
                    problem = f"engine {index} has done {row[6]} of {_beats(op, length)} beats"
                if problem is not None:
                    raise _invalid(where, f"entry {index}: {problem}", list(row))
                tags.add(tag)
