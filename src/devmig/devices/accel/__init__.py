"""The reference accelerator (``example.org/devices/accel``): acme-accel 1.0.0, 2.0.0, 3.0.0.

The guest's view: device memory of ``mem-size-mib`` MiB (one bulk region,
``memory``, zeros when created), a command queue of ``queue-depth`` entries,
``engines`` compute engines, counters, and — with ``ecc=on`` — correctable-error
counters per MiB block; from 2.0.0, ``fp16=on`` adds a half-precision AXPY
command and a per-engine FP16 accumulator register. The output log holds every
completion ``("done", tag, engine, op, checksum)``, every submission the full
queue refused ``("queue-full", op)`` and every corrected ECC error
``("ecc-corrected", block, count)``.

Theory of operation
-------------------
One work step is one tick of the device clock, in this order:

1. the guest (the seeded workload) submits 0-3 commands, tagged 1, 2, …; a
   full queue refuses a submission;
2. with ``ecc=on`` the scrubber moves one block on, and a correctable error
   may be reported;
3. idle engines take queued commands in FIFO order, round-robin: the engines
   are visited from the one after the engine that last took a command;
4. every busy engine does one beat of its command (1-4 beats by length, 2 for
   compute); a command *executes on its last beat*, engines in index order,
   and completes with the xxh3-64 of the span it wrote (or, for CHECKSUM, read).

Commands address 64-byte lines of the *hot set* — the first
``min(hot set, memory)`` bytes — so however large the memory, work only dirties
the hot set and pre-copy has a bounded amount to resend. The hot set is a
property of the guest's workload, not a parameter: it comes from the host
setting ``hot_set_mib`` (default :attr:`AccelV1.hot_set_bytes`) when the
workload starts, and migrates in the ``workload`` section like the seed in the
SDK's ``devmig`` section, so a destination continues the source's workload.

Every release draws the same numbers in the same order whatever is enabled,
and one canonical configuration gives one state shape and one behaviour. The
releases differ in code, not in what the guest sees:

* 1.0.0 — pure Python: a list FIFO, engine slots scanned in a loop, kernels
  built from ``bytes`` and ``struct``;
* 2.0.0 — vectorised: a numpy ring buffer and engine table, numpy kernels;
  adds ``fp16``, an *optional* ``stats`` section (host-side counters a 1.0.0
  reader skips), and the second model ``example.org/devices/accel-lite``
  (:class:`AccelLiteV2`, same code, no ECC and no FP16);
* 3.0.0 — a deque scheduler (a FIFO deque and a rotating ring of engines)
  over the 2.0.0 kernels.
"""

from __future__ import annotations

import abc
import struct
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Final

import numpy as np
import numpy.typing as npt
import xxhash

from devmig._errors import Problem, StreamError
from devmig._examples import load_example
from devmig.device import Device, DeviceError
from devmig.model import Value
from devmig.state import FieldKind, FieldSpec, Region, RegionSpec, SectionSpec, StateDeclaration

__all__ = [
    "ACCEL_LITE_MODEL",
    "ACCEL_MODEL",
    "ACCEL_STATE",
    "AccelLiteV2",
    "AccelLiteV3",
    "AccelV1",
    "AccelV2",
    "AccelV3",
]

ACCEL_MODEL: Final = "example.org/devices/accel"
ACCEL_LITE_MODEL: Final = "example.org/devices/accel-lite"

MIB: Final = 1 << 20
LINE: Final = 64
"""Commands address whole 64-byte lines."""
MAX_SPAN: Final = 64 << 10
"""The longest FILL, COPY or CHECKSUM span."""
MAX_LANES_SPAN: Final = 8 * LINE
"""The longest SCALE or AXPY span (256 16-bit lanes)."""
BEAT_BYTES: Final = 16 << 10
"""Bytes an engine moves per beat."""
MAX_SUBMIT: Final = 3
ECC_ODDS: Final = 32
"""One step in 32 (by the draw) reports a correctable error when ``ecc=on``."""
_GOLDEN: Final = 0x9E3779B1
_FP16_FINITE: Final = 0xBFFF
"""Clearing the top exponent bit keeps an FP16 lane finite and below 2 in magnitude."""

