"""Checks on a raw TCP socket shared by the tests that poke at an agent's ports.

This folder is on ``sys.path`` (``pythonpath`` in ``[tool.pytest.ini_options]``), so tests import
it by its bare, unique name.
"""

from __future__ import annotations

import socket
import time


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the peer closed ``sock`` (EOF or reset) within ``seconds`` (reading whatever it sent)."""
    sock.settimeout(0.1)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if sock.recv(4096) == b"":
                return True
        except TimeoutError:
            continue
        except ConnectionError:
            return True
    return False


def trickle_closed(sock: socket.socket, count: int = 40, gap: float = 0.25) -> bool:
    """Send one byte every ``gap`` seconds (``count`` at most); whether the peer closed ``sock`` meanwhile."""
    for _ in range(count):
        try:
            sock.sendall(b"D")
        except OSError:
            return True
        if closed_within(sock, gap):
            return True
    return False
