"""Server-side sessions of the portal: the cookie holds only a random session id; what the
session holds (who is logged in, their ID token, the CSRF token, a login in progress) lives in
the portal's database, sealed with the portal's session key.

- The database keeps ``SHA-256(session id)``, never the id itself: reading the table does not
  give anyone a working cookie. The session data is sealed with AES-256-GCM (the session key,
  bound to that hash), because it holds personal data (the national id, the ID token).
- Logging in and out rotates the id (``rotate``): the old row is deleted, so a copy of the old
  cookie, taken before a logout or before a login, opens nothing afterwards.
- A session ends after ``idle`` without a request and ``lifetime`` after it began; expired and
  idle rows are purged as new sessions are made (at most once a minute), so visitors who never
  log in do not pile up.
- A row is written only when the session changed, or to slide the idle limit (at most every
  ``REFRESH_S``); a request that started before a logout and ends after it cannot bring the
  session back, because an update never recreates a deleted row.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cdx import crypto, db, errors

SESSION_AAD = b"cdx/portal-session/v2\n"
SECURE_COOKIE = "__Host-cdx_session"
INSECURE_COOKIE = "cdx_session"
REFRESH_S = 60
PURGE_EVERY_S = 60
_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_ROTATE = "_rotate"

metadata = sa.MetaData()
sessions_table = sa.Table(
    "portal_sessions",
    metadata,
    sa.Column("id_hash", sa.String(64), primary_key=True),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.Column("seen_at_ms", sa.BigInteger, nullable=False),
    sa.Column("expires_at_ms", sa.BigInteger, nullable=False, index=True),
    sa.Column("data", sa.LargeBinary, nullable=False),
)


@dataclass(frozen=True)
class StoredSession:
    created_at_ms: int
    seen_at_ms: int
    expires_at_ms: int
    sealed: bytes


class SessionStore(Protocol):
    """Where sessions live (``SqlSessionStore``; unit tests pass an in-memory fake)."""

    def load(self, id_hash: str) -> StoredSession | None: ...

    def create(self, id_hash: str, session: StoredSession) -> None: ...

    def update(self, id_hash: str, seen_at_ms: int, sealed: bytes) -> bool:
        """Rewrite an existing row; ``False`` when it is gone (never recreates it)."""
        ...

    def delete(self, id_hash: str) -> None: ...

    def purge(self, now_ms: int, idle_since_ms: int) -> int:
        """Delete every session whose absolute lifetime has ended or that was last seen
        before ``idle_since_ms``."""
        ...


class SqlSessionStore:
    """Sessions in the portal's database (SQLite by default, PostgreSQL in production)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @classmethod
    def open(cls, url: str, *, schema: str | None = None) -> SqlSessionStore:
        """Open (and migrate) the portal database at ``url``."""
        engine = db.create_engine(url, schema=schema, pool_size=5)
        db.migrate(engine, "portal")
        return cls(engine)

    def close(self) -> None:
        self._engine.dispose()

    def load(self, id_hash: str) -> StoredSession | None:
        t = sessions_table
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(t.c.created_at_ms, t.c.seen_at_ms, t.c.expires_at_ms, t.c.data).where(
                    t.c.id_hash == id_hash
                )
            ).first()
        if row is None:
            return None
        return StoredSession(int(row[0]), int(row[1]), int(row[2]), bytes(row[3]))

    def create(self, id_hash: str, session: StoredSession) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                sa.insert(sessions_table).values(
                    id_hash=id_hash,
                    created_at_ms=session.created_at_ms,
                    seen_at_ms=session.seen_at_ms,
                    expires_at_ms=session.expires_at_ms,
                    data=session.sealed,
                )
            )

    def update(self, id_hash: str, seen_at_ms: int, sealed: bytes) -> bool:
        t = sessions_table
        with self._engine.begin() as conn:
            result = conn.execute(
                sa.update(t)
                .where(t.c.id_hash == id_hash)
                .values(seen_at_ms=seen_at_ms, data=sealed)
            )
        return bool(result.rowcount)

    def delete(self, id_hash: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(sa.delete(sessions_table).where(sessions_table.c.id_hash == id_hash))

    def purge(self, now_ms: int, idle_since_ms: int) -> int:
        t = sessions_table
        with self._engine.begin() as conn:
            result = conn.execute(
                sa.delete(t).where(
                    sa.or_(t.c.expires_at_ms <= now_ms, t.c.seen_at_ms < idle_since_ms)
                )
            )
        return int(result.rowcount or 0)


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("ascii")).hexdigest()


def _well_formed(value: str | None) -> bool:
    return value is not None and len(value) == 43 and set(value) <= _ID_CHARS


def rotate(scope_session: dict[str, Any]) -> None:
    """Ask for a new session id when this response is sent (login and logout)."""
    scope_session[_ROTATE] = True