FILL, COPY, CHECKSUM, SCALE, AXPY = 1, 2, 3, 4, 5
OP_NAMES: Final = {FILL: "fill", COPY: "copy", CHECKSUM: "checksum", SCALE: "scale", AXPY: "axpy"}
_OP_BY_DRAW: Final = (FILL, FILL, FILL, COPY, COPY, CHECKSUM, SCALE, AXPY)
_DRAWS: Final = 2 + 5 * MAX_SUBMIT

Command = tuple[int, int, int, int, int, int]
"""A queued command: ``(tag, op, dst, src, length, arg)``."""
EngineRow = tuple[int, int, int, int, int, int, int]
"""An engine: its command and the beats done, all zeros when idle."""
_IDLE: Final[EngineRow] = (0, 0, 0, 0, 0, 0, 0)
COMMAND_FIELDS: Final = ("tag", "op", "dst", "src", "length", "arg")
ENGINE_FIELDS: Final = (*COMMAND_FIELDS, "beats_done")
COUNTERS: Final = ("submitted", "completed", "rejected", "bytes_written", "checksums")
STATS: Final = ("peak_queue", "busy_engine_steps", "idle_engine_steps")


def _memory_bytes(config: Mapping[str, Value]) -> int:
    return int(config["mem-size-mib"]) * MIB


def _ecc_on(config: Mapping[str, Value]) -> bool:
    return config.get("ecc", False) is True  # accel-lite has no ``ecc``


def _fp16_on(config: Mapping[str, Value]) -> bool:
    return config.get("fp16", False) is True  # 1.0.0 and accel-lite have no ``fp16``


def _command_fields(depth: str) -> list[FieldSpec]:
    kinds: tuple[FieldKind, ...] = ("u32[]", "u8[]", "u64[]", "u64[]", "u32[]", "u32[]")
    return [
        FieldSpec(name, kind, max=depth) for name, kind in zip(COMMAND_FIELDS, kinds, strict=True)
    ]


ACCEL_STATE = StateDeclaration(
    sections=[
        SectionSpec("workload", [FieldSpec("hot_bytes", "u64"), FieldSpec("next_tag", "u32")]),
        SectionSpec("queue", _command_fields("queue-depth")),
        SectionSpec(
            "engines",
            [
                FieldSpec("next", "u8"),
                *_command_fields("engines"),
                FieldSpec("beats_done", "u8[]", max="engines"),
            ],
        ),
        SectionSpec("counters", [FieldSpec(name, "u64") for name in COUNTERS]),
        SectionSpec(
            "ecc",
            [
                FieldSpec("corrected", "u64"),
                FieldSpec("scrubbed", "u64"),
                FieldSpec("scrub_cursor", "u32"),
                FieldSpec("syndromes", "u32[]", max="mem-size-mib"),
            ],
            when=_ecc_on,
        ),
        SectionSpec(
            "fp16",
            [FieldSpec("acc", "u16[]", max="engines"), FieldSpec("ops", "u64")],
            when=_fp16_on,
        ),
        SectionSpec(
            "stats",
            [
                FieldSpec("peak_queue", "u32"),
                FieldSpec("busy_engine_steps", "u64"),
                FieldSpec("idle_engine_steps", "u64"),
            ],
            optional=True,
        ),
    ],
    regions=[RegionSpec("memory", _memory_bytes)],
)
"""The accelerator's state, the same for every release and for both models."""


# -- the guest's workload (shared: it is not the device) -------------------------


