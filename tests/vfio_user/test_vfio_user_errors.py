"""Every malformed message gets the specification's error reply with an errno; strict replies."""

from __future__ import annotations

import errno
import struct

import pytest
from vfio_wire import deliver, events, pair, raw

from devmig.vfio_user import (
    Capabilities,
    Connection,
    ConnectionState,
    DeviceGetInfo,
    GetRegionInfo,
    MigDataRead,
    RegionRead,
    RegionReadReply,
    RegionWriteMulti,
    Rejected,
    Request,
    Role,
    SingleWrite,
    VersionRequest,
    VfioUserError,
)

Q = struct.Struct("<Q")
INFO = struct.Struct("<IIII")
REGION_INFO = struct.Struct("<IIIIQQ")
ACCESS = struct.Struct("<QII")

# (name, cmd, payload, fds, errno) — each sent to a server past VERSION
MALFORMED = [
    ("unknown command 99", 99, b"", (), errno.EINVAL),
    ("retired command 14", 14, b"\0" * 8, (), errno.EINVAL),
    ("DMA_READ sent to a server", 11, Q.pack(0) + Q.pack(4), (), errno.EINVAL),
    ("second VERSION", 1, b"\0\0\2\0", (), errno.EINVAL),
    ("DMA_MAP short", 2, b"\0" * 31, (), errno.EINVAL),
    ("DMA_MAP wrong argsz", 2, struct.pack("<IIQQQ", 24, 3, 0, 0, 4096), (), errno.EINVAL),
    ("DMA_MAP bad flags", 2, struct.pack("<IIQQQ", 32, 8, 0, 0, 4096), (), errno.EINVAL),
    ("DMA_MAP two fds", 2, struct.pack("<IIQQQ", 32, 3, 0, 0, 4096), (5, 6), errno.EINVAL),
    ("DMA_MAP empty", 2, struct.pack("<IIQQQ", 32, 3, 0, 0, 0), (), errno.EINVAL),
    ("DMA_UNMAP short", 3, b"\0" * 20, (), errno.EINVAL),
    ("DMA_UNMAP ALL with a range", 3, struct.pack("<IIQQ", 24, 2, 4096, 4096), (), errno.EINVAL),
    ("DMA_UNMAP both flags", 3, struct.pack("<IIQQ", 24, 3, 0, 0), (), errno.EINVAL),
    ("DMA_UNMAP bitmap missing", 3, struct.pack("<IIQQ", 40, 1, 0, 4096), (), errno.EINVAL),
    (
        "DMA_UNMAP bitmap argsz small",
        3,
        struct.pack("<IIQQQQ", 40, 1, 0, 4096, 4096, 8),
        (),
        errno.EINVAL,
    ),
    ("DMA_UNMAP with fd", 3, struct.pack("<IIQQ", 24, 0, 0, 4096), (7,), errno.EINVAL),
    ("GET_INFO argsz 8", 4, INFO.pack(8, 0, 0, 0), (), errno.EINVAL),
    ("GET_INFO short", 4, b"\0" * 12, (), errno.EINVAL),
    ("GET_INFO long", 4, INFO.pack(16, 0, 0, 0) + b"\0", (), errno.EINVAL),
    ("GET_INFO with fd", 4, INFO.pack(16, 0, 0, 0), (3,), errno.EINVAL),
    ("REGION_INFO argsz 16", 5, REGION_INFO.pack(16, 0, 0, 0, 0, 0), (), errno.EINVAL),
    ("REGION_IO_FDS flags", 6, INFO.pack(16, 1, 0, 0), (), errno.EINVAL),
    ("IRQ_INFO argsz", 7, INFO.pack(4, 0, 0, 0), (), errno.EINVAL),
    (
        "SET_IRQS two data types",
        8,
        struct.pack("<IIIII", 20, 1 | 4 | 0x20, 0, 0, 1),
        (),
        errno.EINVAL,
    ),
    ("SET_IRQS no action", 8, struct.pack("<IIIII", 20, 4, 0, 0, 1), (), errno.EINVAL),
    (
        "SET_IRQS eventfd count mismatch",
        8,
        struct.pack("<IIIII", 20, 4 | 0x20, 1, 0, 2),
        (9,),
        errno.EINVAL,
    ),
    (
        "SET_IRQS bool short",
        8,
        struct.pack("<IIIII", 22, 2 | 0x20, 0, 0, 3) + b"\1\1",
        (),
        errno.EINVAL,
    ),
    ("SET_IRQS fds with NONE", 8, struct.pack("<IIIII", 20, 1 | 0x20, 0, 0, 1), (9,), errno.EINVAL),
    ("REGION_READ short", 9, b"\0" * 15, (), errno.EINVAL),
    ("REGION_READ beyond xfer size", 9, ACCESS.pack(0, 0, (1 << 20) + 1), (), errno.E2BIG),
    ("REGION_WRITE count > data", 10, ACCESS.pack(0, 0, 8) + b"1234", (), errno.EINVAL),
    ("REGION_WRITE count < data", 10, ACCESS.pack(0, 0, 2) + b"1234", (), errno.EINVAL),
    ("REGION_WRITE with fd", 10, ACCESS.pack(0, 0, 4) + b"1234", (4,), errno.EINVAL),
    ("DEVICE_RESET with payload", 13, b"\0\0\0\0", (), errno.EINVAL),
    (
        "REGION_WRITE_MULTI not negotiated",
        15,
        Q.pack(1) + struct.pack("<QII8s", 0, 0, 4, b""),
        (),
        errno.EINVAL,
    ),
    ("DEVICE_FEATURE short", 16, b"\0" * 4, (), errno.EINVAL),
    ("DEVICE_FEATURE argsz 4", 16, struct.pack("<II", 4, 1 | 1 << 16), (), errno.EINVAL),
    ("DEVICE_FEATURE unknown op bits", 16, struct.pack("<II", 8, 1 | 1 << 20), (), errno.EINVAL),
    ("MIG_DATA_READ argsz small", 17, struct.pack("<II", 8, 64), (), errno.EINVAL),
    ("MIG_DATA_READ beyond xfer", 17, struct.pack("<II", 8 + (2 << 20), 2 << 20), (), errno.E2BIG),
    ("MIG_DATA_WRITE size mismatch", 18, struct.pack("<II", 12, 4) + b"12", (), errno.EINVAL),
    ("MIG_DATA_WRITE with fd", 18, struct.pack("<II", 12, 4) + b"1234", (8,), errno.EINVAL),
    ("message type 5", 4, INFO.pack(16, 0, 0, 0), (), errno.EINVAL),
]


