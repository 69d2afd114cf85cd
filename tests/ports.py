"""An address nothing listens on, for tests of a server that is not there.

``closed_address()`` binds port 0 (the kernel picks a free port) without listening, and holds
it: connections are refused, and no other process can take the port while the test runs.
Servers a test starts bind port 0 themselves and report the port they got.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator


@contextlib.contextmanager
def closed_address(host: str = "127.0.0.1") -> Iterator[str]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        yield f"{host}:{sock.getsockname()[1]}"
