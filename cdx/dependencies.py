"""Tracks the peers a process depends on: last success, last error, one log line per change.

A ``Dependency`` (the audit log, the consent service, the registry, an agency backend) is told
the outcome of each call to its peer: ``succeeded()`` or ``failed(code)``. Two kinds of callers
tell it: the code making real calls (the outbox shipping records, the provider calling its
backend), and a ``Prober`` that asks every peer's standard gRPC health service at a fixed
interval, so a peer that died while nobody called it is noticed too.

A probe vouches only for what it tests, reachability: a real call's failure for another
reason (the audit log answers its health service but refuses every record it is sent)
outweighs a probe's success for ``call_memory`` — failing, not flapping. State changes
(reachable -> failing, failing -> reachable, a new error code) log one line naming the peer
and the code; repeated failures log nothing more (no log storms). ``health_check`` makes a
dependency a *non-critical* ``cdx.health`` check: an unreachable peer degrades the process's
health, and the process decides through its other checks when that must stop it serving (the
security server stops releasing data once its outbox backlog passes the window, not the moment
the audit log is unreachable). Nothing here holds personal data: names, addresses and codes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cdx import errors, health, rpc
from cdx.clock import Clock, utcnow

log = logging.getLogger(__name__)

__all__ = [
    "Dependencies",
    "Dependency",
    "DependencyState",
    "Failure",
    "Prober",
    "channels",
    "conf_address",
    "health_check",
]

#: A peer's address, or a function giving its current one (it may move with global conf).
PeerAddress = str | Callable[[], str]

#: Code of a peer that answered the health service with NOT_SERVING.
NOT_SERVING = "not_serving"
#: How long a real call's failure outweighs probes that find the peer serving.
DEFAULT_CALL_MEMORY = timedelta(seconds=30)
#: Failures a probe can see for itself (a probe's success clears them at once).
UNREACHABLE = frozenset({errors.UnavailableError.code, errors.DeadlineExceededError.code})


@dataclass(frozen=True)
class Failure:
    """The last failed call: its stable code, the peer's address then, and when."""

    code: str
    peer: str
    at: datetime


@dataclass(frozen=True)
class DependencyState:
    """What is known about one dependency now (``up`` is ``None`` before the first call)."""

    name: str
    peer: str
    up: bool | None
    last_success: datetime | None
    last_error: Failure | None

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form for ``/healthz`` (times as ISO 8601 UTC)."""
        error = self.last_error
        return {
            "peer": self.peer,
            "state": "unknown" if self.up is None else ("up" if self.up else "down"),
            "last_success": _iso(self.last_success),
            "last_error": (
                None
                if error is None
                else {"code": error.code, "peer": error.peer, "at": _iso(error.at)}
            ),
        }


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.isoformat().replace("+00:00", "Z")


class Dependency:
    """One peer this process depends on; thread-safe.

    ``owner`` names the process side in log lines (e.g. the security server id).
    """

    def __init__(
        self,
        name: str,
        peer: PeerAddress,
        *,
        owner: str = "",
        clock: Clock = utcnow,
        call_memory: timedelta = DEFAULT_CALL_MEMORY,
    ) -> None:
        self.name = name
        self._peer = peer
        self._owner = owner
        self._clock = clock
        self._call_memory = call_memory
        self._lock = threading.Lock()
        self._up: bool | None = None
        self._last_success: datetime | None = None
        self._last_error: Failure | None = None
        self._last_call_failure: datetime | None = None

    @property
    def peer(self) -> str:
        """The peer's current address (empty when none is configured)."""
        try:
            return self._peer() if callable(self._peer) else self._peer
        except errors.CdxError:
            return ""

    def succeeded(self, *, probe: bool = False) -> None:
        """A call to the peer succeeded (it answered, whatever it answered). A ``probe``'s
        success does not clear a real call's failure younger than ``call_memory`` unless that
        failure was the peer being unreachable."""
        now = self._clock()
        with self._lock:
            was = self._up
            recent = self._last_call_failure
            if probe and was is False and recent is not None and now - recent < self._call_memory:
                return
            self._up = True
            self._last_success = now
            self._last_call_failure = None
        if was is False:
            log.info("%s%s at %s is reachable again", self._prefix(), self.name, self.peer)

    def failed(self, code: str, *, probe: bool = False) -> None:
        """A call to the peer (or a ``probe``) failed with ``code`` (a ``cdx.errors`` code)."""
        peer = self.peer
        failure = Failure(code, peer, self._clock())
        with self._lock:
            was = self._up
            changed = (
                was is not False or self._last_error is None or (self._last_error.code != code)
            )
            self._up = False
            self._last_error = failure
            if not probe and code not in UNREACHABLE:
                self._last_call_failure = failure.at
        if changed:
            log.warning(
                "%s%s at %s failed: %s", self._prefix(), self.name, peer or "(no address)", code
            )

    def state(self) -> DependencyState:
        with self._lock:
            up, success, error = self._up, self._last_success, self._last_error
        return DependencyState(self.name, self.peer, up, success, error)

    @property
    def up(self) -> bool | None:
        with self._lock:
            return self._up

    def problem(self) -> str | None:
        """The last error's code while the peer is failing, else ``None``."""
        with self._lock:
            if self._up is False and self._last_error is not None:
                return self._last_error.code
        return None

    def _prefix(self) -> str:
        return f"{self._owner}: " if self._owner else ""


