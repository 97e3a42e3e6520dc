"""Benchmark: one STOP_COPY pass of a 1 GiB region through the stream codec.

Source region (seeded random data) → ``PrecopySource``/``StreamEncoder``
(zero-copy BULK buffers straight from region memory, compression off) →
``StreamDecoder`` through the zero-copy ``get_buffer``/``buffer_updated`` path
(the buffer handed out inside a BULK payload is the destination region's own
memory, so the one copy is source chunk → destination slice) → TRAILER
verified → sections committed (``staged_sections()``). The destination is
resident (touched) before timing. Baseline: ``dst[:] = src`` into the same
resident destination, best of 3. GB = 10^9 bytes.

The **floor** (DESIGN §4, format 2: each payload byte hashed once per side) is
measured in the same run over the same 1 GiB: a framing-free loop, per codec
chunk (``--chunk-kib``; default the codec's own, 2 MiB), of xxh3-64 of the source chunk, the copy into the
destination region, xxh3-64 of the destination chunk; one thread, best of 3.
``floor_ratio`` is the codec's throughput over the floor's (target >= 0.85).

Two measurements:

- **in-process** (the headline, printed as JSON): encoder and decoder in one
  thread, the encoder's payload memoryview handed straight to the decoder's
  buffer. Its time is the *sum* of both sides' CPU work.
- **pipelined** (opt-in, ``--mode pipelined|both``; informational): the
  encoder runs in a second thread, as the source host does, and hands its
  records to the decoder through a queue of 4 chunks (a transport's window);
  both sides work at once on the two cores. ``xxhash`` releases the GIL for
  updates over 64 KiB, and the copy is ``numpy.copyto``, which releases it too,
  so only the records' Python framing takes turns.

Extra memory: ``/proc/self/status`` VmHWM after resetting it through
``/proc/self/clear_refs`` (``5``), else VmRSS sampled after every record;
reported as peak minus the RSS before the run.

Usage: ``uv run python bench/codec.py [--gib N] [--repeat K] [--chunk-kib K]
[--mode in-process|pipelined|both]``. The last line printed is exactly one JSON object:
``{"bench": "codec", "gib": 1, "chunk_kib": ..., "encode_decode_gb_s": ..., "ratio_vs_copy": ...,
"floor_gb_s": ..., "floor_ratio": ..., "extra_rss_mb": ...}``.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from devmig.state import (
    NEED_DATA,
    FieldSpec,
    PrecopySource,
    Region,
    RegionSpec,
    SectionSpec,
    StateDeclaration,
    StateLayout,
    StreamDecoder,
    StreamEncoder,
    state_digest,
)
from devmig.state._encoder import DEFAULT_CHUNK as ENCODER_DEFAULT_CHUNK

MODEL = "example.org/devices/bench"
CONFIG = {"mem-mib": 1024}
DEFAULT_CHUNK = ENCODER_DEFAULT_CHUNK  # the codec's own chunk size
CHUNK = DEFAULT_CHUNK  # --chunk-kib sets it
SECTIONS = {"regs": {"head": 7, "tail": 3, "name": "bench0"}}


# -- memory accounting ---------------------------------------------------------


def _status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _reset_hwm() -> bool:
    """Reset VmHWM to the current RSS; ``False`` when not permitted."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return _status_kib("VmHWM") <= _status_kib("VmRSS") + 1024


class _PeakRss:
    """Peak RSS over a run: VmHWM when it can be reset, else sampled VmRSS."""

    def __init__(self) -> None:
        self.hwm = _reset_hwm()
        self.before = _status_kib("VmRSS")
        self.peak = self.before

    def sample(self) -> None:
        if not self.hwm:
            self.peak = max(self.peak, _status_kib("VmRSS"))

    def extra_kib(self) -> int:
        now = _status_kib("VmHWM") if self.hwm else _status_kib("VmRSS")
        return max(self.peak, now) - self.before


# -- setup ---------------------------------------------------------------------


