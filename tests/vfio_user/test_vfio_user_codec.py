"""The sans-IO codec: every command's round trip, VERSION's rules, truncation, padding, NO_REPLY."""

from __future__ import annotations

import json

import pytest
from vfio_wire import deliver, events, pair, raw, round_trip

from devmig.vfio_user import (
    UNMAP_ALL,
    UNMAP_GET_DIRTY_BITMAP,
    Capabilities,
    Closed,
    Command,
    Connection,
    ConnectionState,
    DeviceFeature,
    DeviceFeatureReply,
    DeviceGetInfo,
    DeviceInfo,
    DeviceReset,
    DmaMap,
    DmaRead,
    DmaReadReply,
    DmaUnmap,
    DmaUnmapReply,
    DmaWrite,
    DmaWriteReply,
    EmptyReply,
    ErrorReply,
    Feature,
    FeatureOp,
    GetIrqInfo,
    GetRegionInfo,
    GetRegionIoFds,
    IoFdEntry,
    IrqInfo,
    LoggingRange,
    LoggingReport,
    LoggingStart,
    MigDataRead,
    MigDataReadReply,
    MigDataWrite,
    RegionFlags,
    RegionInfo,
    RegionIoFds,
    RegionRead,
    RegionReadReply,
    RegionWrite,
    RegionWriteMulti,
    RegionWriteMultiReply,
    RegionWriteReply,
    Reply,
    Request,
    Role,
    SetIrqs,
    SetIrqsFlags,
    SingleWrite,
    VersionReply,
    VersionRequest,
    feature_get,
    feature_probe,
    feature_set,
    pack_device_state,
    parse_device_state,
    parse_logging_report,
    parse_logging_start,
)


@pytest.mark.parametrize(("offered", "answered"), [(0, 0), (1, 1), (2, 2), (7, 2)])
def test_version_minor_is_min_of_clients_and_two(offered, answered):
    client = Connection(Role.CLIENT)
    server = Connection(Role.SERVER, Capabilities(max_msg_fds=8, migration_pgsize=4096))
    [request] = deliver(client.send_command(VersionRequest(0, offered)), server)
    [reply] = deliver(server.send_reply(request, server.version_reply(request)), client)
    assert isinstance(reply.body, VersionReply)
    assert (reply.body.major, reply.body.minor) == (0, answered)
    assert client.state is server.state is ConnectionState.READY


def test_version_reply_is_libvfio_users_json_with_its_nul():
    client = Connection(Role.CLIENT)
    server = Connection(Role.SERVER, Capabilities(max_msg_fds=8, migration_pgsize=4096))
    [request] = deliver(client.send_command(VersionRequest()), server)
    out = server.send_reply(request, server.version_reply(request))
    text = out.data[20:]
    assert text.endswith(b"\0")
    assert json.loads(text[:-1]) == {
        "capabilities": {
            "max_msg_fds": 8,
            "max_data_xfer_size": 1048576,
            "migration": {"pgsize": 4096},
        }
    }


def test_qemu_style_version_without_nul_and_with_unknown_keys_is_accepted():
    server = Connection(Role.SERVER)
    payload = (
        b"\0\0\0\0"
        + json.dumps({"capabilities": {"max_msg_fds": 16, "pgsizes": 4096, "x": 1}}).encode()
    )
    [request] = events_of(server, raw(1, 1, payload))
    assert isinstance(request, Request) and request.body.capabilities.max_msg_fds == 16


def events_of(conn, data, fds=()):
    conn.receive_data(data, fds)
    return events(conn)


def test_write_multiple_only_when_both_offer_it():
    client, server = pair(
        client_caps=Capabilities(write_multiple=True), server_caps=Capabilities(write_multiple=True)
    )
    assert client.write_multiple and server.write_multiple
    client, server = pair(client_caps=Capabilities(write_multiple=True))
    assert not client.write_multiple and not server.write_multiple


def _features():
    return [
        (
            feature_get(Feature.MIGRATION, reply_data=8),
            lambda r: DeviceFeatureReply(r.body.flags, b"\5" + bytes(7)),
        ),
        (
            feature_set(Feature.MIG_DEVICE_STATE, pack_device_state(3)),
            lambda r: DeviceFeatureReply(r.body.flags, r.body.data),
        ),
        (
            feature_probe(Feature.DMA_LOGGING_START, FeatureOp.SET),
            lambda r: DeviceFeatureReply(r.body.flags, r.body.data),
        ),
        (
            feature_set(
                Feature.DMA_LOGGING_START, LoggingStart(4096, (LoggingRange(0, 1 << 20),)).pack()
            ),
            lambda r: DeviceFeatureReply(r.body.flags, r.body.data),
        ),
        (
            feature_get(
                Feature.DMA_LOGGING_REPORT, LoggingReport(0, 1 << 20, 4096).pack(), reply_data=32
            ),
            lambda r: DeviceFeatureReply(r.body.flags, r.body.data + b"\xff" * 32),
        ),
    ]


