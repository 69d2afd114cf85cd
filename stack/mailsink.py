"""A local SMTP server that keeps what it receives: the e-mail end of a single-box instance.

``cdx demo`` and ``cdx up`` (without an SMTP relay configured) start one on loopback so that the
notification service has somewhere real to deliver; the messages are kept in memory and, with
a ``folder``, written there as ``.eml`` files (mode 0600: they are addressed to people). Tests
and benchmarks use the same sink, and can make it refuse an address (a 550 reply) or stop and
start it again on the same port (an outage).
"""

from __future__ import annotations

import email
import email.policy
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from cdx.files import make_private_dir, write_atomically


@dataclass(frozen=True)
class ReceivedMail:
    """One message as the sink received it."""

    recipients: tuple[str, ...]
    message: EmailMessage = field(repr=False)
    raw: bytes = field(repr=False)
    received_at: float

    @property
    def subject(self) -> str:
        return str(self.message["Subject"] or "")

    @property
    def text(self) -> str:
        body = self.message.get_body(("plain",))
        return str(body.get_content()) if body is not None else ""


class _Handler:
    def __init__(self, sink: MailSink) -> None:
        self._sink = sink

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self._sink.refuses(address):
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = bytes(envelope.content)
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self._sink.received(ReceivedMail(tuple(envelope.rcpt_tos), message, raw, time.time()))
        return "250 OK"


class _Controller(Controller):
    """aiosmtpd's controller, able to bind port 0 (it connects to its own port once started)."""

    def _trigger_server(self) -> None:
        sockets = self.server.sockets  # type: ignore[union-attr]
        self.port = sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


class MailSink:
    """An SMTP server on ``host:port`` (port 0: a free one) keeping every message."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        folder: Path | None = None,
        on_mail: Callable[[ReceivedMail], None] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self._folder = folder
        self.on_mail = on_mail
        self._controller: _Controller | None = None
        self._cond = threading.Condition()
        self._mail: list[ReceivedMail] = []
        self._refused: set[str] = set()

    def start(self) -> MailSink:
        # A loaded machine may take a while to start the loop thread: wait up to 30 s.
        controller = _Controller(
            _Handler(self), hostname=self.host, port=self.port, ready_timeout=30.0
        )
        controller.start()
        self._controller = controller
        self.port = controller.port
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def refuse(self, address: str) -> None:
        """Answer ``550`` to this recipient from now on."""
        self._refused.add(address.lower())

    def refuses(self, address: str) -> bool:
        return address.lower() in self._refused

    def received(self, mail: ReceivedMail) -> None:
        with self._cond:
            self._mail.append(mail)
            n = len(self._mail)
            self._cond.notify_all()
        if self._folder is not None:
            make_private_dir(self._folder)
            write_atomically(self._folder / f"{int(mail.received_at * 1000)}-{n}.eml", mail.raw)
        if self.on_mail is not None:
            self.on_mail(mail)

    def messages(self, to: str | None = None) -> list[ReceivedMail]:
        """What arrived (for one recipient when ``to`` is given), oldest first."""
        with self._cond:
            mail = list(self._mail)
        if to is None:
            return mail
        return [m for m in mail if to.lower() in (r.lower() for r in m.recipients)]

    def wait_for(self, count: int, *, to: str | None = None, timeout: float = 15.0) -> bool:
        """Whether ``count`` messages (to ``to``) arrived within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.messages(to)) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True
