"""The notification service's use cases: preferences, turning log entries into queued messages,
and the outbox's bookkeeping (claim, delivered, failed, dead letters).

- **Preferences** are a citizen's own: stored under the keyed tag of their national id,
  sealed (addresses are personal data), checked on the way in (``notify.addresses``).
- **Ingest**: for each entry the audit log names a citizen in (``AuditEntryFeed``), the
  citizen's current choices decide whether and where to tell; one message per chosen channel,
  rendered now in their language, queued under its idempotency key (event x channel x
  address: ``INSERT`` ignoring duplicates). The cursor moves in the same transaction, so a
  crash replays entries whose messages were not committed and never queues one twice.
- **Delivery**: a sender claims due messages for a lease (another replica skips them); a
  success marks the message sent; a temporary failure schedules the next attempt with
  exponential backoff and jitter; a refusal for good, or the last allowed attempt, makes it
  a dead letter, kept for operators (``cdx notify dead-letters``, ``requeue``).
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from cdx import db, errors
from cdx.clock import Clock, utcnow
from cdx.globalconf import VerifiedGlobalConf, to_ms
from cdx.v1 import audit_pb2
from notify import store
from notify.addresses import check_app_handle, check_email
from notify.channels import Delivery
from notify.messages import DEFAULT_TIMEZONE, render
from notify.model import LANGUAGES, Category, Preferences, event_of
from notify.sealing import Sealer
from notify.store import DEAD, PENDING, SENT, OutboxRow

log = logging.getLogger(__name__)

MAX_DEAD_LETTERS_PER_READ = 1000


@dataclass(frozen=True)
class RetryPolicy:
    """When to try a message again, and when to give up."""

    base_s: float = 2.0
    max_s: float = 600.0
    max_attempts: int = 8
    lease_s: float = 60.0
    jitter: float = 0.2

    def delay_s(self, attempts: int) -> float:
        """Seconds before attempt ``attempts + 1`` (``attempts`` made so far, >= 1)."""
        delay: float = min(self.max_s, self.base_s * 2.0 ** max(attempts - 1, 0))
        return delay * (1.0 + random.uniform(-self.jitter, self.jitter))


#: The policy of a service that is given none.
DEFAULT_RETRY = RetryPolicy()


@dataclass(frozen=True)
class Notice:
    """An entry of the audit log and the citizen it is about (from the entry feed)."""

    index: int
    subject: str
    entry: audit_pb2.LogEntry


def _record(entry: audit_pb2.LogEntry) -> audit_pb2.AccessRecord | None:
    try:
        record: audit_pb2.AccessRecord = audit_pb2.AccessRecord.FromString(entry.record.record)
    except Exception:  # a record that does not parse tells nobody anything
        return None
    return record


def _prefs_json(p: Preferences) -> str:
    return json.dumps(
        {
            "categories": sorted(c.value for c in p.categories),
            "email": p.email,
            "app_handle": p.app_handle,
            "language": p.language,
        },
        sort_keys=True,
    )


def _prefs_from_json(text: str, version: int) -> Preferences:
    obj = json.loads(text)
    return Preferences(
        categories=frozenset(Category(c) for c in obj["categories"]),
        email=obj["email"],
        app_handle=obj["app_handle"],
        language=obj["language"],
        version=version,
    )


class NotifyService:
    """The notification service's behaviour over its database."""

    def __init__(
        self,
        engine: Engine,
        sealer: Sealer,
        conf: Callable[[], VerifiedGlobalConf],
        *,
        portal_url: str,
        clock: Clock = utcnow,
        retry: RetryPolicy = DEFAULT_RETRY,
        timezone: str = DEFAULT_TIMEZONE,
        on_queued: Callable[[], None] | None = None,
    ) -> None:
        self.engine = engine
        self._writer = db.writer(engine)
        self._sealer = sealer
        self._conf = conf
        self.portal_url = portal_url
        self._clock = clock
        self.retry = retry
        self._timezone = timezone
        self.on_queued = on_queued

    def now_ms(self) -> int:
        return to_ms(self._clock())

    # --- preferences ---------------------------------------------------------------------------

    def _load(self, conn: sa.Connection, tag: str) -> Preferences:
        row = conn.execute(
            sa.select(store.preferences.c.sealed, store.preferences.c.version).where(
                store.preferences.c.subject_tag == tag
            )
        ).one_or_none()
        if row is None:
            return Preferences()
        plain = self._sealer.open("notify_preferences", tag, row.sealed)
        return _prefs_from_json(plain, int(row.version))

    def preferences(self, subject: str) -> Preferences:
        """The citizen's choices (nothing chosen: empty preferences)."""
        with self.engine.connect() as conn:
            return self._load(conn, self._sealer.subject_tag(subject))

    def set_preferences(
        self,
        subject: str,
        categories: Iterable[Category],
        *,
        email: str,
        app_handle: str,
        language: str,
    ) -> Preferences:
        """Replace the citizen's choices; returns them as stored.

        Raises:
            InvalidAddressError: an address CDX will not send to.
            InvalidArgumentError: an unknown language.
        """
        if language not in LANGUAGES:
            raise errors.InvalidArgumentError("language must be en or vi")
        chosen = Preferences(
            categories=frozenset(categories),
            email=check_email(email) if email else "",
            app_handle=check_app_handle(app_handle) if app_handle else "",
            language=language,
        )
        tag = self._sealer.subject_tag(subject)
        now = self.now_ms()
        with self._writer.begin() as conn:
            current = conn.execute(
                sa.select(store.preferences.c.version).where(store.preferences.c.subject_tag == tag)
            ).scalar_one_or_none()
            version = int(current or 0) + 1
            sealed = self._sealer.seal("notify_preferences", tag, _prefs_json(chosen))
            if current is None:
                conn.execute(
                    store.preferences.insert().values(
                        subject_tag=tag, sealed=sealed, version=version, updated_at_ms=now
                    )
                )
            else:
                conn.execute(
                    store.preferences.update()
                    .where(store.preferences.c.subject_tag == tag)
                    .values(sealed=sealed, version=version, updated_at_ms=now)
                )
        return Preferences(
            chosen.categories, chosen.email, chosen.app_handle, chosen.language, version
        )

    # --- entries in, messages queued -----------------------------------------------------------

    def cursor(self) -> int:
        """The last audit-log index examined (-1: none)."""
        with self.engine.connect() as conn:
            return store.read_cursor(conn)

    def ingest(self, notices: Sequence[Notice], scanned_to: int) -> int:
        """Queue the messages ``notices`` call for and move the cursor to ``scanned_to``, in
        one transaction; returns how many messages were queued (duplicates not counted)."""
        try:
            conf: VerifiedGlobalConf | None = self._conf()
        except errors.CdxError:
            conf = None  # names fall back to identifiers; the message still goes out
        now = self.now_ms()
        queued = 0
        with self._writer.begin() as conn:
            at = store.read_cursor(conn)
            for notice in notices:
                if notice.index <= at:
                    continue  # already examined (a replay after reconnecting)
                record = _record(notice.entry)
                event = event_of(notice.index, record) if record is not None else None
                if event is None:
                    continue
                prefs = self._load(conn, self._sealer.subject_tag(notice.subject))
                if not prefs.wants(event):
                    continue
                message = render(
                    event,
                    language=prefs.language,
                    chosen=prefs.categories,
                    conf=conf,
                    portal_url=self.portal_url,
                    timezone=self._timezone,
                )
                for channel, address in prefs.addresses():
                    key = self._sealer.delivery_key(event.key, channel.value, address)
                    payload = json.dumps(
                        {
                            "address": address,
                            "subject": message.subject,
                            "text": message.text,
                            "link": message.link,
                            "language": prefs.language,
                            "category": message.category.value,
                        },
                        ensure_ascii=False,
                    )
                    result = conn.execute(
                        store.insert_ignoring_duplicates(conn, store.outbox).values(
                            delivery_key=key,
                            channel=channel.value,
                            entry_index=notice.index,
                            payload=self._sealer.seal("notify_outbox", key, payload),
                            state=PENDING,
                            attempts=0,
                            next_attempt_ms=now,
                            lease_until_ms=0,
                            last_error="",
                            event_time_ms=event.time_ms,
                            created_at_ms=now,
                            sent_at_ms=None,
                        )
                    )
                    queued += max(result.rowcount, 0)
            if scanned_to > at:
                conn.execute(
                    store.cursor.update()
                    .where(store.cursor.c.id == 1)
                    .values(after_index=scanned_to, updated_at_ms=now)
                )
        if queued and self.on_queued is not None:
            self.on_queued()
        return queued

    # --- the outbox ----------------------------------------------------------------------------

    def claim(self, limit: int = 32) -> list[Delivery]:
        """Take up to ``limit`` due messages for ``retry.lease_s`` (oldest due first)."""
        now = self.now_ms()
        lease = now + int(self.retry.lease_s * 1000)
        claimed: list[Delivery] = []
        with self._writer.begin() as conn:
            rows = conn.execute(
                sa.select(store.outbox)
                .where(
                    store.outbox.c.state == PENDING,
                    store.outbox.c.next_attempt_ms <= now,
                    store.outbox.c.lease_until_ms <= now,
                )
                .order_by(store.outbox.c.next_attempt_ms, store.outbox.c.id)
                .limit(limit)
            ).all()
            for raw in rows:
                row = store.outbox_row(raw)
                taken = conn.execute(
                    store.outbox.update()
                    .where(
                        store.outbox.c.id == row.id,
                        store.outbox.c.state == PENDING,
                        store.outbox.c.lease_until_ms <= now,
                    )
                    .values(lease_until_ms=lease)
                ).rowcount
                if taken == 1:
                    claimed.append(self._delivery(row))
        return claimed

    def _delivery(self, row: OutboxRow) -> Delivery:
        payload = json.loads(self._sealer.open("notify_outbox", row.delivery_key, row.payload))
        return Delivery(
            id=row.id,
            delivery_key=row.delivery_key,
            channel=row.channel,
            address=payload["address"],
            subject=payload["subject"],
            text=payload["text"],
            link=payload["link"],
            language=payload["language"],
            category=payload["category"],
            entry_index=row.entry_index,
            event_time_ms=row.event_time_ms,
        )

    def delivered(self, delivery_id: int) -> None:
        with self._writer.begin() as conn:
            conn.execute(
                store.outbox.update()
                .where(store.outbox.c.id == delivery_id)
                .values(state=SENT, sent_at_ms=self.now_ms(), lease_until_ms=0, last_error="")
            )

    def failed(self, delivery_id: int, error: errors.CdxError) -> str:
        """Record a failed attempt; returns the message's new state (pending or dead)."""
        now = self.now_ms()
        permanent = not isinstance(error, errors.UnavailableError)
        with self._writer.begin() as conn:
            attempts = (
                int(
                    conn.execute(
                        sa.select(store.outbox.c.attempts).where(store.outbox.c.id == delivery_id)
                    ).scalar_one()
                )
                + 1
            )
            dead = permanent or attempts >= self.retry.max_attempts
            next_ms = now if dead else now + int(self.retry.delay_s(attempts) * 1000)
            conn.execute(
                store.outbox.update()
                .where(store.outbox.c.id == delivery_id)
                .values(
                    state=DEAD if dead else PENDING,
                    attempts=attempts,
                    next_attempt_ms=next_ms,
                    lease_until_ms=0,
                    last_error=error.code[:64],
                )
            )
        return DEAD if dead else PENDING

    def next_due_ms(self) -> int | None:
        """When the earliest pending message is due (``None``: nothing pending)."""
        with self.engine.connect() as conn:
            value = conn.execute(
                sa.select(
                    sa.func.min(
                        sa.func.max(store.outbox.c.next_attempt_ms, store.outbox.c.lease_until_ms)
                        if self.engine.dialect.name == "sqlite"
                        else sa.func.greatest(
                            store.outbox.c.next_attempt_ms, store.outbox.c.lease_until_ms
                        )
                    )
                ).where(store.outbox.c.state == PENDING)
            ).scalar_one_or_none()
        return int(value) if value is not None else None

    def counts(self) -> dict[str, int]:
        """Messages by state (pending, sent, dead)."""
        with self.engine.connect() as conn:
            return store.counts(conn)

    def dead_letters(self, after_id: int = 0, limit: int = 100) -> list[OutboxRow]:
        """Dead letters, oldest first (the payload stays sealed: operators see no address)."""
        limit = max(1, min(limit, MAX_DEAD_LETTERS_PER_READ))
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(store.outbox)
                .where(store.outbox.c.state == DEAD, store.outbox.c.id > after_id)
                .order_by(store.outbox.c.id)
                .limit(limit)
            )
            return [store.outbox_row(r) for r in rows]

    def requeue(self, ids: Sequence[int] | None = None) -> int:
        """Give dead letters (all of them when ``ids`` is ``None``) a fresh set of attempts."""
        query = store.outbox.update().where(store.outbox.c.state == DEAD)
        if ids is not None:
            query = query.where(store.outbox.c.id.in_(list(ids)))
        with self._writer.begin() as conn:
            n = conn.execute(
                query.values(state=PENDING, attempts=0, next_attempt_ms=self.now_ms())
            ).rowcount
        if n and self.on_queued is not None:
            self.on_queued()
        return int(n)