@pytest.mark.parametrize(
    ("name", "cmd", "payload", "fds", "err"), MALFORMED, ids=[m[0] for m in MALFORMED]
)
def test_malformed_command_gets_an_error_reply_and_the_server_carries_on(
    name, cmd, payload, fds, err
):
    client, server = pair()
    flags = 5 if name == "message type 5" else 0
    server.receive_data(raw(77, cmd, payload, flags=flags), fds)
    [rejected] = events(server)
    assert isinstance(rejected, Rejected) and rejected.error.errno == err
    assert rejected.fds == fds and not rejected.fatal
    out = server.send_error(rejected)
    assert out is not None
    assert struct.unpack("<HHIII", out.data) == (77, cmd, 16, 0x21, err)
    [request] = deliver(client.send_command(DeviceGetInfo()), server)
    assert isinstance(request, Request)


def test_anything_before_version_is_refused_and_version_still_works():
    server = Connection(Role.SERVER)
    server.receive_data(raw(1, 4, INFO.pack(16, 0, 0, 0)))
    [rejected] = events(server)
    assert isinstance(rejected, Rejected) and server.state is ConnectionState.AWAIT_VERSION
    client = Connection(Role.CLIENT)
    [request] = deliver(client.send_command(VersionRequest()), server)
    assert isinstance(request, Request)


@pytest.mark.parametrize(
    ("payload", "fds"),
    [
        (b"\1\0\0\0", ()),  # major 1
        (b"\0\0", ()),  # short
        (b"\0\0\2\0{not json", ()),
        (b"\0\0\2\0[1]", ()),
        (b'\0\0\2\0{"capabilities": {"max_msg_fds": "8"}}', ()),
        (b'\0\0\2\0{"capabilities": {"migration": {"pgsize": 8192}}}', ()),
        (b'\0\0\2\0{"capabilities": {"twin_socket": {"supported": 1}}}', ()),
        (b"\0\0\2\0", (3,)),  # VERSION carries no descriptors
    ],
)
def test_bad_version_is_refused_with_einval(payload, fds):
    server = Connection(Role.SERVER)
    server.receive_data(raw(1, 1, payload), fds)
    [rejected] = events(server)
    assert isinstance(rejected, Rejected) and rejected.error.errno == errno.EINVAL
    assert server.state is ConnectionState.AWAIT_VERSION


def test_oversized_message_is_skipped_without_buffering_then_refused_with_e2big():
    client, server = pair()
    size = server.max_message_size + 100_000
    server.receive_data(raw(5, 10, size=size))
    chunk = bytes(65536)
    left = size - 16
    while left:
        n = min(left, len(chunk))
        server.receive_data(chunk[:n])
        got = events(server)
        assert len(server._buf) <= len(chunk)  # never the whole message
        left -= n
    [rejected] = got
    assert rejected.error.errno == errno.E2BIG and rejected.answer
    [request] = deliver(client.send_command(RegionRead(0, 0, 4)), server)
    assert isinstance(request, Request)


def test_header_smaller_than_itself_is_fatal():
    _, server = pair()
    server.receive_data(raw(3, 4, size=8), (11,))
    [rejected] = events(server)
    assert rejected.fatal and rejected.fds == (11,) and server.state is ConnectionState.ERROR


def test_stray_reply_at_a_server_is_dropped_without_an_answer():
    client, server = pair()
    server.receive_data(raw(3, 9, flags=1))
    [rejected] = events(server)
    assert not rejected.answer and server.send_error(rejected) is None
    deliver(client.send_command(DeviceGetInfo()), server)


