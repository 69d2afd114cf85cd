"""Keeps a security server's global configuration current: polls the registry, verifies every
copy against the anchor, keeps the last good copy on disk, and fails closed when it expires.

- ``refresh()`` asks ``GetGlobalConfiguration(if_newer_than_version=<ours>)`` over mutual TLS
  and accepts the answer only if ``verify_global_conf(raw, anchor, now, last=<ours>)`` does:
  a wrong signature, another instance, a rollback or an expired copy is refused with its own
  error and the previous copy stays in force.
- Every accepted copy is written atomically (temp file, fsync, rename, fsync of the directory)
  to ``path`` (``globalconf.bin``), and loaded again at start, re-verified (an expired copy is
  kept, as the version floor and for ``age``, but ``current()`` refuses it).
- ``current(now)`` raises ``ConfExpiredError`` once the copy expired: callers must stop serving.
- ``start()`` runs a polling thread; ``on_update(callback)`` is told of every new version.

``fetch_global_conf`` is the one-shot variant for commands that need the configuration once.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import grpc

from cdx import errors, rpc
from cdx.clock import Clock, utcnow
from cdx.files import write_atomically
from cdx.globalconf import Anchor, VerifiedGlobalConf, verify_global_conf
from cdx.v1 import registry_pb2, registry_pb2_grpc

__all__ = [
    "DEFAULT_POLL_INTERVAL",
    "ConfClient",
    "UpdateListener",
    "fetch_global_conf",
]

log = logging.getLogger(__name__)

DEFAULT_POLL_INTERVAL = timedelta(seconds=30)
UpdateListener = Callable[[VerifiedGlobalConf], None]


def fetch_global_conf(
    address: str,
    identity: rpc.TlsIdentity,
    anchor: Anchor,
    now: datetime,
    *,
    timeout: float = 10.0,
) -> VerifiedGlobalConf:
    """Fetch the current global configuration once and verify it against ``anchor``.

    Raises:
        UnavailableError / DeadlineExceededError: the registry cannot be reached.
        ConfSignatureError / ConfWrongInstanceError / ConfExpiredError / MalformedError: the
            answer does not verify.
    """
    channel = rpc.secure_channel(address, identity)
    try:
        response = rpc.invoke(
            registry_pb2_grpc.GlobalConfServiceStub(channel).GetGlobalConfiguration,
            registry_pb2.GetGlobalConfRequest(),
            timeout=timeout,
        )
    finally:
        channel.close()
    return verify_global_conf(response.conf.SerializeToString(), anchor, now)


class ConfClient:
    """The global configuration of one security server, kept fresh from the registry.

    ``address``/``identity``: the registry and this server's mTLS identity (auth certificate).
    ``anchor``: the installed trust root. ``path``: where the last good copy lives.
    """

    def __init__(
        self,
        address: str,
        identity: rpc.TlsIdentity,
        anchor: Anchor,
        path: str | os.PathLike[str],
        *,
        now_fn: Clock = utcnow,
        poll_interval: timedelta = DEFAULT_POLL_INTERVAL,
        timeout: float = 10.0,
        server_name: str | None = None,
    ) -> None:
        self._address = address
        self._identity = identity
        self._anchor = anchor
        self._path = Path(path)
        self._now = now_fn
        self._poll_seconds = max(poll_interval.total_seconds(), 0.05)
        self._timeout = timeout
        self._server_name = server_name
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._conf: VerifiedGlobalConf | None = None
        self._listeners: list[UpdateListener] = []
        self._channel: grpc.Channel | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: errors.CdxError | None = None
        self.last_success: datetime | None = None
        self._load_from_disk()

    # --- state ---------------------------------------------------------------------------------

    def _load_from_disk(self) -> None:
        try:
            raw = self._path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            log.warning(
                "cannot read the stored global configuration %s: %s", self._path, exc.strerror
            )
            return
        try:
            # An expired copy is still worth keeping: it is the version floor (no rollback to
            # anything older after a restart) and tells the operator how stale we are.
            self._conf = verify_global_conf(raw, self._anchor, self._now(), allow_expired=True)
        except errors.CdxError as exc:
            # A copy that no longer verifies (new anchor, corruption) is ignored, not trusted.
            log.warning(
                "ignoring the stored global configuration %s: %s (it no longer verifies)",
                self._path,
                exc.code,
            )
            self.last_error = exc

    @property
    def path(self) -> Path:
        return self._path

    @property
    def version(self) -> int:
        """Version of the copy held (0 when none)."""
        conf = self._conf
        return conf.version if conf is not None else 0

    def latest(self) -> VerifiedGlobalConf | None:
        """The copy held, even if expired (for display and diagnostics; never to decide)."""
        return self._conf

    def current(self, now: datetime | None = None) -> VerifiedGlobalConf:
        """The configuration to decide by.

        Raises:
            UnavailableError: no configuration has ever been obtained.
            ConfExpiredError: the copy held has expired (the server must refuse to serve).
        """
        conf = self._conf
        if conf is None:
            raise errors.UnavailableError("no global configuration has been obtained yet")
        conf.check_fresh(now if now is not None else self._now())
        return conf

    def age(self, now: datetime | None = None) -> timedelta | None:
        """Time since the copy held was issued (``None`` when there is none)."""
        conf = self._conf
        return None if conf is None else conf.age(now if now is not None else self._now())

    def on_update(self, callback: UpdateListener) -> None:
        """Call ``callback(conf)`` after every newly accepted version (from the fetching thread)."""
        with self._lock:
            self._listeners.append(callback)

    # --- fetching ------------------------------------------------------------------------------

    def _stub(self) -> registry_pb2_grpc.GlobalConfServiceStub:
        if self._channel is None:
            self._channel = rpc.secure_channel(
                self._address, self._identity, server_name=self._server_name
            )
        return registry_pb2_grpc.GlobalConfServiceStub(self._channel)

    def accept(self, raw: bytes, now: datetime | None = None) -> VerifiedGlobalConf:
        """Verify ``raw`` against the anchor and the copy held; keep and persist it if good.

        Raises:
            MalformedError / LimitExceededError: the bytes are not a signed configuration.
            ConfSignatureError / ConfWrongInstanceError / ConfRollbackError / ConfExpiredError.
        """
        with self._refresh_lock:
            at = now if now is not None else self._now()
            previous = self._conf
            verified = verify_global_conf(raw, self._anchor, at, last=previous)
            if previous is not None and verified.raw == previous.raw:
                return previous
            try:
                write_atomically(self._path, raw)
            except OSError as exc:
                # The copy verified, so use it; only the restart floor is at risk (logged).
                log.warning(
                    "could not store the global configuration at %s: %s", self._path, exc.strerror
                )
            self._conf = verified
        log.info("accepted global configuration version %d", verified.version)
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(verified)
            except Exception:  # a failing listener must not stop the updates
                log.exception("global configuration listener failed")
        return verified

    def refresh(self) -> bool:
        """Fetch a newer configuration if there is one; returns whether one was accepted.

        Raises:
            UnavailableError / DeadlineExceededError: the registry cannot be reached.
            ConfSignatureError / ConfWrongInstanceError / ConfRollbackError / ConfExpiredError
            / MalformedError: the registry's answer was refused (the old copy stays).
        """
        try:
            request = registry_pb2.GetGlobalConfRequest(if_newer_than_version=self.version)
            response = rpc.invoke(
                self._stub().GetGlobalConfiguration, request, timeout=self._timeout
            )
            if response.not_modified:
                self.last_success = self._now()
                self.last_error = None
                return False
            before = self.version
            verified = self.accept(response.conf.SerializeToString())
        except errors.CdxError as exc:
            self.last_error = exc
            raise
        self.last_success = self._now()
        self.last_error = None
        return verified.version != before

    # --- background polling --------------------------------------------------------------------

    def start(self) -> None:
        """Poll in a daemon thread until ``stop()``; the first poll happens immediately."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="cdx-confclient", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                self.refresh()
            except errors.CdxError as exc:
                log.warning(
                    "global configuration refresh from the registry at %s failed: %s (%s)",
                    self._address,
                    exc.code,
                    exc.message,
                )
            except Exception:
                log.exception("global configuration refresh failed")
            if self._stop.wait(self._poll_seconds):
                return

    def stop(self) -> None:
        """Stop polling and close the channel; idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._timeout + 5)
            self._thread = None
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def __enter__(self) -> ConfClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
