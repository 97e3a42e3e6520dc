"""The accelerator's releases: which scheduler and kernels each one runs, for which model."""

from __future__ import annotations

from typing import ClassVar

from devmig._examples import load_example
from devmig.devices.accel._device import _AccelDevice
from devmig.devices.accel._kernels import _Kernels, _NumpyKernels, _PythonKernels
from devmig.devices.accel._schedulers import (
    _DequeScheduler,
    _ListScheduler,
    _RingScheduler,
    _Scheduler,
)
from devmig.devices.accel._state import ACCEL_LITE_MODEL, ACCEL_MODEL

__all__ = ["AccelLiteV2", "AccelLiteV3", "AccelV1", "AccelV2", "AccelV3"]


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
