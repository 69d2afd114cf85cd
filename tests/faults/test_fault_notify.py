"""Outages around the notification service: its mail relay and the audit log go down and come
back; every message still arrives, and arrives once."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from cdx.v1 import notify_pb2
from notify import store
from notify.service import RetryPolicy
from tests.integration.consent_env import SOCIAL
from tests.integration.notify_env import POPULATION_SERVICE, NotifyEnv, start_notify_env
from tests.waiting import eventually

AN = "079090000001"
FIELDS = ["full_name", "birth_date"]
#: Retries every few hundred milliseconds, and never gives up during the test.
PATIENT = RetryPolicy(base_s=0.2, max_s=0.5, max_attempts=1000, lease_s=5.0, jitter=0.0)


def test_smtp_down_then_back_delivers_each_message_once(tmp_path: Path) -> None:
    env = start_notify_env(tmp_path, retry=PATIENT)
    try:
        address = "an.nguyen@example.vn"
        service = env.notify.service
        env.sink.stop()  # the mail relay is down
        env.set_preferences(AN, [notify_pb2.EVERY_ACCESS], email=address)
        env.query(SOCIAL, POPULATION_SERVICE, AN, FIELDS)
        env.query(SOCIAL, POPULATION_SERVICE, AN, ["full_name"])  # a second exchange

        def retried() -> bool:
            rows = service.dead_letters() + _pending(env)
            return len(rows) == 2 and all(r.attempts >= 2 for r in rows)

        eventually(retried, what="both messages retried while the relay is down")
        assert service.counts()["sent"] == 0
        env.sink.start()  # back, on the same port
        assert env.sink.wait_for(2, to=address)
        eventually(lambda: service.counts()["sent"] == 2, what="both marked sent")
        assert service.counts() == {"pending": 0, "sent": 2, "dead": 0}
        assert len(env.sink.messages(to=address)) == 2  # each once
        ids = {m.message["Message-ID"] for m in env.sink.messages(to=address)}
        assert len(ids) == 2
    finally:
        env.close()


def test_audit_log_down_then_back_loses_no_notification(tmp_path: Path) -> None:
    env = start_notify_env(tmp_path)
    try:
        address = "an.nguyen@example.vn"
        env.set_preferences(AN, [notify_pb2.EVERY_ACCESS], email=address)
        env.query(SOCIAL, POPULATION_SERVICE, AN, FIELDS)
        assert env.sink.wait_for(1, to=address)
        env.stack.audit.stop()  # the log and its entry feed are gone
        env.query(SOCIAL, POPULATION_SERVICE, AN, ["full_name"])  # waits in the outboxes
        env.stack.start_audit()
        assert env.sink.wait_for(2, to=address, timeout=30)
        follower = env.notify.follower
        assert follower is not None
        eventually(follower.connected.is_set, what="the feed caught up again")
        size = env.stack.audit.store.tree_state().size
        eventually(lambda: env.notify.service.cursor() >= size - 1, what="every entry examined")
        assert len(env.sink.messages(to=address)) == 2
    finally:
        env.close()


def _pending(env: NotifyEnv) -> list[store.OutboxRow]:
    service = env.notify.service
    with service.engine.connect() as conn:
        rows = conn.execute(sa.select(store.outbox).where(store.outbox.c.state == store.PENDING))
        return [store.outbox_row(r) for r in rows]