def _layout(size: int) -> StateLayout:
    declaration = StateDeclaration(
        sections=[
            SectionSpec(
                "regs",
                [
                    FieldSpec("head", "u32"),
                    FieldSpec("tail", "u32"),
                    FieldSpec("name", "str", max=16),
                ],
            )
        ],
        regions=[RegionSpec("mem", size)],
    )
    return declaration.layout(CONFIG)


def _fill_random(data: np.ndarray[Any, np.dtype[np.uint8]], seed: int = 20260101) -> None:
    rng = np.random.default_rng(seed)
    step = 64 << 20
    for start in range(0, data.size, step):
        stop = min(start + step, data.size)
        data[start:stop] = rng.integers(0, 256, stop - start, dtype=np.uint8)


_BIG = 1 << 16


class _Sink:
    """The destination side: a decoder fed through get_buffer/buffer_updated, like a socket.

    Bytes sent wait in ``pending``; each buffer the decoder lends is filled
    only once that many bytes were sent (or the stream ended), as a receive
    from a socket would fill it -- so a record's digest and the next record's
    head land in one framing buffer (the source agent keeps a record's small
    tail back for that), and a BULK payload in the region's memory.
    """

    def __init__(self, layout: StateLayout, dst: Region) -> None:
        self.decoder = StreamDecoder(MODEL, CONFIG, layout, [dst])
        self.pending: deque[memoryview] = deque()
        self.size = 0

    def feed(self, buffers: Sequence[Any], *, final: bool = False) -> None:
        pending = self.pending
        for buf in buffers:
            view = buf if isinstance(buf, memoryview) else memoryview(buf)
            if len(view):
                pending.append(view)
                self.size += len(view)
        get_buffer = self.decoder.get_buffer
        buffer_updated = self.decoder.buffer_updated
        while self.size:
            target = get_buffer(-1)
            want = len(target)
            if want > self.size and not final:
                return  # a socket would not have these bytes yet
            n = min(want, self.size)
            pos = 0
            while pos < n:
                piece = pending[0]
                k = min(len(piece), n - pos)
                if k >= _BIG:  # the transport's one copy; numpy releases the GIL for it
                    np.copyto(
                        np.frombuffer(target, np.uint8, k, pos), np.frombuffer(piece, np.uint8, k)
                    )
                else:
                    target[pos : pos + k] = piece[:k]
                if k == len(piece):
                    pending.popleft()
                else:
                    pending[0] = piece[k:]
                pos += k
            self.size -= n
            buffer_updated(n)

    def drain(self) -> None:
        next_event = self.decoder.next_event
        while next_event() is not NEED_DATA:
            pass

    def commit(self) -> dict[str, dict[str, Any]]:
        self.decoder.end_of_input()
        self.drain()
        return self.decoder.staged_sections()  # committed at RESUMING -> STOP


# -- in-process ----------------------------------------------------------------


def in_process(src: Region, dst: Region, layout: StateLayout, sample: Callable[[], None]) -> float:
    """Encode ``src`` in STOP_COPY and decode it into ``dst`` in one thread; return seconds."""
    start = time.perf_counter()
    cpu = time.process_time()
    encoder = StreamEncoder(
        MODEL, CONFIG, layout, {"implementation": "bench"}, compress=False, chunk_size=CHUNK
    )
    source = PrecopySource([src], encoder)
    sink = _Sink(layout, dst)
    sink.feed([encoder.header()])
    while records := source.next_records(CHUNK + 64, stopped=True):
        assert isinstance(records, list)
        sink.feed(records)
        sink.drain()
        sample()
    sink.feed([source.finish(SECTIONS)], final=True)
    committed = sink.commit()
    elapsed = time.perf_counter() - start
    LAST_CPU[0] = time.process_time() - cpu
    assert committed == SECTIONS, committed
    return elapsed


LAST_CPU = [0.0]  # CPU seconds of the last in-process run (for the report)


# -- pipelined (two threads) -----------------------------------------------------

