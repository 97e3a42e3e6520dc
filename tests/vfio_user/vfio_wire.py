"""A fake wire for vfio-user connections: two sans-IO sides, bytes and fds moved by hand."""

from __future__ import annotations

import struct

from devmig.vfio_user import (
    NEED_DATA,
    Capabilities,
    Connection,
    Event,
    Outgoing,
    Request,
    Role,
    VersionRequest,
)

HEADER = struct.Struct("<HHIII")


def events(conn: Connection) -> list[Event]:
    out: list[Event] = []
    while True:
        event = conn.next_event()
        if event is NEED_DATA:
            return out
        out.append(event)  # type: ignore[arg-type]
        if conn.state.value == "closed":
            return out


def deliver(out: Outgoing | None, to: Connection) -> list[Event]:
    assert out is not None
    to.receive_data(out.data + b"".join(bytes(t) for t in out.tail), out.fds)
    return events(to)


def raw(
    msg_id: int, cmd: int, payload: bytes = b"", flags: int = 0, size: int | None = None
) -> bytes:
    return HEADER.pack(msg_id, cmd, 16 + len(payload) if size is None else size, flags, 0) + payload


def pair(
    *,
    strict: bool = True,
    server_caps: Capabilities | None = None,
    client_caps: Capabilities | None = None,
) -> tuple[Connection, Connection]:
    """A client and a server past VERSION."""
    client = Connection(Role.CLIENT, client_caps or Capabilities(max_msg_fds=8), strict=strict)
    server = Connection(
        Role.SERVER, server_caps or Capabilities(max_msg_fds=8, migration_pgsize=4096)
    )
    [request] = deliver(client.send_command(VersionRequest(0, 2, client.capabilities)), server)
    assert isinstance(request, Request)
    [_reply] = deliver(server.send_reply(request, server.version_reply(request)), client)
    return client, server


def round_trip(client: Connection, server: Connection, body, answer) -> tuple[Request, Event]:  # type: ignore[no-untyped-def]
    """Send ``body`` from the client; the server answers ``answer(request)``; return both ends' views."""
    [request] = deliver(client.send_command(body), server)
    assert isinstance(request, Request), request
    [reply] = deliver(server.send_reply(request, answer(request)), client)
    return request, reply
