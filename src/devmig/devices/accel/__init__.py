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

Layout
------
``_commands`` (opcodes, spans, the guest's workload), ``_state`` (the state
declaration), ``_schedulers`` (queue and engines, per release), ``_kernels``
(what a command does to memory, per release), ``_device`` (what the releases
share) and ``_releases`` (the release classes).
"""

from devmig.devices.accel._releases import AccelLiteV2, AccelLiteV3, AccelV1, AccelV2, AccelV3
from devmig.devices.accel._state import ACCEL_LITE_MODEL, ACCEL_MODEL, ACCEL_STATE

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
