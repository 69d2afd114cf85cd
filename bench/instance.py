"""A benchmark instance: the ``stack`` composition with the benchmark's agencies, registry and
consent service in this process, every security server and register its own process.

``build_instance(root)`` provisions ``TOPOLOGY`` under ``root`` (``stack.provision``) and
starts the registry and the consent service here (``stack.runtime``, over SQLite or the given
PostgreSQL database); security servers and registers are not started: ``start_server`` and
``start_backend`` run ``cdx security-server serve`` and ``cdx backend serve`` as separate
processes (so no two parties share a GIL) on port 0, and record the addresses they bound.

Agencies (sample backends of ``security_server.backends.sample``):

=========  ==============  ========================  ================================
key        member          subsystem                 service
=========  ==============  ========================  ================================
social     VN:GOV:VSS      VN:GOV:VSS:benefits       VN:GOV:VSS:benefits/insurance/v1
tax        VN:GOV:GDT      VN:GOV:GDT:income         VN:GOV:GDT:income/income/v1
population VN:GOV:BCA      VN:GOV:BCA:population     VN:GOV:BCA:population/person/v1
health     VN:GOV:MOH      VN:GOV:MOH:clinic         (a client only: no server)
=========  ==============  ========================  ================================
"""

from __future__ import annotations

import contextlib
import os
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import IO

from bench.common import PROJECT_ROOT
from cdx import rpc
from cdx.clock import utcnow
from cdx.consentpolicy import ConsentTerms
from cdx.ids import CitizenId
from security_server.config import SecurityServerConfig
from stack.agency import RunningAgency, serve_banner_addresses
from stack.provision import create_instance
from stack.runtime import RunningInstance, StackOptions, start_instance
from stack.topology import AgencySpec, AgreementSpec, Topology

CONSENT_PURPOSE = "SOCIAL_BENEFIT_ELIGIBILITY"


def _agreement(client: str, provider: str, basis: str, fields: tuple[str, ...]) -> AgreementSpec:
    reference = "" if basis == "CONSENT" else "Benchmark agreement"
    return AgreementSpec(client, provider, CONSENT_PURPOSE, basis, reference, fields)


TOPOLOGY = Topology(
    agencies=(
        AgencySpec("social", "VN:GOV:VSS", "Social insurance", "VN:GOV:VSS:benefits", "social"),
        AgencySpec("tax", "VN:GOV:GDT", "Tax", "VN:GOV:GDT:income", "tax"),
        AgencySpec("population", "VN:GOV:BCA", "Police", "VN:GOV:BCA:population", "population"),
        AgencySpec("health", "VN:GOV:MOH", "Health", "VN:GOV:MOH:clinic", None),
    ),
    purposes=((CONSENT_PURPOSE, "Checking eligibility for a social benefit", ""),),
    agreements=(
        _agreement("social", "tax", "CONSENT", ("annual_income", "tax_year")),
        _agreement("social", "population", "LEGAL_OBLIGATION", ("full_name", "birth_date")),
        _agreement("health", "tax", "CONSENT", ("annual_income",)),
        _agreement("health", "population", "CONSENT", ("full_name",)),
        _agreement("health", "social", "CONSENT", ("status",)),
    ),
)


@dataclass
class Agency:
    """An agency of the benchmark: its information-system identity and, unless it is a
    client only, its security server's runtime (``stack.agency.RunningAgency``)."""

    spec: AgencySpec
    client_identity: rpc.TlsIdentity
    runtime: RunningAgency | None = None

    @property
    def server_id(self) -> str:
        return self.spec.server_id

    @property
    def _config(self) -> SecurityServerConfig:
        assert self.runtime is not None, f"{self.spec.key} runs no security server"
        return self.runtime.config

    @property
    def exchange_address(self) -> str:
        return self._config.exchange_address

    @property
    def gateway_address(self) -> str:
        return self._config.gateway_address

    @property
    def backend_address(self) -> str:
        return self._config.backends[self.spec.subsystem]


class Proc:
    """A ``cdx`` sub-command running as its own process (stdout's first line = ready)."""

    def __init__(self, name: str, argv: list[str], log_path: Path) -> None:
        self.name = name
        self._log = log_path.open("ab")
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "cdx.cli", *argv],
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
        )
        self._lines: queue.Queue[bytes] = queue.Queue()
        self._ready: str | None = None
        stdout: IO[bytes] = self.popen.stdout  # type: ignore[assignment]
        threading.Thread(target=self._pump, args=(stdout,), daemon=True).start()

    def _pump(self, stream: IO[bytes]) -> None:
        for line in stream:
            self._lines.put(line)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait_ready(self, timeout: float = 60.0) -> str:
        """The first line the process printed (it prints it once it listens)."""
        if self._ready is not None:
            return self._ready
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited ({self.popen.returncode}); see {self._log.name}"
                )
            try:
                self._ready = self._lines.get(timeout=0.1).decode(errors="replace").strip()
                return self._ready
            except queue.Empty:
                continue
        raise RuntimeError(f"{self.name} did not start within {timeout:.0f}s; see {self._log.name}")

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._log.close()