WINDOW = 4  # chunks the source may run ahead of the destination (4 MiB), like a transport's window


def pipelined(src: Region, dst: Region, layout: StateLayout) -> float:
    """Encode in a second thread while this one decodes, as the two hosts of a migration do; return seconds.

    The encoder's records go through a bounded queue of ``WINDOW`` chunks
    (the payload as a view of the source region, as a zero-copy transport
    hands it over). The hashing (``xxhash`` releases the GIL for updates over
    64 KiB) and the one copy (``numpy.copyto`` releases it too) of the two
    sides then run on two cores; the records' Python framing still takes turns.
    """
    handoff: queue.Queue[list[Any] | None] = queue.Queue(maxsize=WINDOW)
    failure: list[BaseException] = []

    def source() -> None:
        cpu = time.thread_time()
        try:
            encoder = StreamEncoder(
                MODEL, CONFIG, layout, {"implementation": "bench"}, compress=False, chunk_size=CHUNK
            )
            chunks = PrecopySource([src], encoder)
            handoff.put([encoder.header()])
            while records := chunks.next_records(CHUNK + 64, stopped=True):
                assert isinstance(records, list)
                handoff.put(records)
            handoff.put([chunks.finish(SECTIONS)])
        except BaseException as exc:  # reported by the destination thread
            failure.append(exc)
        finally:
            handoff.put(None)
            PIPE_CPU[0] = time.thread_time() - cpu

    start = time.perf_counter()
    cpu = time.thread_time()
    sink = _Sink(layout, dst)
    thread = threading.Thread(target=source, name="bench-source")
    thread.start()
    while (records := handoff.get()) is not None:
        sink.feed(records)
        sink.drain()
    sink.feed([], final=True)
    thread.join()
    if failure:
        raise failure[0]
    committed = sink.commit()
    elapsed = time.perf_counter() - start
    PIPE_CPU[1] = time.thread_time() - cpu
    assert committed == SECTIONS
    return elapsed


PIPE_CPU = [0.0, 0.0]  # CPU seconds of the last pipelined run: encoder thread, decoder thread


# -- the floor: what the format itself costs ----------------------------------------


def floor(src: Region, dst: Region) -> dict[str, float]:
    """Best-of-3 seconds of the work the format itself needs, framing-free, over the whole region.

    Format 2 (DESIGN §4) hashes each payload byte once per side: the encoder's
    xxh3-64 of the record, the decoder's xxh3-64 of what landed; the trailer
    hashes only the framing. So per codec chunk: ``xxh3-64(src chunk)``, the
    copy into the destination region, ``xxh3-64(dst chunk)`` -- in that order,
    each chunk cache-hot for the next step (``floor``). Also ``copy`` alone
    per chunk (what a chunked copy costs against ``dst[:] = src``).
    """
    import xxhash

    sv, dv = src.view, dst.view
    size, chunk = len(sv), CHUNK
    xxh3_64 = xxhash.xxh3_64_intdigest

    def copy_only() -> None:
        for i in range(0, size, chunk):
            dv[i : i + chunk] = sv[i : i + chunk]

    def format_work() -> None:
        for i in range(0, size, chunk):
            piece, target = sv[i : i + chunk], dv[i : i + chunk]
            xxh3_64(piece)
            target[:] = piece
            xxh3_64(target)

    out = {}
    for name, fn in (("copy", copy_only), ("floor", format_work)):
        times, cpus = [], []
        for _ in range(3):
            t, c = time.perf_counter(), time.process_time()
            fn()
            times.append(time.perf_counter() - t)
            cpus.append(time.process_time() - c)
        out[name], out[name + "_cpu"] = min(times), min(cpus)
    return out


# -- main ----------------------------------------------------------------------


