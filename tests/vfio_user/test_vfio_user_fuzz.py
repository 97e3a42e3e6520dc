"""Fuzz the server's decoder: any bytes and descriptor counts → messages or a protocol error.

Two properties. (1) Arbitrary chunks with arbitrary descriptors, then end of
file: no exception escapes, every descriptor comes back exactly once (in a
request body, a rejected message or the close) unless a fatal framing error
ended the connection, and every answerable rejection frames an error reply.
(2) Arbitrary *framed* messages (any command, flags and payload) between a
valid VERSION and a valid DEVICE_GET_INFO: the server answers that last
message — garbage never desynchronises it.
"""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vfio_wire import raw

from devmig.vfio_user import (
    NEED_DATA,
    Capabilities,
    Closed,
    Connection,
    ConnectionState,
    DeviceGetInfo,
    DmaMap,
    Rejected,
    Request,
    Role,
    SetIrqs,
    VersionRequest,
)

chunks = st.lists(
    st.tuples(st.binary(max_size=200), st.integers(0, 3)),
    max_size=12,
)


def _fds_of(event) -> tuple[int, ...]:
    if isinstance(event, Rejected | Closed):
        return event.fds
    body = event.body
    if isinstance(body, DmaMap):
        return () if body.fd is None else (body.fd,)
    if isinstance(body, SetIrqs):
        return body.fds
    return ()


def _drive(server: Connection, parts) -> tuple[list, list[int], bool]:
    sent: list[int] = []
    seen: list = []
    fatal = False
    next_fd = 100
    for data, nfds in parts:
        fds = tuple(range(next_fd, next_fd + nfds))
        next_fd += nfds
        if not data and not fds:
            continue
        server.receive_data(data, fds)
        sent += fds
        while (event := server.next_event()) is not NEED_DATA:
            seen.append(event)
            if isinstance(event, Request) and isinstance(event.body, VersionRequest):
                server.send_reply(event, server.version_reply(event))
            if isinstance(event, Rejected):
                out = server.send_error(event)
                assert (out is None) == (not event.answer)
                fatal = fatal or event.fatal
            if isinstance(event, Closed) or fatal:
                break
    return seen, sent, fatal


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parts=chunks, version_first=st.booleans(), xfer=st.sampled_from([256, 1 << 20]))
def test_any_bytes_and_fds(parts, version_first, xfer):
    # with 1 MiB transfers a declared size from 64 KiB up is gathered in a buffer of its own
    server = Connection(Role.SERVER, Capabilities(max_msg_fds=4, max_data_xfer_size=xfer))
    if version_first:
        parts = [(raw(0, 1, b"\0\0\2\0"), 0), *parts]
    seen, sent, fatal = _drive(server, [*parts, (b"", 0)] if parts else [(b"", 0)])
    if not fatal:
        server.receive_data(b"")
        while (event := server.next_event()) is not NEED_DATA:
            seen.append(event)
            if isinstance(event, Closed):
                break
        assert isinstance(seen[-1], Closed)
        returned = [fd for e in seen for fd in _fds_of(e)]
        assert sorted(returned) == sorted(sent)
    else:
        assert server.state is ConnectionState.ERROR


framed = st.lists(
    st.tuples(
        st.integers(0, 0xFFFF),
        st.integers(0, 40),
        st.sampled_from([0, 0, 0x10, 1, 0x21, 7]),
        st.binary(max_size=80),
        st.integers(0, 2),
    ),
    max_size=10,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages=framed)
def test_the_next_valid_message_is_answered_after_any_framed_garbage(messages):
    server = Connection(Role.SERVER, Capabilities(max_msg_fds=4, max_data_xfer_size=256))
    client = Connection(Role.CLIENT)
    version = client.send_command(VersionRequest())
    parts = [(version.data, 0)]
    parts += [
        (raw(mid, cmd, payload, flags=flags), nfds) for mid, cmd, flags, payload, nfds in messages
    ]
    parts.append((raw(4242, 4, struct.pack("<IIII", 16, 0, 0, 0)), 0))
    seen, _, fatal = _drive(server, parts)
    assert not fatal
    last = seen[-1]
    assert (
        isinstance(last, Request) and last.msg_id == 4242 and isinstance(last.body, DeviceGetInfo)
    )
