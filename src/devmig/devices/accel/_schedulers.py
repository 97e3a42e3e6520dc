"""The accelerator's command queue and engines: one scheduler per release.

The device calls :meth:`_Scheduler.submit`, :meth:`~_Scheduler.dispatch` and
:meth:`~_Scheduler.advance` in the order of a step (the package's theory of
operation) and moves the queue and engines in and out of a stream with
:meth:`~_Scheduler.snapshot` and :meth:`~_Scheduler.restore`. The schedulers
behave the same and differ in code: 1.0.0 lists, 2.0.0 numpy arrays, 3.0.0
deques.
"""

from __future__ import annotations

import abc
from collections import deque
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from devmig.devices.accel._commands import (
    _IDLE,
    AXPY,
    BEAT_BYTES,
    SCALE,
    Command,
    EngineRow,
    _beats,
    _command,
    _engine_row,
)

__all__ = ["_DequeScheduler", "_ListScheduler", "_RingScheduler", "_Scheduler"]


class _Scheduler(abc.ABC):
    """The command queue and the engines of one release (see the package's order of a step)."""

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