def _best(times: Sequence[float]) -> float:
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--mode", choices=["in-process", "pipelined", "both"], default="in-process")
    parser.add_argument(
        "--chunk-kib", type=int, default=DEFAULT_CHUNK >> 10, help="codec chunk (KiB)"
    )
    args = parser.parse_args()
    global CHUNK
    CHUNK = args.chunk_kib << 10
    size = int(args.gib * (1 << 30))
    gb = size / 1e9
    layout = _layout(size)
    print(f"load average at the start: {os.getloadavg()}; CPUs: {os.cpu_count()}")

    src = Region("mem", size)
    _fill_random(src.data)
    dst = Region("mem", size)
    dst.data.fill(0xA5)  # resident before timing

    copies = []
    for _ in range(3):
        t = time.perf_counter()
        dst.data[:] = src.data
        copies.append(time.perf_counter() - t)
    copy_s = _best(copies)
    print(
        f"baseline dst[:] = src (resident dst), best of 3: {copy_s:.3f} s = {gb / copy_s:.2f} GB/s"
    )

    results: dict[str, tuple[float, int]] = {}
    modes = ["in-process", "pipelined"] if args.mode == "both" else [args.mode]
    for mode in modes:
        runs = []
        extra = 0
        for i in range(args.repeat):
            dst.data.fill(0xA5)
            rss = _PeakRss()
            cpu_note = ""
            if mode == "in-process":
                elapsed = in_process(src, dst, layout, rss.sample)
                cpu_note = f", CPU {LAST_CPU[0]:.3f} s"
            else:
                elapsed = pipelined(src, dst, layout)
                cpu_note = (
                    f", CPU encoder thread {PIPE_CPU[0]:.3f} s, decoder thread {PIPE_CPU[1]:.3f} s"
                )
            run_extra = rss.extra_kib()
            extra = max(extra, run_extra)
            runs.append(elapsed)
            same = state_digest(layout, SECTIONS, [src]) == state_digest(layout, SECTIONS, [dst])
            if not same:
                raise SystemExit(f"{mode}: destination differs from source")
            print(
                f"{mode} run {i + 1}: {elapsed:.3f} s = {gb / elapsed:.2f} GB/s{cpu_note}, "
                f"extra RSS {run_extra / 1024:.1f} MiB "
                f"({'VmHWM' if rss.hwm else 'sampled VmRSS'}), state digest equal"
            )
        results[mode] = (_best(runs), extra)
        best, extra = results[mode]
        print(
            f"{mode}: best {best:.3f} s = {gb / best:.2f} GB/s = {copy_s / best:.2f} of the copy; "
            f"extra RSS {extra / 1024:.1f} MiB"
        )
    f = floor(src, dst)
    kib = CHUNK >> 10
    print(
        f"chunked copy alone ({kib} KiB chunks, best of 3): {f['copy']:.3f} s = "
        f"{gb / f['copy']:.2f} GB/s = {copy_s / f['copy']:.2f} of dst[:] = src"
    )
    print(
        f"floor (per {kib} KiB chunk: xxh3-64 of the source chunk, copy, xxh3-64 of the destination "
        f"chunk; one thread, no framing; best of 3): {f['floor']:.3f} s = {gb / f['floor']:.2f} GB/s = "
        f"{copy_s / f['floor']:.2f} of dst[:] = src (CPU {f['floor_cpu']:.3f} s)"
    )
    print("targets: floor_ratio >= 0.85, <= 64 MB extra")
    print(f"load average at the end (other work on this host skews wall times): {os.getloadavg()}")
    headline = "in-process" if "in-process" in results else "pipelined"
    best, extra = results[headline]
    print(f"JSON below: the {headline} measurement")
    print(
        json.dumps(
            {
                "bench": "codec",
                "gib": int(args.gib) if args.gib == int(args.gib) else args.gib,
                "chunk_kib": CHUNK >> 10,
                "encode_decode_gb_s": round(gb / best, 3),
                "ratio_vs_copy": round(copy_s / best, 3),
                "floor_gb_s": round(gb / f["floor"], 3),
                "floor_ratio": round(f["floor"] / best, 3),
                "extra_rss_mb": round(extra * 1024 / 1e6, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
