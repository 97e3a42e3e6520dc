"""The agents' vfio-user pumps over a real TCP connection between real backend processes (DESIGN §9).

The source pump reads MIG_DATA_READ into DATA/ROUND_END/END frames while the
source backend's workload runs; the destination pump hands each payload to
MIG_DATA_WRITE and returns once RESUMING → STOP succeeded: digests equal at
switch-over, upgrade and rollback of every reference device.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "vfio_user"))
from serve_procs import serving
from test_vfio_user_migration import CASES, _args, digest, steps

from devmig.agent._vfio_user_host import PrecopyRule
from devmig.agent._vfio_user_stream import receive_backend_data, send_backend_data
from devmig.migration import State
from devmig.vfio_user import VfioUserClient, VfioUserError


async def _between(impl: str, src_release: str, dst_release: str, tmp: Path) -> None:
    src_sock, dst_sock = tmp / "src.sock", tmp / "dst.sock"
    async with (
        serving(f"{impl}/{src_release}", src_sock, *_args(impl, tmp, "src")) as src_proc,
        serving(f"{impl}/{dst_release}", dst_sock, *_args(impl, tmp, "dst")) as dst_proc,
    ):
        source = await VfioUserClient.connect(str(src_sock), strict=True)
        destination = await VfioUserClient.connect(str(dst_sock), strict=True)
        received: asyncio.Future[object] = asyncio.get_running_loop().create_future()

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                received.set_result(
                    await receive_backend_data(destination, lambda: reader.read(1 << 16))
                )
            except Exception as exc:  # handed to the test
                received.set_exception(exc)
            writer.close()

        server = await asyncio.start_server(accept, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)

        async def send(parts: object) -> None:
            writer.writelines(parts)  # type: ignore[arg-type]
            await writer.drain()
            await asyncio.sleep(0.01)  # a slow link: the workload runs meanwhile

        await asyncio.sleep(0.1)
        before = await steps(source)
        sent = await send_backend_data(
            source, send, PrecopyRule(threshold_bytes=4096, max_rounds=4)
        )
        got = await asyncio.wait_for(received, 60)
        writer.close()
        server.close()
        assert sent.rounds and sent.stop_copy_bytes > 0
        assert got.total_bytes == sent.total_bytes and len(got.rounds) == len(sent.rounds)  # type: ignore[attr-defined]
        assert await steps(source) > before
        assert (
            await source.get_state() is State.STOP and await destination.get_state() is State.STOP
        )
        assert await digest(destination) == await digest(source)
        await source.close()
        await destination.close()
        assert await src_proc.wait() == 0 and await dst_proc.wait() == 0


@pytest.mark.parametrize(("impl", "src_release", "dst_release"), CASES)
def test_reference_devices_cross_agents_as_data_frames(
    impl: str, src_release: str, dst_release: str, tmp_path: Path
) -> None:
    asyncio.run(_between(impl, src_release, dst_release, tmp_path))


async def _truncated(tmp: Path) -> None:
    from devmig.migration import HandoffError, data_header

    async with serving("acme-nic/3.0.0", tmp / "dst.sock", *_args("acme-nic", tmp, "dst")) as proc:
        destination = await VfioUserClient.connect(str(tmp / "dst.sock"), strict=True)
        chunks = [data_header(4) + b"junk", b""]
        with pytest.raises((HandoffError, VfioUserError)):
            await receive_backend_data(destination, lambda: asyncio.sleep(0, chunks.pop(0)))
        await destination.close()
        assert await proc.wait() == 0


def test_a_source_that_stops_before_end_fails_the_destination(tmp_path: Path) -> None:
    asyncio.run(_truncated(tmp_path))
