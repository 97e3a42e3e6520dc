"""Benchmark: live migration of a 1 GiB accelerator between two agent processes over loopback.

What runs
---------
Two ``devmig agent`` processes (fresh for every run, each with its own state
directory, so both journal fsyncs are real): the *source* is started with
``--prefill-seed`` so the device it creates starts with seeded pseudo-random
memory -- every one of the 1 GiB goes as BULK data (zero pages would go as
tiny ZERO records and measure nothing); the *destination* with
``--mem-prealloc`` so the device it creates for the migration is resident
before the stream starts (as the baseline's receive buffer is; this is part
of the destination's set-up, which is excluded from the throughput and
reported). On the source an ``acme-accel`` (newest release) with
``mem-size-mib=1024`` and host setting ``hot_set_mib=64`` runs its seeded
workload, paced at about ``--dirty-mb-s`` (default 100 MB/s) of *dirtied page
bytes*: before the runs this script measures, in process, how many 4 KiB
pages one accelerator step dirties on average, and sets the agents'
``--steps-per-tick`` for ``--work-interval``; the achieved step rate is then
read back from the source agent before each migration (and printed). Then
``POST /v1/migrations/outgoing`` and the two agents carry it (pre-copy rounds
while the workload runs, then STOP_COPY and the hand-off, §6).

Figures (per run; the median of the runs is the headline)
---------------------------------------------------------
* **throughput**: 1 GiB / (first stream byte reaching the destination device
  → the destination validated the TRAILER), from the destination's
  migration status ``timings``. Re-sent dirty pages are inside that window.
* **downtime**: the source's ``stopped`` (just before ``→ STOP_COPY``) → the
  destination's ``running`` (just after ``→ RUNNING``); both are
  ``time.time()`` of two processes on this one host.
* **resent**: stream bytes the source sent beyond 1 GiB (re-sent dirty
  pages, plus record framing, sections and trailer: an upper bound).
* **discarded**: pre-copy (``LIVE``) records the destination discarded because
  a write at the source tore them after their digest (DESIGN §4), from the
  destination's migration status; their pages were dirty, so they are re-sent
  (inside **resent**).
* **dest extra RSS**: the destination agent's peak RSS (``VmHWM``, reset via
  ``/proc/PID/clear_refs`` ``5`` just before the migration when permitted)
  minus its RSS right after it created the device (reported by the agent in
  the status ``timings.rss_after_create_kib``).

Baseline (the same number of runs, interleaved with devmig's): two separate
processes; the sender ``sendall``\\ s a resident 1 MiB buffer 1024 times, the
receiver ``recv_into``\\ s a resident 1 GiB buffer; throughput = 1 GiB / (first
byte received → last byte received).

TLS (reported, not a target): ``--tls-runs`` more migrations (default 1), the
same but between agents on TLS with client certificates (a local CA made
for the bench): the API calls and the stream go through TLS, so the stream
leaves the zero-copy ``sendmsg`` path for the transport's TLS writes.
``tls_gb_s`` is their median throughput in GB/s (``null`` with
``--tls-runs 0``), ``tls_downtime_ms`` their median downtime. The targets
above are on plain TCP.

Usage: ``uv run python bench/migrate.py [--runs 3] [--dirty-mb-s 100] [--tls-runs 1]``.
MB = 10^6 bytes, MiB = 2^20. The last line printed is exactly one JSON object:
``{"bench": "migrate", "gib": 1, "throughput_ratio_vs_raw": ..., "downtime_ms": ...,
"discarded_records": ..., "resent_mb": ..., "dest_extra_rss_mb": ..., "tls_gb_s": ...,
"tls_downtime_ms": ...}`` (``dest_extra_rss_mb`` in MiB).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx2
import numpy as np

GIB = 1 << 30
MIB = 1 << 20
PAGE = 4096
MODEL = "example.org/devices/accel"
CONFIG = "mem-size-mib=1024"
HOT_SET_MIB = 64


# -- pacing ----------------------------------------------------------------------------


def measure_step(steps: int = 3000) -> dict[str, float]:
    """Bytes one accelerator step writes and dirties (distinct 4 KiB pages), and its CPU time."""
    from devmig.devices.accel import AccelV3

    device = AccelV3.create(CONFIG, host={"hot_set_mib": HOT_SET_MIB}, seed=12345)
    region = device.regions[0]
    dirtied = 0
    t = time.perf_counter()
    for _ in range(steps):
        region.dirty[:] = False
        device.step()
        dirtied += int(np.count_nonzero(region.dirty)) * PAGE
    seconds = time.perf_counter() - t
    return {
        "written_per_step": device.counters["bytes_written"] / steps,
        "dirtied_per_step": dirtied / steps,
        "step_us": seconds / steps * 1e6,
    }


# -- /proc ------------------------------------------------------------------------------


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process used so far (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def reset_hwm(pid: int) -> bool:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# -- the raw baseline --------------------------------------------------------------------


def _recv_role(size: int) -> None:
    buf = bytearray(size)
    np.frombuffer(buf, dtype=np.uint8).fill(1)  # resident
    view = memoryview(buf)
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    print(srv.getsockname()[1], flush=True)
    conn, _ = srv.accept()
    pos = 0
    n = conn.recv_into(view)
    first = time.perf_counter()
    cpu = time.process_time()
    pos += n
    while pos < size:
        n = conn.recv_into(view[pos:])
        if not n:
            break
        pos += n
    last = time.perf_counter()
    cpu = time.process_time() - cpu
    conn.close()
    print(json.dumps({"bytes": pos, "seconds": last - first, "cpu": cpu}), flush=True)


def _send_role(port: int, size: int) -> None:
    chunk = np.random.default_rng(1).integers(0, 256, MIB, dtype=np.uint8).tobytes()
    sock = socket.create_connection(("127.0.0.1", port))
    cpu = time.process_time()
    for _ in range(size // MIB):
        sock.sendall(chunk)
    cpu = time.process_time() - cpu
    sock.close()
    print(json.dumps({"cpu": cpu}), flush=True)


RAW_CPU = {"send": 0.0, "recv": 0.0}  # CPU seconds of the last raw run's two processes while sending


def baseline(size: int) -> float:
    """One raw run: bytes/s from the receiver's first byte to its last."""
    me = [sys.executable, __file__]
    recv = subprocess.Popen([*me, "--role", "recv", "--size", str(size)], stdout=subprocess.PIPE, text=True)
    assert recv.stdout is not None
    port = int(recv.stdout.readline())
    send = subprocess.Popen([*me, "--role", "send", "--size", str(size), "--port", str(port)],
                            stdout=subprocess.PIPE, text=True)
    result = json.loads(recv.stdout.readline())
    sent, _ = send.communicate()
    recv.wait()
    assert result["bytes"] == size, result
    RAW_CPU.update(send=json.loads(sent)["cpu"], recv=result["cpu"])
    return float(size / result["seconds"])


