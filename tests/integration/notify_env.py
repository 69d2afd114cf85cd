"""The notification service in a test instance, and what its tests share.

``start_notify_env(root)`` runs the sample instance of ``stack`` with the consent service, the
audit log and the notification service (its local mail sink, a fast retry policy), every
security server shipping its records to the log; optionally the portal (HTTPS) and a webhook
receiver. ``WebhookReceiver`` is a real HTTP server on loopback that records what it is sent
and answers with the status a test sets.
"""

from __future__ import annotations

import http.server
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cdx.v1 import notify_pb2
from notify.channels import WebhookSettings
from notify.server import RunningNotify
from notify.service import RetryPolicy
from stack.mailsink import MailSink
from tests.integration.consent_env import ConsentEnv, bearer, start_consent_env
from tests.integration.exchange_harness import HARNESS

#: Retries within a second, a dead letter after 4 attempts.
FAST_RETRY = RetryPolicy(base_s=0.2, max_s=1.0, max_attempts=4, lease_s=5.0, jitter=0.0)
POPULATION_SERVICE = "VN:GOV:BCA:population/person/v1"
PURPOSE = "SOCIAL_BENEFIT_ELIGIBILITY"
WEBHOOK_SECRET = bytes(range(32))


class WebhookReceiver:
    """An HTTP server on loopback recording every POST (headers, body); answers ``status``."""

    def __init__(self) -> None:
        self.status = 204
        self.received: list[tuple[dict[str, str], bytes]] = []
        self._cond = threading.Condition()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver._cond:
                    status = receiver.status
                    if 200 <= status < 300:
                        receiver.received.append((dict(self.headers.items()), body))
                    receiver._cond.notify_all()
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/cdx"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class NotifyEnv:
    consent_env: ConsentEnv
    webhook: WebhookReceiver | None = None
    _closers: list[Any] = field(default_factory=list, repr=False)

    @property
    def stack(self) -> Any:
        return self.consent_env.instance.stack

    @property
    def notify(self) -> RunningNotify:
        running: RunningNotify | None = self.stack.notify
        assert running is not None
        return running

    @property
    def sink(self) -> MailSink:
        sink: MailSink | None = self.stack.mail_sink
        assert sink is not None
        return sink

    def token(self, citizen: str) -> str:
        return self.consent_env.token(citizen)

    def set_preferences(
        self,
        citizen: str,
        categories: list[int],
        *,
        email: str = "",
        app_handle: str = "",
        language: str = "en",
    ) -> notify_pb2.NotifyPreferences:
        """Choose, as the citizen through the portal's relay."""
        request = notify_pb2.SetPreferencesRequest(
            preferences=notify_pb2.NotifyPreferences(
                categories=categories, email=email, app_handle=app_handle, language=language
            )
        )
        result: notify_pb2.NotifyPreferences = self.stack.citizen_notify().SetPreferences(
            request, metadata=bearer(self.token(citizen)), timeout=10
        )
        return result

    def query(self, agency: str, service: str, subject: str, fields: list[str], **kw: Any) -> Any:
        kw.setdefault("purpose", PURPOSE)
        return self.consent_env.instance.agency(agency).query(service, subject, fields=fields, **kw)

    def close(self) -> None:
        for close in reversed(self._closers):
            close()
        self.consent_env.close()


def start_notify_env(
    root: Path,
    *,
    portal: bool = False,
    webhook: bool = False,
    database: tuple[str, str | None] | None = None,
    retry: RetryPolicy = FAST_RETRY,
) -> NotifyEnv:
    receiver = WebhookReceiver() if webhook else None
    options = replace(
        HARNESS,
        audit=True,
        witnesses=False,
        portal=portal,
        portal_https=portal,
        checkpoint_interval=0.3,
        notify=True,
        notify_retry=retry,
        notify_database=database,
        notify_webhook=(
            WebhookSettings(receiver.url, WEBHOOK_SECRET, timeout=5.0) if receiver else None
        ),
    )
    try:
        consent_env = start_consent_env(root, start_servers=True, options=options)
    except BaseException:
        if receiver is not None:
            receiver.close()
        raise
    env = NotifyEnv(consent_env, receiver)
    if receiver is not None:
        env._closers.append(receiver.close)
    return env