def _guest_command(draws: Sequence[int], hot: int, fp16: bool) -> tuple[int, int, int, int, int]:
    """Turn five draws into ``(op, dst, src, length, arg)`` inside a hot set of ``hot`` bytes."""
    kind, dst_draw, src_draw, length_draw, arg = draws
    op = _OP_BY_DRAW[kind % len(_OP_BY_DRAW)]
    if op == AXPY and not fp16:
        op = CHECKSUM
    longest = MAX_LANES_SPAN if op in (SCALE, AXPY) else MAX_SPAN
    length = (1 + length_draw % (longest // LINE)) * LINE
    slots = (hot - length) // LINE + 1
    return op, dst_draw % slots * LINE, src_draw % slots * LINE, length, arg


def _beats(op: int, length: int) -> int:
    """Beats an engine spends on a command: one per 16 KiB moved, two for compute."""
    return 2 if op in (SCALE, AXPY) else 1 + (length - 1) // BEAT_BYTES


def _command_problem(
    op: int, dst: int, src: int, length: int, memory: int, fp16: bool
) -> str | None:
    """Why a loaded command could not have been submitted, or ``None``."""
    if op not in OP_NAMES or (op == AXPY and not fp16):
        return f"opcode {op} is not available in this configuration"
    longest = MAX_LANES_SPAN if op in (SCALE, AXPY) else MAX_SPAN
    if length <= 0 or length % LINE or length > longest:
        return f"{OP_NAMES[op]} length {length} is not 64..{longest} in whole lines"
    if dst % LINE or src % LINE or max(dst, src) + length > memory:
        return (
            f"{OP_NAMES[op]} span dst={dst} src={src} length={length} is not inside device memory"
        )
    return None


# -- schedulers: the queue and the engines ----------------------------------------


class _Scheduler(abc.ABC):
    """The command queue and the engines of one release (see the module's order of a step)."""

    def __init__(self, depth: int, engines: int) -> None:
        self.depth = depth
        self.engines = engines

    @abc.abstractmethod
    def pending(self) -> int:
        """Commands waiting in the queue."""

    @abc.abstractmethod
    def submit(self, command: Command) -> None:
        """Append a command (the caller checked there is room)."""

    @abc.abstractmethod
    def dispatch(self) -> None:
        """Hand queued commands to idle engines, round-robin from the next engine in turn."""

    @abc.abstractmethod
    def advance(self) -> list[tuple[int, Command]]:
        """Do one beat on every busy engine; return ``(engine, command)`` finished, by engine."""

    @abc.abstractmethod
    def busy(self) -> int:
        """Engines holding a command."""

    @abc.abstractmethod
    def snapshot(self) -> tuple[list[Command], list[EngineRow], int]:
        """Return the queue (oldest first), every engine, and the next engine in turn."""

    @abc.abstractmethod
    def restore(
        self, queue: Sequence[Command], engines: Sequence[EngineRow], next_engine: int
    ) -> None:
        """Replace the whole state with a (validated) snapshot."""


class _ListScheduler(_Scheduler):
    """1.0.0: a Python list as the FIFO and a list of engine slots scanned in a loop."""

    fifo: list[Command]
    slots: list[list[int] | None]
    next_engine: int

    def __init__(self, depth: int, engines: int) -> None:
        super().__init__(depth, engines)
        self.restore([], [_IDLE] * engines, 0)

    def pending(self) -> int:
        return len(self.fifo)

    def submit(self, command: Command) -> None:
        self.fifo.append(command)

    def dispatch(self) -> None:
        start = self.next_engine
        for i in range(self.engines):
            if not self.fifo:
                return
            engine = (start + i) % self.engines
            if self.slots[engine] is None:
                self.slots[engine] = [*self.fifo.pop(0), 0]
                self.next_engine = (engine + 1) % self.engines

    def advance(self) -> list[tuple[int, Command]]:
        done: list[tuple[int, Command]] = []
        for engine, slot in enumerate(self.slots):
            if slot is None:
                continue
            slot[6] += 1
            if slot[6] >= _beats(slot[1], slot[4]):
                done.append((engine, (slot[0], slot[1], slot[2], slot[3], slot[4], slot[5])))
                self.slots[engine] = None
        return done

    def busy(self) -> int:
        return sum(slot is not None for slot in self.slots)

    def snapshot(self) -> tuple[list[Command], list[EngineRow], int]:
        engines: list[EngineRow] = [
            _IDLE if s is None else (s[0], s[1], s[2], s[3], s[4], s[5], s[6]) for s in self.slots
        ]
        return list(self.fifo), engines, self.next_engine

    def restore(
        self, queue: Sequence[Command], engines: Sequence[EngineRow], next_engine: int
    ) -> None:
        self.fifo = list(queue)
        self.slots = [list(row) if row[0] else None for row in engines]
        self.next_engine = next_engine


class _RingScheduler(_Scheduler):
    """2.0.0: a numpy ring buffer as the queue and a numpy engine table, advanced in one go.

    Engine table columns: the six command fields, beats done, beats needed.
    """

    def __init__(self, depth: int, engines: int) -> None:
        super().__init__(depth, engines)
        self.ring: npt.NDArray[np.uint64] = np.zeros((depth, 6), dtype=np.uint64)
        self.table: npt.NDArray[np.uint64] = np.zeros((engines, 8), dtype=np.uint64)
        self.head = 0
        self.count = 0
        self.next_engine = 0

    def pending(self) -> int:
        return self.count

    def submit(self, command: Command) -> None:
        self.ring[(self.head + self.count) % self.depth] = command
        self.count += 1

    def dispatch(self) -> None:
        if not self.count:
            return
        idle = np.flatnonzero(self.table[:, 0] == 0)
        if not idle.size:
            return
        in_turn = idle[np.argsort((idle - self.next_engine) % self.engines, kind="stable")]
        take = min(in_turn.size, self.count)
        chosen = in_turn[:take]
        rows = self.ring[(self.head + np.arange(take)) % self.depth]
        self.table[chosen, :6] = rows
        self.table[chosen, 6] = 0
        compute = (rows[:, 1] == SCALE) | (rows[:, 1] == AXPY)
        self.table[chosen, 7] = np.where(compute, 2, 1 + (rows[:, 4] - 1) // BEAT_BYTES)
        self.head = (self.head + take) % self.depth
        self.count -= take
        self.next_engine = (int(chosen[-1]) + 1) % self.engines

    def advance(self) -> list[tuple[int, Command]]:
        busy = self.table[:, 0] != 0
        self.table[busy, 6] += 1
        finished = np.flatnonzero(busy & (self.table[:, 6] >= self.table[:, 7]))
        if not finished.size:
            return []
        done = [(int(e), _command(self.table[e, :6].tolist())) for e in finished]
        self.table[finished] = 0
        return done

    def busy(self) -> int:
        return int(np.count_nonzero(self.table[:, 0]))

    def snapshot(self) -> tuple[list[Command], list[EngineRow], int]:
        rows = self.ring[(self.head + np.arange(self.count)) % self.depth].tolist()
        engines = [_engine_row(r[:7]) for r in self.table.tolist()]
        return [_command(r) for r in rows], engines, self.next_engine

    def restore(
        self, queue: Sequence[Command], engines: Sequence[EngineRow], next_engine: int
    ) -> None:
        self.ring[:] = 0
        self.head, self.count = 0, len(queue)
        if queue:
            self.ring[: len(queue)] = np.array(queue, dtype=np.uint64)
        self.table[:] = 0
        for e, row in enumerate(engines):
            if row[0]:
                self.table[e] = (*row, _beats(row[1], row[4]))
        self.next_engine = next_engine


class _DequeScheduler(_Scheduler):
    """3.0.0: a deque FIFO, running engines in a dict, and a rotating deque of engines in turn."""

    fifo: deque[Command]
    running: dict[int, list[int]]
    turn: deque[int]

    def __init__(self, depth: int, engines: int) -> None:
        super().__init__(depth, engines)
        self.restore([], [_IDLE] * engines, 0)

    def pending(self) -> int:
        return len(self.fifo)

    def submit(self, command: Command) -> None:
        self.fifo.append(command)

    def dispatch(self) -> None:
        last = -1
        for engine in self.turn:
            if not self.fifo:
                break
            if engine not in self.running:
                command = self.fifo.popleft()
                self.running[engine] = [*command, 0, _beats(command[1], command[4])]
                last = engine
        if last >= 0:
            self.turn.rotate(-(self.turn.index(last) + 1))

    def advance(self) -> list[tuple[int, Command]]:
        done: list[tuple[int, Command]] = []
        for engine in sorted(self.running):
            slot = self.running[engine]
            slot[6] += 1
            if slot[6] >= slot[7]:
                done.append((engine, _command(slot[:6])))
                del self.running[engine]
        return done

    def busy(self) -> int:
        return len(self.running)

    def snapshot(self) -> tuple[list[Command], list[EngineRow], int]:
        engines = [
            _engine_row(self.running[e][:7]) if e in self.running else _IDLE
            for e in range(self.engines)
        ]
        return list(self.fifo), engines, self.turn[0]

    def restore(
        self, queue: Sequence[Command], engines: Sequence[EngineRow], next_engine: int
    ) -> None:
        self.fifo = deque(queue)
        self.running = {
            e: [*row, _beats(row[1], row[4])] for e, row in enumerate(engines) if row[0]
        }
        self.turn = deque(range(self.engines))
        self.turn.rotate(-next_engine)


def _command(values: Sequence[int]) -> Command:
    tag, op, dst, src, length, arg = (int(v) for v in values)
    return tag, op, dst, src, length, arg


def _engine_row(values: Sequence[int]) -> EngineRow:
    tag, op, dst, src, length, arg, done = (int(v) for v in values)
    return tag, op, dst, src, length, arg, done


# -- kernels: what a command does to device memory ----------------------------------


class _Kernels(abc.ABC):
    """The compute kernels of one release, working on the device's memory region."""

    def __init__(self, memory: Region) -> None:
        self.memory = memory

    @abc.abstractmethod
    def fill(self, dst: int, length: int, arg: int) -> None:
        """Write the 64-byte pattern of ``arg`` (16 LE words ``arg + i·φ``) over the span."""

    @abc.abstractmethod
    def copy(self, dst: int, src: int, length: int) -> None:
        """Copy ``length`` bytes from ``src`` to ``dst`` (memmove: the spans may overlap)."""

    @abc.abstractmethod
    def scale(self, dst: int, length: int, arg: int) -> None:
        """Replace each LE u16 lane ``v`` by ``(v·a + b) mod 2¹⁶``; ``a`` (odd) and ``b`` from ``arg``."""

    def axpy(self, dst: int, src: int, length: int, arg: int, acc: int) -> int:
        """FP16 ``dst = a·src + dst + acc`` lane by lane; return the new accumulator (last lane).

        Raises:
            DeviceError: ``FP16_UNSUPPORTED`` in a release without FP16.
        """
        raise DeviceError("this release has no FP16 engines", code="FP16_UNSUPPORTED")

    def checksum(self, offset: int, length: int) -> int:
        """The xxh3-64 of the span."""
        return xxhash.xxh3_64_intdigest(self.memory.read(offset, length))


class _PythonKernels(_Kernels):
    """1.0.0: ``bytes`` repetition, ``struct`` lanes and per-lane loops."""

    def fill(self, dst: int, length: int, arg: int) -> None:
        block = b"".join(
            ((arg + i * _GOLDEN) & 0xFFFFFFFF).to_bytes(4, "little") for i in range(16)
        )
        self.memory.write(dst, block * (length // LINE))

    def copy(self, dst: int, src: int, length: int) -> None:
        self.memory.write(dst, bytes(self.memory.read(src, length)))

    def scale(self, dst: int, length: int, arg: int) -> None:
        a, b = (arg & 0xFFFF) | 1, arg >> 16
        lanes = struct.unpack(f"<{length // 2}H", self.memory.read(dst, length))
        self.memory.write(
            dst, struct.pack(f"<{length // 2}H", *[(v * a + b) & 0xFFFF for v in lanes])
        )

    def checksum(self, offset: int, length: int) -> int:
        return xxhash.xxh3_64_intdigest(bytes(self.memory.read(offset, length)))


_PATTERN: Final = np.arange(16, dtype="<u4") * np.uint32(_GOLDEN)


class _NumpyKernels(_Kernels):
    """2.0.0 and 3.0.0: numpy views of device memory; stores first, marks pages dirty after."""

    def fill(self, dst: int, length: int, arg: int) -> None:
        block = (_PATTERN + np.uint32(arg)).astype("<u4").view(np.uint8)
        self.memory.data[dst : dst + length].reshape(-1, LINE)[:] = block
        self.memory.mark_dirty(dst, length)

    def copy(self, dst: int, src: int, length: int) -> None:
        data = self.memory.data
        data[dst : dst + length] = data[src : src + length]  # numpy buffers overlapping spans
        self.memory.mark_dirty(dst, length)

    def scale(self, dst: int, length: int, arg: int) -> None:
        span = self.memory.data[dst : dst + length]
        lanes = span.view("<u2").astype(np.uint32)
        span[:] = (
            ((lanes * np.uint32((arg & 0xFFFF) | 1) + np.uint32(arg >> 16)) & 0xFFFF)
            .astype("<u2")
            .view(np.uint8)
        )
        self.memory.mark_dirty(dst, length)

    def axpy(self, dst: int, src: int, length: int, arg: int, acc: int) -> int:
        data = self.memory.data
        x = (data[src : src + length].view("<u2") & _FP16_FINITE).astype("<u2").view("<f2")
        y = (data[dst : dst + length].view("<u2") & _FP16_FINITE).astype("<u2").view("<f2")
        a = np.array([arg & _FP16_FINITE], dtype="<u2").view("<f2")
        c = np.array([acc & _FP16_FINITE], dtype="<u2").view("<f2")
        out = (a * x + y + c).astype("<f2")  # every operand finite and below 2: no inf, no NaN
        data[dst : dst + length] = out.view(np.uint8)
        self.memory.mark_dirty(dst, length)
        return int(out.view("<u2")[-1])


# -- the device -----------------------------------------------------------------------


def _invalid(section: str, message: str, value: Any = None) -> StreamError:
    return StreamError("SECTION_INVALID", message, section=section, value=value)


def _rows(section: str, values: Mapping[str, Any], names: Sequence[str]) -> list[tuple[int, ...]]:
    columns = [list(values[name]) for name in names]
    if len({len(c) for c in columns}) > 1:
        raise _invalid(section, "its arrays have different lengths", [len(c) for c in columns])
    return [tuple(int(v) for v in row) for row in zip(*columns, strict=True)]


class _AccelDevice(Device):
    """What every release shares: the workload, ECC, FP16 registers and the section codec.

    A release picks its scheduler and kernels (class attributes); the order of
    a step (the module's theory of operation) lives here, once.
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
        self.ecc = _ecc_on(p)
        self.fp16 = _fp16_on(p)
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


class AccelV1(_AccelDevice):
    """acme-accel 1.0.0: pure-Python dispatch (list FIFO, looped engine slots) and kernels."""

    document_source = staticmethod(lambda: load_example("acme-accel/1.0.0"))
    model_id = ACCEL_MODEL
    scheduler_type = _ListScheduler
    kernels_type = _PythonKernels


class AccelV2(_AccelDevice):
    """acme-accel 2.0.0: vectorised (numpy ring, engine table, kernels); adds FP16 and stats."""

    document_source = staticmethod(lambda: load_example("acme-accel/2.0.0"))
    model_id = ACCEL_MODEL
    scheduler_type: ClassVar[type[_Scheduler]] = _RingScheduler
    kernels_type: ClassVar[type[_Kernels]] = _NumpyKernels
    keeps_stats = True


class AccelV3(AccelV2):
    """acme-accel 3.0.0: a deque scheduler with a rotating engine ring over the 2.0.0 kernels."""

    document_source = staticmethod(lambda: load_example("acme-accel/3.0.0"))
    scheduler_type = _DequeScheduler


class AccelLiteV2(AccelV2):
    """acme-accel 2.0.0, model ``accel-lite``: the 2.0.0 code without ECC and FP16."""

    model_id = ACCEL_LITE_MODEL


class AccelLiteV3(AccelV3):
    """acme-accel 3.0.0, model ``accel-lite``: the 3.0.0 code without ECC and FP16."""

    model_id = ACCEL_LITE_MODEL
