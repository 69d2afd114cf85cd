"""The one way CDX serves HTTP: an ASGI app (Starlette) run by uvicorn in a background thread,
on a socket bound before it starts (port 0 picks a free port and the bound one is read back),
optionally with TLS from key files.

The portal, the development OpenID provider, the audit log's tile server and tlog-witnesses
all start this way, in tests, ``cdx up`` and their ``serve`` commands.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import uvicorn

from cdx import errors

START_TIMEOUT_S = 10.0


@dataclass
class RunningWebServer:
    """A started server: ``url`` to reach it, ``stop()`` to end it, ``wait()`` to block on it."""

    url: str
    _server: uvicorn.Server = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def stop(self, timeout: float = 5.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():  # open keep-alive connections: close them too
            self._server.force_exit = True
            self._thread.join(timeout)

    def wait(self) -> None:
        """Block until the server stops (``serve`` commands)."""
        while self._thread.is_alive():
            self._thread.join(0.5)

    def __enter__(self) -> RunningWebServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def split_listen(listen: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) to a pair.

    Raises:
        InvalidArgumentError: not ``host:port`` with a port in 0..65535.
    """
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise errors.InvalidArgumentError("listen address must be HOST:PORT")
    return host.strip("[]"), int(port)


def serve(
    app: Any,
    listen: str,
    *,
    name: str,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    tls_key_password: str | None = None,
    log_level: str = "warning",
) -> RunningWebServer:
    """Serve ``app`` on ``listen`` and wait until it accepts connections; HTTPS when a
    certificate and key file are given.

    Raises:
        InvalidArgumentError: a malformed ``listen`` address.
        UnavailableError: the address cannot be bound or the server did not start.
    """
    host, port = split_listen(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise errors.UnavailableError(f"cannot listen on {listen}") from exc
    sock.listen(128)
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level=log_level,
        lifespan="off",
        server_header=False,
        proxy_headers=False,
        ssl_certfile=tls_cert,
        ssl_keyfile=tls_key,
        ssl_keyfile_password=tls_key_password,
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=name, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise errors.UnavailableError(f"{name} did not start on {listen}")
        time.sleep(0.01)
    scheme = "https" if tls_cert else "http"
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    return RunningWebServer(f"{scheme}://{shown}:{bound_port}", server, thread)