class BenchInstance:
    """The running benchmark instance (``stack``) and the processes it started."""

    def __init__(self, root: Path, stack: RunningInstance) -> None:
        self.root = root
        self.stack = stack
        self.registry = stack.registry
        assert stack.consent is not None
        self.consent = stack.consent
        self.agencies = {
            spec.key: Agency(spec, stack.client_identity(spec.key), stack.agencies.get(spec.key))
            for spec in TOPOLOGY.agencies
        }
        self.procs: list[Proc] = []

    def agency(self, key: str) -> Agency:
        return self.agencies[key]

    def server_identity(self, key: str) -> rpc.TlsIdentity:
        """The auth-certificate identity of ``key``'s security server (as its checker uses)."""
        from security_server import keystore

        runtime = self.agencies[key].runtime
        assert runtime is not None
        return keystore.load_keys(runtime.data_dir, runtime.server_id, self.stack.passphrase).tls

    def grant(
        self,
        subject: str,
        *,
        grantee: str = "social",
        services: tuple[str, ...] = ("tax",),
        fields: tuple[str, ...] = ("annual_income", "tax_year"),
    ) -> str:
        """Grant an ACTIVE consent as the citizen would; returns its id."""
        now = utcnow().replace(microsecond=0)
        terms = ConsentTerms(
            subject=CitizenId.parse(subject, TOPOLOGY.instance),
            grantee=self.agencies[grantee].spec.subsystem,
            services=tuple(self.agencies[s].spec.service for s in services),
            purpose=CONSENT_PURPOSE,
            fields=frozenset(fields),
            valid_from=now,
            valid_until=now + timedelta(days=30),
            retention_days=30,
        )
        record = self.consent.service.grant(terms.subject, terms)
        return str(record.id)

    def revoke(self, subject: str, consent_id: str) -> None:
        from cdx.consentpolicy import ConsentAction

        self.consent.service.act(
            CitizenId.parse(subject, TOPOLOGY.instance), consent_id, ConsentAction.REVOKE
        )

    def start_backend(self, key: str) -> Proc:
        """``cdx backend serve`` for ``key``'s register, on a free port it reports."""
        runtime = self.agencies[key].runtime
        assert runtime is not None and runtime.spec.kind is not None
        proc = Proc(
            f"backend-{key}",
            [
                "backend", "serve", "--kind", runtime.spec.kind,
                "--db", str(self.root / "backends" / f"{runtime.spec.kind}.db"),
                "--address", runtime.config.backends[runtime.subsystem],
            ],
            self.root / f"backend-{key}.log",
        )  # fmt: skip
        self.procs.append(proc)
        # "<kind> backend on HOST:PORT (<db>)"
        runtime.backend_bound(proc.wait_ready().split(" on ", 1)[1].split()[0])
        return proc

    def start_server(self, key: str) -> Proc:
        """``cdx security-server serve`` for ``key`` (start its register first), on free
        ports it reports; its exchange address is registered then."""
        runtime = self.agencies[key].runtime
        assert runtime is not None
        runtime.prepare()
        proc = Proc(
            f"ss-{key}",
            ["security-server", "serve", "--config", str(runtime.config_file)],
            self.root / f"ss-{key}.log",
        )
        self.procs.append(proc)
        addresses = serve_banner_addresses(proc.wait_ready())
        if addresses is None:
            raise RuntimeError(f"ss-{key} did not say where it listens")
        runtime.server_bound(*addresses)
        return proc

    def close(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                proc.stop()
        self.procs.clear()
        self.stack.stop()


def build_instance(
    root: Path,
    *,
    consent_db_url: str | None = None,
    consent_db_schema: str | None = None,
    server_workers: int = 32,
    exchange_stream: bool = True,
) -> BenchInstance:
    """Create the instance under ``root`` (registry and consent service running here)."""

    def settings(key: str, config: SecurityServerConfig) -> SecurityServerConfig:
        return replace(
            config,
            gateway_token_address="",
            # No audit log runs in the exchange benchmark: records stay in the durable
            # outbox. A window longer than the benchmark keeps it releasing data.
            outbox_window_s=3600.0,
            workers=server_workers,
            conf_poll_s=5.0,
            exchange_stream=exchange_stream,
        )

    create_instance(root, topology=TOPOLOGY, configure=settings, witness_quorum=0)
    options = StackOptions(
        audit=False,
        agencies=False,
        witnesses=False,
        portal=False,
        notify=False,
        consent_database=(consent_db_url, consent_db_schema) if consent_db_url else None,
    )
    return BenchInstance(root, start_instance(root, options, topology=TOPOLOGY))
