"""The accelerator's compute kernels: what a command does to device memory, per release."""

from __future__ import annotations

import abc
import struct
from typing import Final

import numpy as np
import xxhash

from devmig.device import DeviceError
from devmig.devices.accel._commands import LINE
from devmig.state import Region

__all__ = ["_Kernels", "_NumpyKernels", "_PythonKernels"]

_GOLDEN: Final = 0x9E3779B1
_FP16_FINITE: Final = 0xBFFF
"""Clearing the top exponent bit keeps an FP16 lane finite and below 2 in magnitude."""


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