def test_more_fds_than_max_msg_fds_are_refused():
    _client, server = pair(server_caps=Capabilities(max_msg_fds=1))
    server.receive_data(raw(3, 8, struct.pack("<IIIII", 20, 4 | 0x20, 1, 0, 2)), (1, 2))
    [rejected] = events(server)
    assert rejected.error.errno == errno.EINVAL and rejected.fds == (1, 2)


def test_fds_belong_to_the_message_holding_the_chunks_last_byte():
    _client, server = pair()
    first = raw(1, 4, INFO.pack(16, 0, 0, 0))
    second = raw(2, 2, struct.pack("<IIQQQ", 32, 3, 0, 0x1000, 4096))
    server.receive_data(first)
    server.receive_data(second[:20], (42,))
    server.receive_data(second[20:])
    info, dma = events(server)
    assert isinstance(info.body, DeviceGetInfo) and dma.body.fd == 42


# -- the client's side ----------------------------------------------------------------


def _reply(client, body, payload, *, msg_id=None, cmd=None, flags=1, error_no=0, fds=()):
    out = client.send_command(body)
    header = struct.pack(
        "<HHIII",
        out.msg_id if msg_id is None else msg_id,
        cmd or body.cmd,
        16 + len(payload),
        flags,
        error_no,
    )
    client.receive_data(header + payload, fds)
    return client.next_event()


STRICT_VIOLATIONS = [
    ("wrong msg_id", RegionRead(0, 0, 4), ACCESS.pack(0, 0, 4) + b"1234", {"msg_id": 999}),
    ("wrong cmd", RegionRead(0, 0, 4), ACCESS.pack(0, 0, 4) + b"1234", {"cmd": 10}),
    ("short read data", RegionRead(0, 0, 4), ACCESS.pack(0, 0, 4) + b"12", {}),
    ("extra read data", RegionRead(0, 0, 4), ACCESS.pack(0, 0, 4) + b"12345", {}),
    ("read echo", RegionRead(0, 0, 4), ACCESS.pack(8, 0, 4) + b"1234", {}),
    ("error errno 0", RegionRead(0, 0, 4), b"", {"flags": 0x21, "error_no": 0}),
    ("error errno 5000", RegionRead(0, 0, 4), b"", {"flags": 0x21, "error_no": 5000}),
    ("error with payload", RegionRead(0, 0, 4), b"xx", {"flags": 0x21, "error_no": 22}),
    ("fd on a read reply", RegionRead(0, 0, 4), ACCESS.pack(0, 0, 4) + b"1234", {"fds": (3,)}),
    ("unpadded mig data", MigDataRead(64), struct.pack("<II", 12, 4) + b"DVMG", {}),
    ("mig data argsz", MigDataRead(4), struct.pack("<II", 8, 4) + b"DVMG", {}),
    ("info size", DeviceGetInfo(), INFO.pack(16, 3, 9, 5) + b"\0", {}),
    (
        "region info size",
        GetRegionInfo(0, argsz=64),
        REGION_INFO.pack(32, 3, 0, 0, 4096, 0) + bytes(8),
        {},
    ),
    ("region info index", GetRegionInfo(0), REGION_INFO.pack(32, 3, 1, 0, 4096, 0), {}),
]


@pytest.mark.parametrize(
    ("name", "body", "payload", "kw"), STRICT_VIOLATIONS, ids=[v[0] for v in STRICT_VIOLATIONS]
)
def test_strict_client_enforces_libvfio_users_reply_rules(name, body, payload, kw):
    client, _ = pair(strict=True)
    with pytest.raises(VfioUserError) as info:
        _reply(client, body, payload, **kw)
    assert info.value.code == "VFIO_USER_STRICT"
    assert client.state is ConnectionState.ERROR


def test_lax_client_accepts_an_unpadded_mig_data_reply():
    client, _ = pair(strict=False)
    reply = _reply(client, MigDataRead(64), struct.pack("<II", 12, 4) + b"DVMG")
    assert reply.body.data == b"DVMG"


def test_client_refuses_to_send_beyond_the_servers_limits():
    client, _ = pair(server_caps=Capabilities(max_data_xfer_size=4096))
    with pytest.raises(VfioUserError) as info:
        client.send_command(RegionRead(0, 0, 8192))
    assert info.value.errno == errno.E2BIG
    with pytest.raises(VfioUserError):
        client.send_command(RegionWriteMulti((SingleWrite(0, 0, b"1"),)))
    with pytest.raises(VfioUserError):
        Connection(Role.CLIENT).send_command(DeviceGetInfo())  # VERSION first


def test_client_reads_a_region_read_reply_in_pieces():
    client, server = pair()
    [request] = deliver(client.send_command(RegionRead(0, 0, 4)), server)
    data = server.send_reply(request, RegionReadReply(b"abcd")).data
    for i in range(len(data)):
        client.receive_data(data[i : i + 1])
        got = events(client)
    assert got[0].body.data == b"abcd"
