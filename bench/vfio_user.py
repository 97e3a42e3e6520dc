"""Benchmark: devmig's vfio-user path against what it replaces.

What runs
---------
(a) **Migration data.** ``devmig vfio-user serve acme-accel/3.0.0`` with
``mem-size-mib=256``, its memory seeded random bytes (``--prefill-seed``,
so every byte goes as BULK data), ``max_data_xfer_size`` 1 MiB and no
background work; a separate client process (devmig's strict
:class:`~devmig.vfio_user.VfioUserClient`) puts it in STOP, then times
``STOP → STOP_COPY`` and MIG_DATA_READs of 1 MiB (two in flight) until the
short read that ends the stream. The baseline is the same device in one process: the same
creation and prefill, ``STOP → STOP_COPY``, then ``Device.read_data(1 MiB)``
drained into one resident 1 MiB buffer until the end of the stream. Figure:
stream bytes / seconds; the ratio is vfio-user over in-process.

(b) **Register reads.** A separate client process does 4-byte REGION_READs
of BAR0 of ``devmig vfio-user serve acme-nic/3.0.0`` (no background work),
one at a time, with devmig's sans-IO codec in strict mode over a blocking
socket. The baseline is a bare Unix-socket ping-pong between two Python
processes with the same message sizes (32-byte request, 36-byte reply):
``sendall`` then ``recv`` until the whole message is in. Figure: round
trips per second over a fixed count; the ratio is vfio-user over bare.

Each pair of processes is pinned to two distinct CPUs (the single baseline
process of (a) to one of them); the two sides of each ratio alternate, run
after run, and each figure is the median of ``--runs`` (default 5).

Usage: ``uv run python bench/vfio_user.py [--runs 5] [--mib 256] [--reads 20000]``.
MB = 10^6 bytes. The last line printed is exactly one JSON object:
``{"bench": "vfio_user", "mig_data_ratio_vs_sdk": ..., "region_read_ratio_vs_socket": ...,
"region_reads_per_s": ..., "mig_data_mb_s": ...}``. Targets: both ratios >= 0.6.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MIB = 1 << 20
TARGET = 0.6
REQUEST_SIZE = 32  # header + offset u64, region u32, count u32
REPLY_SIZE = 36  # header + the same 16 bytes + 4 bytes of data
DEPTH = 2  # MIG_DATA_READs in flight (the client pipelines, as a VMM may)


def _cpus() -> tuple[int, int]:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        sys.exit("bench/vfio_user.py needs two CPUs")
    return cpus[0], cpus[1]


def _pinned(cpu: int) -> Any:
    return lambda: os.sched_setaffinity(0, {cpu})


def _child(mode: str, cpu: int, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, "--child", mode, *args],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=_pinned(cpu),
    )


def _result(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=600)
    if proc.returncode:
        sys.exit(f"a benchmark child failed ({proc.returncode})")
    return dict(json.loads(out.strip().splitlines()[-1]))


def _serve(cpu: int, target: str, path: Path, *args: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devmig",
            "vfio-user",
            "serve",
            target,
            f"--socket-path={path}",
            "--steps-per-tick=0",
            *args,
        ],
        stderr=subprocess.PIPE,
        preexec_fn=_pinned(cpu),
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if b'"listening"' in line:
            return proc
    sys.exit(f"serve {target} did not start")


# -- (a) migration data --------------------------------------------------------------------


async def _vfio_stream(path: str) -> dict[str, float]:
    from devmig.migration import State
    from devmig.vfio_user import VfioUserClient

    client = await VfioUserClient.connect(path, strict=True)
    await client.set_state(State.STOP)
    total = 0

    async def count(data: bytes) -> None:
        nonlocal total
        total += len(data)

    started = time.perf_counter()
    await client.set_state(State.STOP_COPY)
    await client.mig_read_round(count, chunk=MIB, depth=DEPTH)
    seconds = time.perf_counter() - started
    await client.mig_read_inflight(count)
    await client.close()
    return {"bytes": total, "seconds": seconds}


def _sdk_stream(mib: int) -> dict[str, float]:
    from devmig.devices import newest
    from devmig.migration import State
    from devmig.state import RoundEndSignal
    from devmig.vfio_user._serve import _prefill

    device = newest("acme-accel").create(f"mem-size-mib={mib}")
    _prefill(device, 1)
    device.set_state(State.STOP)
    sink = bytearray(MIB)
    view = memoryview(sink)
    total = 0
    started = time.perf_counter()
    device.set_state(State.STOP_COPY)
    while True:
        parts = device.read_data(MIB)
        if parts == [] or isinstance(parts, RoundEndSignal):
            break
        for part in parts:
            src = memoryview(part).cast("B")
            for at in range(0, len(src), MIB):
                piece = src[at : at + MIB]
                view[: len(piece)] = piece
            total += len(src)
    seconds = time.perf_counter() - started
    return {"bytes": total, "seconds": seconds}


def bench_mig_data(runs: int, mib: int, tmp: Path) -> tuple[list[float], list[float]]:
    cpu_a, cpu_b = _cpus()
    vfio, sdk = [], []
    for run in range(runs):
        for side in ("vfio", "sdk") if run % 2 == 0 else ("sdk", "vfio"):
            if side == "vfio":
                path = tmp / f"accel-{run}.sock"
                server = _serve(
                    cpu_a,
                    "acme-accel/3.0.0",
                    path,
                    f"--m-mem-size-mib={mib}",
                    "--prefill-seed=1",
                    f"--max-data-xfer-size={MIB}",
                )
                got = _result(_child("vfio-stream", cpu_b, str(path)))
                server.wait(60)
                vfio.append(got["bytes"] / got["seconds"] / 1e6)
                print(
                    f"  run {run}: vfio-user  {vfio[-1]:8.1f} MB/s ({got['bytes'] / 1e6:.1f} MB)",
                    flush=True,
                )
            else:
                got = _result(_child("sdk-stream", cpu_a, str(mib)))
                sdk.append(got["bytes"] / got["seconds"] / 1e6)
                print(
                    f"  run {run}: in-process {sdk[-1]:8.1f} MB/s ({got['bytes'] / 1e6:.1f} MB)",
                    flush=True,
                )
    return vfio, sdk


# -- (b) register reads ----------------------------------------------------------------------


def _vfio_reads(path: str, count: int) -> dict[str, float]:
    from devmig.vfio_user import (
        NEED_DATA,
        Capabilities,
        Connection,
        RegionRead,
        RegionReadReply,
        Reply,
        Role,
        VersionRequest,
    )

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    conn = Connection(Role.CLIENT, Capabilities(max_msg_fds=8), strict=True)

    def ask(body: Any) -> Any:
        sock.sendall(conn.send_command(body).data)
        while True:
            event = conn.next_event()
            if event is not NEED_DATA:
                assert isinstance(event, Reply)
                return event.body
            conn.receive_data(sock.recv(65536))

    ask(VersionRequest())
    request = RegionRead(0, 0, 4)
    assert isinstance(ask(request), RegionReadReply)
    started = time.perf_counter()
    for _ in range(count):
        ask(request)
    seconds = time.perf_counter() - started
    sock.close()
    return {"count": count, "seconds": seconds}


def _bare_server(path: str) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    print("ready", flush=True)
    conn, _ = listener.accept()
    reply = bytes(REPLY_SIZE)
    while True:
        got = 0
        while got < REQUEST_SIZE:
            data = conn.recv(65536)
            if not data:
                return
            got += len(data)
        conn.sendall(reply)


def _bare_reads(path: str, count: int) -> dict[str, float]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    request = bytes(REQUEST_SIZE)
    started = time.perf_counter()
    for _ in range(count):
        sock.sendall(request)
        got = 0
        while got < REPLY_SIZE:
            got += len(sock.recv(65536))
    seconds = time.perf_counter() - started
    sock.close()
    return {"count": count, "seconds": seconds}


def bench_region_reads(runs: int, count: int, tmp: Path) -> tuple[list[float], list[float]]:
    cpu_a, cpu_b = _cpus()
    vfio, bare = [], []
    for run in range(runs):
        for side in ("vfio", "bare") if run % 2 == 0 else ("bare", "vfio"):
            if side == "vfio":
                path = tmp / f"nic-{run}.sock"
                server = _serve(cpu_a, "acme-nic/3.0.0", path)
                got = _result(_child("vfio-reads", cpu_b, str(path), str(count)))
                server.wait(60)
                vfio.append(got["count"] / got["seconds"])
                print(f"  run {run}: vfio-user REGION_READ {vfio[-1]:9.0f} /s", flush=True)
            else:
                path = tmp / f"bare-{run}.sock"
                server_proc = _child("bare-server", cpu_a, str(path))
                assert server_proc.stdout is not None
                server_proc.stdout.readline()
                got = _result(_child("bare-reads", cpu_b, str(path), str(count)))
                server_proc.wait(60)
                bare.append(got["count"] / got["seconds"])
                print(f"  run {run}: bare ping-pong      {bare[-1]:9.0f} /s", flush=True)
    return vfio, bare


# -- main ---------------------------------------------------------------------------------------


def _run_child(mode: str, args: list[str]) -> None:
    if mode == "vfio-stream":
        print(json.dumps(asyncio.run(_vfio_stream(args[0]))))
    elif mode == "sdk-stream":
        print(json.dumps(_sdk_stream(int(args[0]))))
    elif mode == "vfio-reads":
        print(json.dumps(_vfio_reads(args[0], int(args[1]))))
    elif mode == "bare-server":
        _bare_server(args[0])
    elif mode == "bare-reads":
        print(json.dumps(_bare_reads(args[0], int(args[1]))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--reads", type=int, default=20000)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _run_child(args.child[0], args.child[1:])
        return
    with tempfile.TemporaryDirectory(prefix="devmig-bench-") as tmp:
        print(f"(a) STOP_COPY stream of a {args.mib} MiB accelerator, 1 MiB reads", flush=True)
        vfio_mb, sdk_mb = bench_mig_data(args.runs, args.mib, Path(tmp))
        print(f"(b) 4-byte REGION_READ round trips x {args.reads}", flush=True)
        vfio_rt, bare_rt = bench_region_reads(args.runs, args.reads, Path(tmp))
    mig_ratio = statistics.median(vfio_mb) / statistics.median(sdk_mb)
    read_ratio = statistics.median(vfio_rt) / statistics.median(bare_rt)
    print(
        f"migration data: {statistics.median(vfio_mb):.1f} MB/s vs {statistics.median(sdk_mb):.1f} MB/s "
        f"in process: ratio {mig_ratio:.2f} (target >= {TARGET})"
    )
    print(
        f"region reads:   {statistics.median(vfio_rt):.0f}/s vs {statistics.median(bare_rt):.0f}/s bare: "
        f"ratio {read_ratio:.2f} (target >= {TARGET})"
    )
    print(
        json.dumps(
            {
                "bench": "vfio_user",
                "mig_data_ratio_vs_sdk": round(mig_ratio, 3),
                "region_read_ratio_vs_socket": round(read_ratio, 3),
                "region_reads_per_s": round(statistics.median(vfio_rt)),
                "mig_data_mb_s": round(statistics.median(vfio_mb), 1),
            }
        )
    )


if __name__ == "__main__":
    main()
