"""Ports for a server a test starts as another process, when the test must name the address
before the server runs (an operator's flow: ``cdx consent init --listen HOST:PORT``).

``reserved_port()`` binds port 0 in the test process (so the kernel picks a free port), with
``SO_REUSEPORT`` and without listening, and holds it: no other process can take the port,
while the server given it binds it too (gRPC servers set ``SO_REUSEPORT``). Until that server
listens, connections to the port are refused. Servers the test starts itself bind port 0 and
report the port they got instead; this is only for addresses that must be known first.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator


@contextlib.contextmanager
def reserved_port(host: str = "127.0.0.1") -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, 0))
        yield int(sock.getsockname()[1])
