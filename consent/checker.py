"""The provider security server's consent checker: asks the service, caches, follows changes.

``CachedConsentChecker`` implements ``cdx.lawful.ConsentChecker`` (DESIGN §7):

- it calls ``ConsentCheck.CheckConsent`` over mutual TLS with the security server's auth
  certificate (the consent service answers only for services the server hosts);
- it caches decisions, allow and deny, keyed by (subject, client, service, purpose, fields,
  consent id). An allow under a consent that counts uses (``max_uses``) is never cached: every
  such request goes to the service, which spends the use atomically;
- a background thread follows ``WatchChanges`` (a server-streaming push, not polling) and, the
  moment a change arrives, drops every entry that relied on the changed consent and every
  denial for its grantee (which a new or resumed consent may turn into an allow), so a
  revocation stops access here within milliseconds. A decision fetched while a change that
  affects it arrived is not cached (by the same rule), so a stale answer can never outlive the
  change that made it stale;
- the cache is trusted only while the feed is connected and an entry is younger than ``ttl``
  (time-based changes such as a consent starting later are bounded by it; entries age by the
  ``monotonic`` clock the checker is given); an allow is never served past its consent's end
  of validity;
- when the consent service is unreachable, an entry younger than ``ttl`` is still served;
  otherwise ``ConsentUnavailableError`` (the provider then denies: fail closed). The feed
  reconnects with exponential backoff and resumes after the last position it saw, so no
  change is missed across a reconnect.

The cache never logs or exposes its keys (they hold national ids).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import grpc

from cdx import errors, rpc, telemetry
from cdx.consentpolicy import deny_error
from cdx.lawful import ConsentGrant
from cdx.v1 import consent_pb2, consent_pb2_grpc

log = logging.getLogger(__name__)

CacheKey = tuple[str, str, str, str, tuple[str, ...], str]

#: Errors that mean "could not get an answer" (fall back to a fresh cached decision).
_UNREACHABLE = (errors.UnavailableError, errors.DeadlineExceededError)


@dataclass(frozen=True)
class CacheEntry:
    """One cached decision: the grant (or the denial's code) and what may invalidate it."""

    grant: ConsentGrant | None  # None = denied
    deny_code: str
    consent_id: str
    valid_until: datetime | None
    stored_at: float  # the checker's monotonic clock
    decided_at: int  # feed position the service decided at: later changes may overtake it

    def affected_by(self, seq: int, consent_id: str, grantee: str, client: str) -> bool:
        """Whether change ``seq`` (of ``consent_id``, granted to ``grantee``) may alter this
        decision for ``client``: it came after the decision, and either the decision relied
        on that consent or it was a denial for that grantee (a new or resumed consent may
        allow it)."""
        if seq <= self.decided_at:
            return False
        return consent_id == self.consent_id or (self.grant is None and grantee == client)

    def fresh(self, mono: float, ttl: float, now: datetime) -> bool:
        if mono - self.stored_at >= ttl:
            return False
        return self.valid_until is None or now < self.valid_until

    def result(self) -> ConsentGrant:
        if self.grant is not None:
            return self.grant
        error = deny_error(self.deny_code)
        error.consent_id = self.consent_id  # type: ignore[attr-defined]
        raise error


class CachedConsentChecker:
    """A ``ConsentChecker`` backed by the consent service, a decision cache and its change feed.

    ``identity`` is the security server's auth certificate and key; ``ca_pem`` the instance CA
    (defaults to ``identity.ca_pem``); ``monotonic`` the clock cache entries age by (seconds;
    tests pass one they move). Call ``close()`` when done.
    """

    def __init__(
        self,
        address: str,
        identity: rpc.TlsIdentity,
        ca_pem: bytes | None = None,
        *,
        ttl: timedelta = timedelta(seconds=30),
        call_timeout: float = 2.0,
        stale_stream_after: float = 10.0,
        max_entries: int = 100_000,
        server_name: str | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._monotonic = monotonic
        self._ttl = ttl.total_seconds()
        self._timeout = call_timeout
        self._stale_after = stale_stream_after
        self._max_entries = max_entries
        tls = rpc.TlsIdentity(identity.cert_pem, identity.key_pem, ca_pem or identity.ca_pem)
        self._channel = rpc.secure_channel(address, tls, server_name=server_name)
        self._stub = consent_pb2_grpc.ConsentCheckStub(self._channel)
        self._lock = threading.Lock()
        self._cache: dict[CacheKey, CacheEntry] = {}
        self._denies_by_client: dict[str, set[CacheKey]] = {}
        self._by_consent: dict[str, set[CacheKey]] = {}
        # The most recent changes (seq, consent id, grantee): a decision fetched while a change
        # that affects it arrived is not cached (see ``_still_current``).
        self._recent: deque[tuple[int, str, str]] = deque()
        self._recent_limit = 4096
        self._forgotten_seq = 0  # highest seq that fell out of ``_recent``
        self._epoch = 0  # bumped when the whole cache is dropped
        self._position = 0
        self._positioned = False  # a stream has told us the feed position at least once
        self._connected = threading.Event()
        self._closed = threading.Event()
        self._call: grpc.Call | None = None
        self._last_message = time.monotonic()  # the feed's silence is real time, not cache age
        self.hits = 0
        self.misses = 0
        self.changes_seen = 0
        self._watcher = threading.Thread(target=self._watch, name="consent-feed", daemon=True)
        self._watchdog = threading.Thread(
            target=self._guard, name="consent-feed-watchdog", daemon=True
        )
        self._watcher.start()
        self._watchdog.start()

    # --- the ConsentChecker protocol -----------------------------------------------------------

    def check(
        self,
        *,
        subject: str,
        client: str,
        service: str,
        purpose: str,
        fields: Sequence[str],
        consent_id: str | None,
        now: datetime,
    ) -> ConsentGrant:
        """Decide one request (see the module docstring).

        Raises:
            ConsentDeniedError (or a subclass naming the reason): no active consent covers it.
            ConsentUnavailableError: the service is unreachable and no fresh decision is cached.
        """
        key: CacheKey = (
            subject,
            client,
            service,
            purpose,
            tuple(sorted(set(fields))),
            consent_id or "",
        )
        mono = self._monotonic()
        with self._lock:
            entry = self._cache.get(key)
            epoch = self._epoch
            if entry is not None and self._connected.is_set() and entry.fresh(mono, self._ttl, now):
                self.hits += 1
                hit: CacheEntry | None = entry
            else:
                self.misses += 1
                hit = None
        telemetry.metrics().consent_cache(hit=hit is not None)
        telemetry.annotate("consent_cache", "hit" if hit is not None else "miss")
        if hit is not None:
            return hit.result()
        request = consent_pb2.CheckConsentRequest(
            subject=subject,
            client=client,
            service=service,
            purpose=purpose,
            fields=list(key[4]),
            consent_id=consent_id or "",
            record_use=True,
            partial_fields=True,
        )
        try:
            response = rpc.invoke(self._stub.CheckConsent, request, timeout=self._timeout)
        except (*_UNREACHABLE, errors.ConfExpiredError) as exc:
            if entry is not None and entry.fresh(self._monotonic(), self._ttl, now):
                return entry.result()
            raise errors.ConsentUnavailableError() from exc
        fetched = self._entry(response)
        if response.allowed and response.limited:
            return fetched.result()  # counted uses: never served from the cache
        with self._lock:
            if epoch == self._epoch and self._still_current(client, fetched):
                self._store(key, fetched)
        return fetched.result()

    # --- cache ---------------------------------------------------------------------------------

    def _entry(self, response: consent_pb2.CheckConsentResponse) -> CacheEntry:
        stored = self._monotonic()
        if response.allowed:
            until = (
                datetime.fromtimestamp(response.valid_until_ms / 1000, tz=UTC)
                if response.valid_until_ms
                else None
            )
            grant = ConsentGrant(response.consent_id, frozenset(response.allowed_fields))
            return CacheEntry(grant, "", response.consent_id, until, stored, response.version)
        return CacheEntry(
            None, response.deny_code, response.consent_id, None, stored, response.version
        )

    def _still_current(self, client: str, entry: CacheEntry) -> bool:
        """Whether no change already seen overtakes ``entry`` (called with the lock held)."""
        if self._forgotten_seq > entry.decided_at:
            return False  # changes after the decision fell out of the ring: cannot tell
        for seq, consent_id, grantee in reversed(self._recent):
            if seq <= entry.decided_at:
                break
            if entry.affected_by(seq, consent_id, grantee, client):
                return False
        return True

    def _store(self, key: CacheKey, entry: CacheEntry) -> None:
        if key not in self._cache and len(self._cache) >= self._max_entries:
            self._drop(next(iter(self._cache)))
        self._cache[key] = entry
        if entry.grant is None:
            self._denies_by_client.setdefault(key[1], set()).add(key)
        if entry.consent_id:
            self._by_consent.setdefault(entry.consent_id, set()).add(key)

    def _drop(self, key: CacheKey) -> None:
        entry = self._cache.pop(key, None)
        if entry is None:
            return
        keys = self._denies_by_client.get(key[1])
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._denies_by_client[key[1]]
        if entry.consent_id:
            keys = self._by_consent.get(entry.consent_id)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_consent[entry.consent_id]

    def _invalidate(self, change: consent_pb2.ConsentChange) -> None:
        # A change of consent X (granted to G) can turn any of G's denials into an allow (a new
        # or resumed consent) and any decision that relied on X into something else. An allow
        # that relied on another consent stays right: X cannot withdraw it (at worst X would
        # now cover more fields, and the entry keeps the narrower answer until its TTL).
        # Decisions taken after the change (at a later feed position) already reflect it.
        with self._lock:
            candidates = set(self._denies_by_client.get(change.grantee, ()))
            candidates |= self._by_consent.get(change.consent_id, set())
            for key in candidates:
                entry = self._cache.get(key)
                if entry is not None and entry.affected_by(
                    change.seq, change.consent_id, change.grantee, key[1]
                ):
                    self._drop(key)
            if len(self._recent) >= self._recent_limit:
                self._forgotten_seq = self._recent.popleft()[0]
            self._recent.append((change.seq, change.consent_id, change.grantee))
            self._position = max(self._position, change.seq)
            self.changes_seen += 1

    def clear(self) -> None:
        """Drop every cached decision."""
        with self._lock:
            self._cache.clear()
            self._denies_by_client.clear()
            self._by_consent.clear()
            self._epoch += 1

    def __len__(self) -> int:
        with self._lock:
            return len(self._cache)

    # --- change feed ---------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether the change feed is connected and caught up (the cache is trusted)."""
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def _watch(self) -> None:
        backoff = 0.05
        while not self._closed.is_set():
            try:
                with self._lock:
                    position = self._position
                # Once a stream told us where the feed stood (even at 0), resume from there:
                # a change made while we were away must reach the cache.
                call = self._stub.WatchChanges(
                    consent_pb2.WatchChangesRequest(after_seq=position, resume=self._positioned)
                )
                self._call = call
                self._last_message = time.monotonic()
                for change in call:
                    self._last_message = time.monotonic()
                    if change.heartbeat:
                        self._caught_up(change.seq)
                        backoff = 0.05
                    else:
                        self._invalidate(change)
            except grpc.RpcError as exc:
                if not self._closed.is_set():
                    log.warning("consent change feed interrupted: %s", exc.code())
            except Exception:  # keep following: the next attempt starts from the last position
                log.exception("consent change feed failed")
            finally:
                self._connected.clear()
                self._call = None
            if self._closed.wait(backoff):
                return
            backoff = min(backoff * 2, 2.0)

    def _caught_up(self, seq: int) -> None:
        self._positioned = True
        with self._lock:
            went_back = seq < self._position
            self._position = seq
            if went_back:  # the service lost history (restored database): start afresh
                self._recent.clear()
                self._forgotten_seq = 0
        if went_back:
            self.clear()
        self._connected.set()

    def _guard(self) -> None:
        while not self._closed.wait(1.0):
            call = self._call
            if call is not None and time.monotonic() - self._last_message > self._stale_after:
                log.warning("consent change feed silent for too long; reconnecting")
                call.cancel()

    def close(self) -> None:
        """Stop following changes and close the channel."""
        self._closed.set()
        call = self._call
        if call is not None:
            call.cancel()
        self._channel.close()
        self._watcher.join(timeout=5)
        self._watchdog.join(timeout=5)
        self._connected.clear()
