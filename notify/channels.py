"""Sends one message by e-mail (SMTP) or to the national app's webhook; maps every failure to
``DeliveryUnavailableError`` (try again later) or ``DeliveryRefusedError`` (never again).

- **E-mail**: ``smtplib`` to the configured relay (STARTTLS and login when configured). The
  ``Message-ID`` is derived from the delivery's idempotency key, so a message sent again after
  a crash between the relay's acceptance and the outbox's commit is recognisably the same one.
  A 5xx reply is a refusal for good; a 4xx reply, a dropped connection or a timeout is retried.
- **Webhook**: an HTTPS POST of a JSON body signed per Standard Webhooks (``notify.webhook``),
  ``webhook-id`` = the idempotency key, no redirects followed. 2xx is delivered; 408, 425, 429
  and 5xx are retried; any other status is a refusal for good.

Neither ever logs an address or a message body.
"""

from __future__ import annotations

import json
import re
import smtplib
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.header import Header
from email.mime.text import MIMEText
from email.utils import format_datetime, formataddr
from typing import Protocol

import httpx2

from cdx import crypto, errors
from notify import webhook

RETRY_STATUS = frozenset({408, 425, 429})
_BREAKS = re.compile(r"[\r\n\x00\u0085\u2028\u2029]")


@dataclass(frozen=True)
class Delivery:
    """One message to send (opened from the outbox)."""

    id: int
    delivery_key: str
    channel: str
    address: str = field(repr=False)
    subject: str
    text: str = field(repr=False)
    link: str
    language: str
    category: str
    entry_index: int
    event_time_ms: int


class Sender(Protocol):
    """A channel: ``send`` returns when the far end has taken the message."""

    def send(self, delivery: Delivery) -> None:
        """Raises DeliveryUnavailableError (retry) or DeliveryRefusedError (give up)."""
        ...


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    sender: str
    sender_name: str = "CDX"
    starttls: bool = False
    username: str = ""
    password: crypto.Secret[str] | None = None
    timeout: float = 10.0


class SmtpSender:
    """E-mail through an SMTP relay."""

    def __init__(self, settings: SmtpSettings) -> None:
        self._s = settings

    def message(self, delivery: Delivery) -> MIMEText:
        """The message as sent. Headers are encoded as RFC 2047 words by ``email.header``
        (the newer folding drops the space between two encoded words: Vietnamese subjects
        lost spaces), so a line break in any header value is refused here, before anything
        is built.

        Raises:
            DeliveryRefusedError: a header value holds a line break.
        """
        s = self._s
        if any(_BREAKS.search(v) for v in (delivery.address, delivery.subject, s.sender)):
            raise errors.DeliveryRefusedError("the message would not be a valid e-mail")
        msg = MIMEText(delivery.text, "plain", "utf-8")
        msg["From"] = formataddr((s.sender_name, s.sender))
        msg["To"] = delivery.address
        msg["Subject"] = Header(delivery.subject, "utf-8")  # type: ignore[assignment]
        msg["Date"] = format_datetime(datetime.now(UTC))
        msg["Message-ID"] = f"<{delivery.delivery_key}@notify.cdx>"
        msg["Auto-Submitted"] = "auto-generated"
        msg["Content-Language"] = delivery.language
        return msg

    def send(self, delivery: Delivery) -> None:
        msg = self.message(delivery)
        s = self._s
        try:
            with smtplib.SMTP(s.host, s.port, timeout=s.timeout) as smtp:
                if s.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if s.username and s.password is not None:
                    smtp.login(s.username, s.password.reveal())
                smtp.send_message(msg, from_addr=s.sender, to_addrs=[delivery.address])
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            if codes and all(code >= 500 for code in codes):
                raise errors.DeliveryRefusedError("the mail server refused the address") from exc
            raise errors.DeliveryUnavailableError("the mail server deferred the message") from exc
        except smtplib.SMTPResponseException as exc:
            if exc.smtp_code >= 500:
                raise errors.DeliveryRefusedError(
                    f"the mail server refused the message ({exc.smtp_code})"
                ) from exc
            raise errors.DeliveryUnavailableError(
                f"the mail server deferred the message ({exc.smtp_code})"
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise errors.DeliveryUnavailableError("the mail server cannot be reached") from exc


@dataclass(frozen=True)
class WebhookSettings:
    url: str
    secret: bytes = field(repr=False)
    timeout: float = 10.0


class WebhookSender:
    """Signed POSTs to the national app's webhook."""

    def __init__(self, settings: WebhookSettings, clock: Callable[[], float] = time.time) -> None:
        self._s = settings
        self._clock = clock
        self._client = httpx2.Client(timeout=settings.timeout, follow_redirects=False)

    def body(self, delivery: Delivery) -> bytes:
        occurred = datetime.fromtimestamp(delivery.event_time_ms / 1000, tz=UTC)
        document = {
            "type": "cdx.notification",
            "id": delivery.delivery_key,
            "recipient": delivery.address,
            "category": delivery.category,
            "language": delivery.language,
            "title": delivery.subject,
            "text": delivery.text,
            "link": delivery.link,
            "entry_index": delivery.entry_index,
            "occurred_at": occurred.isoformat().replace("+00:00", "Z"),
        }
        return json.dumps(document, ensure_ascii=False, sort_keys=True).encode()

    def send(self, delivery: Delivery) -> None:
        body = self.body(delivery)
        head = webhook.headers(self._s.secret, delivery.delivery_key, int(self._clock()), body)
        try:
            response = self._client.post(self._s.url, content=body, headers=head)
        except httpx2.HTTPError as exc:
            raise errors.DeliveryUnavailableError("the webhook cannot be reached") from exc
        status = response.status_code
        if 200 <= status < 300:
            return
        if status in RETRY_STATUS or status >= 500:
            raise errors.DeliveryUnavailableError(f"the webhook answered HTTP {status}")
        raise errors.DeliveryRefusedError(f"the webhook refused the message (HTTP {status})")

    def close(self) -> None:
        self._client.close()