# -- agents ------------------------------------------------------------------------------


class Agent:
    """One ``devmig agent`` process (ours: stopped by its pid)."""

    def __init__(self, name: str, workdir: Path, args: list[str], tls: Path | None = None) -> None:
        state = workdir / name
        verify: ssl.SSLContext | bool = True
        if tls is not None:  # a directory holding the bench's local CA
            from devmig._certs import LocalCA

            ca = LocalCA(tls / "ca.pem", tls / "ca-key.pem")
            issued = ca.issue(tls, name)
            args = [*args, "--tls-cert", str(issued.cert), "--tls-key", str(issued.key), "--tls-ca", str(ca.cert),
                    "--tls-client-certs"]
            verify = ssl.create_default_context(cafile=str(ca.cert))
            verify.load_cert_chain(str(issued.cert), str(issued.key))
        prof = os.environ.get("DEVMIG_BENCH_PROFILE")  # a folder: run the agent under cProfile
        runner = ["-m", "cProfile", "-o", str(Path(prof) / f"{name}.prof")] if prof else []
        cmd = [sys.executable, *runner, "-m", "devmig", "agent", "--listen", "127.0.0.1:0", "--json",
               "--host-name", name, "--state-dir", str(state), *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"agent {name} did not start")
        info = json.loads(line)
        self.url, self.token, self.pid = info["url"], info["token"], self.proc.pid
        self.http = httpx2.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=60,
                                  verify=verify)

    def get(self, path: str) -> Any:
        r = self.http.get(path)
        r.raise_for_status()
        return r.json()

    def post(self, path: str, body: dict[str, Any]) -> Any:
        r = self.http.post(path, json=body)
        if r.status_code >= 300:
            raise RuntimeError(f"{path}: {r.status_code} {r.text}")
        return r.json()

    def stop(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            # SIGINT under cProfile: the agent shuts down and the profile is written
            profiling = bool(os.environ.get("DEVMIG_BENCH_PROFILE"))
            os.kill(self.proc.pid, signal.SIGINT if profiling else signal.SIGTERM)
            try:
                self.proc.wait(30 if profiling else 10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def wait_finished(agent: Agent, mid: str, timeout: float = 300.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st: dict[str, Any] = agent.get(f"/v1/migrations/{mid}")
        if st["finished"]:
            return st
        time.sleep(0.25)  # a status costs the agent a few ms of CPU: do not poll it busy
    raise TimeoutError(f"migration {mid} did not finish on {agent.url}")


def devmig_run(workdir: Path, agent_args: list[str], warmup_s: float, tls: Path | None = None) -> dict[str, Any]:
    """One migration between two fresh agents (on TLS with the local CA in ``tls``); returns its figures."""
    src = Agent("source", workdir, ["--prefill-seed", "7", *agent_args], tls)
    dst = Agent("destination", workdir, ["--mem-prealloc", *agent_args], tls)
    try:
        dev = src.post("/v1/devices", {"model": MODEL, "config": CONFIG, "host": {"hot_set_mib": HOT_SET_MIB}})
        s0 = src.get(f"/v1/devices/{dev['id']}")["counters"]["steps"]
        t0 = time.monotonic()
        time.sleep(warmup_s)
        s1 = src.get(f"/v1/devices/{dev['id']}")["counters"]["steps"]
        steps_per_s = (s1 - s0) / (time.monotonic() - t0)
        hwm_reset = reset_hwm(dst.pid)
        cpu0 = cpu_seconds(src.pid), cpu_seconds(dst.pid)
        started = src.post("/v1/migrations/outgoing",
                           {"device_id": dev["id"], "destination": {"url": dst.url, "token": dst.token}})
        mid = started["migration_id"]
        st = wait_finished(src, mid)
        dt = wait_finished(dst, mid)
        cpu1 = cpu_seconds(src.pid), cpu_seconds(dst.pid)
        hwm = status_kib(dst.pid, "VmHWM")
        assert st["outcome"] == "migrated" and dt["outcome"] == "migrated", (st["error"], dt["error"])
        assert st["digest"] == dt["digest"], "the destination's state differs from the source's"
        ts, td = st["timings"], dt["timings"]
        stream = td["trailer"] - td["stream_first_byte"]
        return {
            "throughput": GIB / stream,
            "stream_s": stream,
            "downtime_ms": (td["running"] - ts["stopped"]) * 1000,
            "resent_mb": (st["bytes_sent"] - GIB) / 1e6,
            "discarded_records": dt.get("discarded_records", 0),
            "discarded_mb": dt.get("discarded_bytes", 0) / 1e6,
            "dest_extra_rss_mib": (hwm - td["rss_after_create_kib"]) / 1024,
            "hwm_reset": hwm_reset,
            "rounds": st["round"],
            "precopy": st["precopy"],
            "steps_per_s": steps_per_s,
            "setup_s": td.get("create_s"),
            "source": ts,
            "destination": td,
            "agent_downtime_ms": st["downtime_ms"],
            "cpu_s": (cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]),
        }
    finally:
        src.stop()
        dst.stop()


def _phases(run: dict[str, Any]) -> str:
    ts, td = run["source"], run["destination"]
    at = ts["stopped"]

    def ms(t: float) -> str:
        return f"{(t - at) * 1000:7.1f}"

    return (f"    from stop (ms): trailer sent {ms(ts['trailer_sent'])}, trailer validated {ms(td['trailer'])}, "
            f"READY sent {ms(td['ready_sent'])}, READY at source {ms(ts['ready_received'])}, "
            f"GO sent {ms(ts['go_sent'])} (COMMITTED fsync {ts['commit_journal_s'] * 1000:.1f}), "
            f"GO at destination {ms(td['go_received'])}, running {ms(td['running'])} "
            f"(STARTED fsync {td['start_journal_s'] * 1000:.1f}; digest snapshot fork "
            f"{td.get('snapshot_fork_s', 0) * 1000:.1f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dirty-mb-s", type=float, default=100.0, help="dirtied page bytes per second (MB = 10^6)")
    parser.add_argument("--work-interval", type=float, default=0.01)
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of workload before migrating")
    parser.add_argument("--tls-runs", type=int, default=1, help="migrations on TLS, reported (0: none)")
    parser.add_argument("--role", choices=["recv", "send"], help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=GIB, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "recv":
        _recv_role(args.size)
        return
    if args.role == "send":
        _send_role(args.port, args.size)
        return

    print(f"load average at the start: {os.getloadavg()}; CPUs: {os.cpu_count()}")
    step = measure_step()
    per_tick = round(args.dirty_mb_s * 1e6 * args.work_interval / step["dirtied_per_step"])
    if args.dirty_mb_s > 0:
        per_tick = max(1, per_tick)
    print(f"one accel step: writes {step['written_per_step'] / 1024:.1f} KiB, dirties "
          f"{step['dirtied_per_step'] / 1024:.1f} KiB of pages, {step['step_us']:.0f} us of CPU; "
          f"pacing {per_tick} steps per {args.work_interval * 1000:g} ms tick "
          f"= {per_tick * step['dirtied_per_step'] / args.work_interval / 1e6:.0f} MB/s dirtied (nominal)")
    agent_args = [
        "--steps-per-tick",
        str(per_tick),
        "--work-interval",
        str(args.work_interval),
        "--stall-timeout",
        "30",
    ]

    raw: list[float] = []
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="devmig-bench-") as tmp:
        for i in range(args.runs):
            raw.append(baseline(GIB))
            print(f"run {i + 1}: raw sendall/recv_into {raw[-1] / 1e9:.2f} GB/s "
                  f"(CPU while sending: sender {RAW_CPU['send']:.2f} s, receiver {RAW_CPU['recv']:.2f} s)")
            run = devmig_run(Path(tmp) / f"run{i}", agent_args, args.warmup)
            runs.append(run)
            achieved = run["steps_per_s"] * step["dirtied_per_step"] / 1e6
            print(f"run {i + 1}: devmig {run['throughput'] / 1e9:.2f} GB/s ({run['stream_s']:.3f} s stream, "
                  f"{run['rounds']} pre-copy rounds), downtime {run['downtime_ms']:.1f} ms "
                  f"(agent's own {run['agent_downtime_ms']} ms), resent {run['resent_mb']:.1f} MB "
                  f"({run['discarded_records']} torn pre-copy records discarded, "
                  f"{run['discarded_mb']:.1f} MB), "
                  f"dest extra RSS {run['dest_extra_rss_mib']:.1f} MiB (VmHWM reset: {run['hwm_reset']}), "
                  f"dest set-up {run['setup_s']:.3f} s; workload {run['steps_per_s']:.0f} steps/s "
                  f"≈ {achieved:.0f} MB/s dirtied")
            for r in run["precopy"]:
                print(f"    round {r['round']}: {r['bytes'] / 1e6:8.1f} MB in {r['seconds']:.3f} s, "
                      f"dirty after {r['dirty_bytes'] / 1e6:.1f} MB")
            print(_phases(run))
            print(
                f"    CPU while streaming (first byte -> trailer): source {run['source'].get('stream_cpu_s', 0):.2f} s "
                f"(its workload included), destination {run['destination'].get('stream_cpu_s', 0):.2f} s "
                f"in {run['destination'].get('stream_reads', 0)} receives; "
                f"start -> both finished (destination set-up included): source {run['cpu_s'][0]:.2f} s, "
                f"destination {run['cpu_s'][1]:.2f} s"
            )

        tls_runs: list[dict[str, Any]] = []
        if args.tls_runs > 0:
            from devmig._certs import LocalCA

            LocalCA.create(Path(tmp) / "tls", "devmig bench CA")
        for i in range(args.tls_runs):
            run = devmig_run(Path(tmp) / f"tls{i}", agent_args, args.warmup, Path(tmp) / "tls")
            tls_runs.append(run)
            print(f"TLS run {i + 1} (client certificates; reported, not a target): devmig "
                  f"{run['throughput'] / 1e9:.2f} GB/s ({run['stream_s']:.3f} s stream, {run['rounds']} pre-copy "
                  f"rounds), downtime {run['downtime_ms']:.1f} ms, resent {run['resent_mb']:.1f} MB; CPU while "
                  f"streaming: source {run['source'].get('stream_cpu_s', 0):.2f} s, destination "
                  f"{run['destination'].get('stream_cpu_s', 0):.2f} s")

    tls_gb_s = round(statistics.median(r["throughput"] for r in tls_runs) / 1e9, 3) if tls_runs else None
    tls_down = round(statistics.median(r["downtime_ms"] for r in tls_runs), 1) if tls_runs else None
    raw_med = statistics.median(raw)
    thr_med = statistics.median(r["throughput"] for r in runs)
    down = statistics.median(r["downtime_ms"] for r in runs)
    resent = statistics.median(r["resent_mb"] for r in runs)
    discarded = statistics.median(r["discarded_records"] for r in runs)
    extra = statistics.median(r["dest_extra_rss_mib"] for r in runs)
    ratio = thr_med / raw_med
    print(f"median: raw {raw_med / 1e9:.2f} GB/s, devmig {thr_med / 1e9:.2f} GB/s → {ratio:.2f} of raw; "
          f"downtime {down:.1f} ms; resent {resent:.1f} MB ({discarded:g} records discarded); "
          f"dest extra RSS {extra:.1f} MiB")
    print("targets: >= 0.7 of raw, <= 100 ms downtime, <= 64 MB extra")
    if tls_runs:
        print(f"TLS (reported, not a target): {tls_gb_s:.2f} GB/s, downtime {tls_down:.1f} ms "
              f"(median of {len(tls_runs)})")
    print(f"load average at the end (other work on this host skews wall times): {os.getloadavg()}")
    print(json.dumps({"bench": "migrate", "gib": 1, "throughput_ratio_vs_raw": round(ratio, 3),
                      "downtime_ms": round(down, 1), "discarded_records": discarded,
                      "resent_mb": round(resent, 1),
                      "dest_extra_rss_mb": round(extra, 1),
                      "tls_gb_s": tls_gb_s, "tls_downtime_ms": tls_down}))


if __name__ == "__main__":
    main()