ROUND_TRIPS = [
    (DmaMap(3, 0, 0x10000, 0x4000, fd=99), lambda r: EmptyReply()),
    (DmaMap(1, 0, 0x20000, 0x1000), lambda r: EmptyReply()),
    (DmaUnmap(0x10000, 0x4000), lambda r: DmaUnmapReply(0x10000, 0x4000)),
    (DmaUnmap(0, 0, UNMAP_ALL), lambda r: DmaUnmapReply(0, 0, UNMAP_ALL)),
    (
        DmaUnmap(0x10000, 0x4000, UNMAP_GET_DIRTY_BITMAP, 4096, 8),
        lambda r: DmaUnmapReply(0, 0, 1, b"\x05"),
    ),
    (DeviceGetInfo(), lambda r: DeviceInfo(3, 9, 5)),
    (GetRegionInfo(0), lambda r: RegionInfo(0, 3, 4096)),
    (
        GetRegionInfo(2, argsz=200),
        lambda r: RegionInfo(2, 7, 1 << 20, 0, ((0, 4096), (8192, 4096)), fd=42),
    ),
    (GetRegionIoFds(1), lambda r: RegionIoFds(1)),
    (GetRegionIoFds(1, argsz=100), lambda r: RegionIoFds(1, (IoFdEntry(0, 4, 0),), (7,))),
    (GetIrqInfo(2), lambda r: IrqInfo(2, 1, 1)),
    (
        SetIrqs(SetIrqsFlags.DATA_EVENTFD | SetIrqsFlags.ACTION_TRIGGER, 1, 0, 1, fds=(55,)),
        lambda r: EmptyReply(),
    ),
    (
        SetIrqs(SetIrqsFlags.DATA_BOOL | SetIrqsFlags.ACTION_TRIGGER, 0, 0, 2, b"\1\0"),
        lambda r: EmptyReply(),
    ),
    (
        SetIrqs(SetIrqsFlags.DATA_NONE | SetIrqsFlags.ACTION_TRIGGER, 1, 0, 0),
        lambda r: EmptyReply(),
    ),
    (RegionRead(0, 0x10, 4), lambda r: RegionReadReply(b"\x86\x80\x34\x12")),
    (RegionWrite(1, 8, b"abcd"), lambda r: RegionWriteReply()),
    (DeviceReset(), lambda r: EmptyReply()),
    (MigDataRead(64), lambda r: MigDataReadReply(b"DVMG")),
    (MigDataWrite(b"DVMG" * 3), lambda r: EmptyReply()),
    *_features(),
]


@pytest.mark.parametrize(("body", "answer"), ROUND_TRIPS, ids=lambda v: type(v).__name__)
def test_every_client_command_round_trips_in_strict_mode(body, answer):
    client, server = pair()
    request, reply = round_trip(client, server, body, answer)
    assert request.body == body
    assert isinstance(reply, Reply) and reply.request == body
    assert reply.body == answer(request) or isinstance(
        reply.body, RegionInfo | RegionIoFds | DmaUnmapReply
    )


def test_region_info_with_caps_and_fd_when_argsz_is_large_enough():
    client, server = pair()
    info = RegionInfo(
        2, RegionFlags.READ | RegionFlags.WRITE | RegionFlags.MMAP, 1 << 20, 0, ((0, 4096),), fd=42
    )
    _, reply = round_trip(client, server, GetRegionInfo(2, argsz=200), lambda r: info)
    assert reply.body.sparse_areas == ((0, 4096),) and reply.body.fd == 42
    assert reply.body.argsz == 32 + 16 + 16


def test_region_info_truncated_to_argsz_leaves_caps_and_fd_out_and_says_the_full_size():
    client, server = pair()
    info = RegionInfo(2, RegionFlags.READ | RegionFlags.MMAP, 1 << 20, 0, ((0, 4096),), fd=42)
    [request] = deliver(client.send_command(GetRegionInfo(2, argsz=32)), server)
    out = server.send_reply(request, info)
    assert len(out.data) == 16 + 32 and out.fds == ()
    [reply] = deliver(out, client)
    assert reply.body.argsz == 64 and reply.body.sparse_areas == () and reply.body.fd is None
    assert reply.body.flags & RegionFlags.MMAP


def test_region_info_truncation_between_struct_and_full_size_pads_with_zeros():
    client, server = pair()
    info = RegionInfo(
        2, RegionFlags.READ | RegionFlags.MMAP, 1 << 20, 0, ((0, 4096), (8192, 4096)), fd=42
    )
    [request] = deliver(client.send_command(GetRegionInfo(2, argsz=40)), server)
    out = server.send_reply(request, info)
    assert len(out.data) == 16 + 40 and out.data[16 + 32 :] == bytes(8) and out.fds == ()
    [reply] = deliver(out, client)
    assert reply.body.argsz == 32 + 16 + 32