class ServerSessionMiddleware:
    """Keeps ``scope["session"]`` server-side, keyed by the session cookie."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        store: SessionStore,
        key: bytes,
        secure: bool,
        now_fn: Callable[[], datetime],
        idle: timedelta = timedelta(minutes=30),
        lifetime: timedelta = timedelta(hours=12),
    ) -> None:
        self.app = app
        self.store = store
        self.key = key
        self.secure = secure
        self.now_fn = now_fn
        self.idle_ms = int(idle.total_seconds() * 1000)
        self.lifetime_ms = int(lifetime.total_seconds() * 1000)
        self.cookie = SECURE_COOKIE if secure else INSECURE_COOKIE
        self._last_purge_ms = 0

    def _seal(self, id_hash: str, data: dict[str, Any]) -> bytes:
        plain = json.dumps(data, separators=(",", ":"), default=str).encode()
        return crypto.aead_seal(self.key, plain, SESSION_AAD + id_hash.encode())

    def _open(self, id_hash: str, sealed: bytes) -> dict[str, Any] | None:
        try:
            data = json.loads(crypto.aead_open(self.key, sealed, SESSION_AAD + id_hash.encode()))
        except (ValueError, errors.CdxError):
            return None  # sealed under another key (passphrase changed): start afresh
        return data if isinstance(data, dict) else None

    def _load(
        self, raw: str | None, now_ms: int
    ) -> tuple[str | None, StoredSession | None, dict[str, Any]]:
        if not _well_formed(raw):
            return None, None, {}
        assert raw is not None
        id_hash = _hash(raw)
        stored = self.store.load(id_hash)
        if stored is None:
            return None, None, {}
        if now_ms - stored.seen_at_ms > self.idle_ms or now_ms >= stored.expires_at_ms:
            self.store.delete(id_hash)
            return None, None, {}
        data = self._open(id_hash, stored.sealed)
        if data is None:
            self.store.delete(id_hash)
            return None, None, {}
        return id_hash, stored, data

    def _cookie(self, value: str, max_age: int) -> str:
        parts = [f"{self.cookie}={value}", "Path=/", f"Max-Age={max_age}", "HttpOnly"]
        parts.append("SameSite=Lax")
        if self.secure:
            parts.append("Secure")
        return "; ".join(parts)

    def _new(self, data: dict[str, Any], now_ms: int) -> str:
        if now_ms - self._last_purge_ms >= PURGE_EVERY_S * 1000:
            self._last_purge_ms = now_ms
            self.store.purge(now_ms, now_ms - self.idle_ms)
        session_id = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
        id_hash = _hash(session_id)
        self.store.create(
            id_hash,
            StoredSession(now_ms, now_ms, now_ms + self.lifetime_ms, self._seal(id_hash, data)),
        )
        return session_id

    def _save(
        self,
        raw: str | None,
        id_hash: str | None,
        stored: StoredSession | None,
        before: str,
        session: dict[str, Any],
        now_ms: int,
    ) -> str | None:
        """Persist ``session``; returns the Set-Cookie value to send, if any."""
        rotate_id = bool(session.pop(_ROTATE, False))
        changed = json.dumps(session, sort_keys=True, default=str) != before
        max_age = self.idle_ms // 1000
        if rotate_id and id_hash is not None:
            self.store.delete(id_hash)
            id_hash, stored = None, None
        if not session:
            return self._cookie("", 0) if id_hash is not None or rotate_id else None
        if id_hash is None or stored is None:
            return self._cookie(self._new(session, now_ms), max_age)
        due = changed or now_ms - stored.seen_at_ms >= REFRESH_S * 1000
        if due and self.store.update(id_hash, now_ms, self._seal(id_hash, session)) and raw:
            return self._cookie(raw, max_age)  # slide the cookie's idle limit too
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path", "").startswith("/static/"):
            await self.app(scope, receive, send)  # static files need no session
            return
        now_ms = int(self.now_fn().timestamp() * 1000)
        raw = HTTPConnection(scope).cookies.get(self.cookie)
        id_hash, stored, session = await run_in_threadpool(self._load, raw, now_ms)
        had_cookie = raw is not None
        before = json.dumps(session, sort_keys=True, default=str)
        scope["session"] = session

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                current: dict[str, Any] = scope["session"]
                cookie = await run_in_threadpool(
                    self._save, raw, id_hash, stored, before, current, now_ms
                )
                if cookie is None and had_cookie and id_hash is None and not current:
                    cookie = self._cookie("", 0)  # a stale or forged cookie: clear it
                if cookie is not None:
                    MutableHeaders(scope=message).append("set-cookie", cookie)
            await send(message)

        await self.app(scope, receive, send_with_cookie)
