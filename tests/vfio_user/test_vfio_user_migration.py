"""Migration of every reference device between two ``devmig vfio-user serve`` processes.

devmig's strict client (libvfio-user's reply rules) drives both backends as a
VMM would: the source runs its seeded workload through pre-copy, the bytes go
unparsed from MIG_DATA_READ to MIG_DATA_WRITE, and at switch-over the state
digests (BAR0 of each backend) are equal — upgrade and rollback.
"""

from __future__ import annotations

import asyncio
import errno
import struct
from pathlib import Path

import pytest
from serve_procs import serving

from devmig.devices import CATALOG
from devmig.migration import State
from devmig.vfio_user import VfioUserError
from devmig.vfio_user._backend import CONTROL
from devmig.vfio_user._client import VfioUserClient
from devmig.vfio_user._migrate import migrate

EXTRA = {
    "acme-nic": ["--migration-version=2"],
    "acme-blk": ["--migration-version=2"],
    "acme-accel": ["--migration-version=1"],
}


def _args(impl: str, tmp: Path, name: str) -> list[str]:
    args = [*EXTRA[impl], "--work-interval=0.002", "--steps-per-tick=2", "--seed=7"]
    if impl == "acme-blk":
        image = tmp / f"{name}.img"
        image.write_bytes(bytes(4 << 20))
        args.append(f"--host-image={image}")
    return args


async def digest(client: VfioUserClient) -> bytes:
    return await client.read(0, CONTROL["digest"], 16)


async def steps(client: VfioUserClient) -> int:
    return int(struct.unpack("<Q", await client.read(0, CONTROL["steps"], 8))[0])


async def _migrate_between(impl: str, src_release: str, dst_release: str, tmp: Path) -> None:
    src_sock, dst_sock = tmp / "src.sock", tmp / "dst.sock"
    async with (
        serving(f"{impl}/{src_release}", src_sock, *_args(impl, tmp, "src")) as src_proc,
        serving(f"{impl}/{dst_release}", dst_sock, *_args(impl, tmp, "dst")) as dst_proc,
    ):
        source = await VfioUserClient.connect(str(src_sock), strict=True)
        destination = await VfioUserClient.connect(str(dst_sock), strict=True)
        await asyncio.sleep(0.1)  # the source's workload runs
        before = await steps(source)

        async def slow_link(data: bytes) -> None:  # a slow network: the workload runs meanwhile
            await asyncio.sleep(0.1)
            await destination.mig_write(data)

        await destination.set_state(State.RESUMING)
        run = await migrate(source, sink=slow_link, threshold=4096, max_rounds=4)
        await destination.set_state(State.STOP)
        assert run.rounds and run.stop_copy_bytes > 0
        assert await steps(source) > before  # work went on during pre-copy
        assert (
            await source.get_state() is State.STOP and await destination.get_state() is State.STOP
        )
        src_digest = await digest(source)
        assert await digest(destination) == src_digest
        assert await steps(destination) == await steps(source)
        await destination.set_state(State.RUNNING)
        await asyncio.sleep(0.05)
        assert await steps(destination) > await steps(source)
        await source.close()
        await destination.close()
        assert await src_proc.wait() == 0 and await dst_proc.wait() == 0
    assert not src_sock.exists() and not dst_sock.exists()


CASES = [
    pytest.param(impl, a, b, id=f"{impl}-{a}-to-{b}")
    for impl, classes in CATALOG.items()
    for a, b in [
        (classes[0].implementation().release, classes[-1].implementation().release),
        (classes[-1].implementation().release, classes[0].implementation().release),
    ]
]


@pytest.mark.parametrize(("impl", "src_release", "dst_release"), CASES)
def test_reference_device_migrates_between_serve_processes(
    impl, src_release, dst_release, tmp_path
):
    asyncio.run(_migrate_between(impl, src_release, dst_release, tmp_path))


async def _refused_stream(tmp: Path) -> None:
    sock = tmp / "dst.sock"
    async with serving("acme-nic/3.0.0", sock) as proc:
        client = await VfioUserClient.connect(str(sock))
        await client.set_state(State.RESUMING)
        with pytest.raises(VfioUserError) as info:
            await client.mig_write(b"DVMG\x00\x02\x00\x00" + bytes(40))
        assert info.value.errno == errno.EINVAL
        with pytest.raises(
            VfioUserError
        ) as info:  # nothing valid was written: RESUMING -> STOP is refused
            await client.set_state(State.STOP)
        assert info.value.errno == errno.EINVAL
        assert await client.get_state() is State.RESUMING
        await client.close()
        await proc.wait()
    refused = [line for line in proc.lines if line.get("event") == "load_refused"]
    assert len(refused) == 2 and refused[1]["problems"][0]["code"] == "TRUNCATED"


def test_a_refused_load_answers_einval_and_logs_the_decoders_problem(tmp_path):
    asyncio.run(_refused_stream(tmp_path))