def test_mig_data_read_reply_is_padded_to_the_requested_size():
    client, server = pair()
    [request] = deliver(client.send_command(MigDataRead(1000)), server)
    out = server.send_reply(request, MigDataReadReply(b"x" * 10))
    assert len(out.data) + sum(len(t) for t in out.tail) == 16 + 8 + 1000
    assert out.data[16:24] == (18).to_bytes(4, "little") + (10).to_bytes(4, "little")
    [reply] = deliver(out, client)
    assert reply.body.data == b"x" * 10


def test_region_write_multi_when_negotiated():
    caps = Capabilities(write_multiple=True)
    client, server = pair(client_caps=caps, server_caps=caps)
    body = RegionWriteMulti((SingleWrite(0, 4, b"\1\2\3\4"), SingleWrite(1, 0, b"\xff")))
    request, reply = round_trip(client, server, body, lambda r: RegionWriteMultiReply(2))
    assert request.body == body and reply.body == RegionWriteMultiReply(2)


@pytest.mark.parametrize(
    ("body", "answer"),
    [
        (DmaRead(0x1000, 8), lambda r: DmaReadReply(b"12345678")),
        (DmaWrite(0x1000, b"done"), lambda r: DmaWriteReply()),
    ],
)
def test_server_to_client_dma_commands(body, answer):
    client, server = pair()
    [request] = deliver(server.send_command(body), client)
    assert request.body == body
    [reply] = deliver(client.send_reply(request, answer(request)), server)
    assert reply.body == answer(request)


def test_no_reply_commands_are_never_answered():
    client, server = pair()
    [request] = deliver(client.send_command(RegionWrite(0, 0, b"abcd"), no_reply=True), server)
    assert request.no_reply
    assert server.send_reply(request, RegionWriteReply()) is None
    assert server.send_error(request, 22) is None
    [rejected] = events_of(server, raw(9, 10, b"short", flags=0x10))
    assert server.send_error(rejected) is None
    assert client.pending == 0


def test_pipelined_commands_are_answered_in_order():
    client, server = pair()
    outs = [client.send_command(RegionRead(0, i * 4, 4)) for i in range(3)]
    server.receive_data(b"".join(o.data for o in outs))
    requests = events(server)
    assert [r.body.offset for r in requests] == [0, 4, 8]
    data = b"".join(server.send_reply(r, RegionReadReply(bytes(4))).data for r in requests)
    client.receive_data(data)
    assert [r.request.offset for r in events(client)] == [0, 4, 8]


def test_error_reply_reaches_the_client_with_its_errno():
    client, server = pair()
    [request] = deliver(client.send_command(MigDataRead(8)), server)
    [reply] = deliver(server.send_error(request, 22), client)
    assert reply.body == ErrorReply(22) and reply.cmd is Command.MIG_DATA_READ


def test_feature_data_helpers():
    assert parse_device_state(pack_device_state(6)) == 6
    start = LoggingStart(4096, (LoggingRange(0x1000, 0x2000),))
    assert parse_logging_start(start.pack()) == start
    report = LoggingReport(0, 1 << 20, 4096)
    assert parse_logging_report(report.pack()) == report and report.pages == 256
    assert DeviceFeature(Feature.MIGRATION | FeatureOp.GET).feature == Feature.MIGRATION


def test_end_of_file_is_closed_and_returns_unclaimed_fds():
    _client, server = pair()
    server.receive_data(raw(1, 9)[:10], (5, 6))
    server.receive_data(b"")
    [closed] = events(server)
    assert isinstance(closed, Closed) and closed.fds == (5, 6) and closed.truncated


def test_a_large_message_is_read_straight_into_its_own_buffer():
    client, server = pair()
    data = bytes(range(256)) * 1024  # 256 KiB: above LARGE_MESSAGE
    out = client.send_command(MigDataWrite(data))
    wire = out.data
    server.receive_data(wire[:100])
    assert events(server) == []
    view = server.get_buffer()
    assert view is not None and len(view) == len(wire) - 100  # exactly the rest of this message
    view[:1000] = wire[100:1100]
    server.buffer_updated(1000)
    rest = server.get_buffer()
    rest[:] = wire[1100:]
    server.buffer_updated(len(rest))
    assert server.get_buffer() is None
    [request] = events(server)
    assert request.body == MigDataWrite(data)
    deliver(server.send_reply(request, EmptyReply()), client)
    # a large reply arriving by receive_data also works, with the next message behind it
    [request2] = deliver(client.send_command(MigDataRead(300_000)), server)
    reply = server.send_reply(request2, MigDataReadReply(data))
    tail = b"".join(bytes(t) for t in reply.tail)
    follow = server.send_reply(
        *deliver(client.send_command(DeviceGetInfo()), server), DeviceInfo(3, 9, 5)
    )
    client.receive_data(reply.data + tail + follow.data)
    got = events(client)
    assert got[0].body.data == data and got[1].body == DeviceInfo(3, 9, 5)
