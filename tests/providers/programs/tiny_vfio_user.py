"""A tiny vfio-user backend with no migration information (no devmig imports: a third party's).

``tiny_vfio_user.py --socket-path=PATH [--flavour=X]``: binds PATH, serves
one connection (VERSION; every other command is refused with ENOTSUP),
exits when it closes, removing its socket. It does not know
``--print-migration-info-json``: it would start serving, which is why an
agent must never probe it (declare it opaque).
"""

import errno
import json
import os
import socket
import struct
import sys

HEADER = struct.Struct("<HHIII")


def main() -> int:
    path = next(a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--socket-path="))
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    conn, _ = listener.accept()
    listener.close()
    buffer = b""
    try:
        while True:
            data = conn.recv(65536)
            if not data:
                return 0
            buffer += data
            while len(buffer) >= HEADER.size:
                msg_id, cmd, size, _flags, _err = HEADER.unpack_from(buffer)
                if len(buffer) < size:
                    break
                body, buffer = buffer[HEADER.size : size], buffer[size:]
                if cmd == 1:  # VERSION: 0.min(client's, 2), the smallest capabilities
                    _major, minor = struct.unpack_from("<HH", body)
                    caps = {"capabilities": {"max_msg_fds": 8, "max_data_xfer_size": 1 << 20}}
                    payload = (
                        struct.pack("<HH", 0, min(minor, 2)) + json.dumps(caps).encode() + b"\0"
                    )
                    conn.sendall(
                        HEADER.pack(msg_id, cmd, HEADER.size + len(payload), 1, 0) + payload
                    )
                else:
                    conn.sendall(HEADER.pack(msg_id, cmd, HEADER.size, 1 | 0x20, errno.ENOTSUP))
    finally:
        conn.close()
        os.unlink(path)


if __name__ == "__main__":
    sys.exit(main())