class Dependencies:
    """The dependencies of one process, by name (insertion order kept)."""

    def __init__(self, owner: str = "", *, clock: Clock = utcnow) -> None:
        self.owner = owner
        self._clock = clock
        self._items: dict[str, Dependency] = {}
        self._lock = threading.Lock()

    def add(self, name: str, peer: PeerAddress) -> Dependency:
        """Track a new dependency (or return the one already named ``name``)."""
        with self._lock:
            found = self._items.get(name)
            if found is None:
                found = self._items[name] = Dependency(
                    name, peer, owner=self.owner, clock=self._clock
                )
            return found

    def get(self, name: str) -> Dependency | None:
        with self._lock:
            return self._items.get(name)

    def __iter__(self) -> Iterator[Dependency]:
        with self._lock:
            return iter(list(self._items.values()))

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def report(self) -> dict[str, dict[str, object]]:
        """Every dependency's state, JSON-ready, by name."""
        return {d.name: d.state().as_dict() for d in self}

    def health_checks(self, prefix: str = "") -> list[health.Check]:
        """One non-critical ``cdx.health`` check per dependency, named ``prefix + name``."""
        return [health_check(d, f"{prefix}{d.name}") for d in self]


def health_check(dependency: Dependency, name: str | None = None) -> health.Check:
    """A non-critical check: the last error's code while the peer fails, with the
    dependency's state (peer, last success, last error) as the check's detail."""

    def run(_now: datetime) -> str | None:
        return dependency.problem()

    return health.Check(
        name or dependency.name,
        run,
        critical=False,
        detail=lambda: dependency.state().as_dict(),
    )


def conf_address(latest_conf: Callable[[], object | None], field: str) -> Callable[[], str]:
    """The address the global configuration held now names in ``field`` (e.g.
    ``audit_log_address``); empty while none is held or it names none."""

    def address() -> str:
        conf = latest_conf()
        return str(getattr(conf, field, "") or "") if conf is not None else ""

    return address


# --- probing -------------------------------------------------------------------------------------

#: Makes the channel a probe uses for an address (mutual TLS with the process's identity).
ChannelFactory = Callable[[str], grpc.Channel]


def channels(identity: rpc.TlsIdentity | None) -> ChannelFactory:
    """Probe channels with mutual TLS as ``identity`` (plaintext when ``None``: local backends)."""

    def channel(address: str) -> grpc.Channel:
        return rpc.secure_channel(address, identity)

    return channel


class _Target:
    def __init__(self, dependency: Dependency, channel_for: ChannelFactory) -> None:
        self.dependency = dependency
        self.channel_for = channel_for
        self.address = ""
        self.channel: grpc.Channel | None = None

    def stub(self, address: str) -> health_pb2_grpc.HealthStub:
        if self.channel is None or address != self.address:
            self.close()
            self.channel = self.channel_for(address)
            self.address = address
        return health_pb2_grpc.HealthStub(self.channel)

    def close(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None


class Prober:
    """Asks each dependency's peer ``grpc.health.v1.Health/Check`` every ``interval`` seconds
    from one daemon thread, and reports the outcome to the dependency.

    SERVING, or a server without the health service (UNIMPLEMENTED: it answered), counts as
    reachable; NOT_SERVING as ``not_serving``; a failed call as its mapped ``cdx.errors`` code
    (``unavailable``, ``deadline_exceeded`` ...). A dependency without an address is skipped.
    """

    def __init__(self, *, interval: float = 5.0, timeout: float = 2.0, name: str = "cdx-probe"):
        self._interval = interval
        self._timeout = timeout
        self._name = name
        self._targets: list[_Target] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, dependency: Dependency, channel_for: ChannelFactory) -> None:
        with self._lock:
            self._targets.append(_Target(dependency, channel_for))

    def probe_once(self) -> None:
        """Probe every target now (the thread calls this each interval)."""
        with self._lock:
            targets = list(self._targets)
        for target in targets:
            if self._stop.is_set():
                return
            address = target.dependency.peer
            if not address:
                continue
            self._probe(target, address)

    def _probe(self, target: _Target, address: str) -> None:
        dependency = target.dependency
        try:
            reply = target.stub(address).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=self._timeout
            )
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                dependency.succeeded(probe=True)
                return
            # A fresh channel next time: a failed channel waits out gRPC's reconnect backoff
            # (up to minutes), and a peer that came back must be seen at the next probe.
            target.close()
            dependency.failed(_code(exc), probe=True)
            return
        except Exception as exc:  # a probe must never kill its thread
            target.close()
            dependency.failed(type(exc).__name__, probe=True)
            return
        if reply.status == health_pb2.HealthCheckResponse.SERVING:
            dependency.succeeded(probe=True)
        else:
            dependency.failed(NOT_SERVING, probe=True)

    def start(self) -> Prober:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.probe_once()
            self._stop.wait(self._interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._timeout + 1)
            self._thread = None
        with self._lock:
            for target in self._targets:
                target.close()


def _code(exc: grpc.RpcError) -> str:
    return rpc.error_from_rpc(exc).code
