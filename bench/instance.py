"""A benchmark instance on loopback: registry + consent service here, every server its own process.

``build_instance(root)`` sets up, under ``root``, what an operator would: a registry for ``VN``
(in this process), the consent service (in this process; its own TLS certificate, artefact key
and database), agencies with real keys registered through the registry, information-system
client certificates and the agreements of ``AGREEMENTS``. Security servers and backends are not
started here: ``start_server`` / ``start_backend`` run ``cdx security-server serve`` and
``cdx backend serve`` as separate processes (so no two parties share a GIL).

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
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from bench.common import PROJECT_ROOT
from cdx import crypto, db, pki, rpc
from cdx.clock import utcnow
from cdx.confclient import ConfClient
from cdx.consentpolicy import ConsentTerms
from cdx.ids import CitizenId
from registry.bootstrap import init_instance
from registry.server import RunningRegistry, start_registry
from security_server import provisioning
from security_server.backends.sample import KINDS
from security_server.config import SecurityServerConfig, dump_config

INSTANCE = "VN"
ADMIN = "admin:bench"
CONSENT_PURPOSE = "SOCIAL_BENEFIT_ELIGIBILITY"


@dataclass(frozen=True)
class AgencySpec:
    key: str
    member: str
    name: str
    subsystem: str
    kind: str | None  # sample backend kind; None = a client-only agency without a server

    @property
    def server_id(self) -> str:
        return f"{self.member}:ss1"

    @property
    def service(self) -> str:
        assert self.kind is not None
        return f"{self.subsystem}/{KINDS[self.kind].service_code}/v1"


SPECS = (
    AgencySpec("social", "VN:GOV:VSS", "Social insurance", "VN:GOV:VSS:benefits", "social"),
    AgencySpec("tax", "VN:GOV:GDT", "Tax", "VN:GOV:GDT:income", "tax"),
    AgencySpec("population", "VN:GOV:BCA", "Police", "VN:GOV:BCA:population", "population"),
    AgencySpec("health", "VN:GOV:MOH", "Health", "VN:GOV:MOH:clinic", None),
)

#: (client, provider, lawful basis, fields). Every one is for ``CONSENT_PURPOSE``.
AGREEMENTS = (
    ("social", "tax", "CONSENT", ("annual_income", "tax_year")),
    ("social", "population", "LEGAL_OBLIGATION", ("full_name", "birth_date")),
    ("health", "tax", "CONSENT", ("annual_income",)),
    ("health", "population", "CONSENT", ("full_name",)),
    ("health", "social", "CONSENT", ("status",)),
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pem(key: crypto.PrivateSigningKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass
class Agency:
    spec: AgencySpec
    data_dir: Path
    config_path: Path | None
    exchange_address: str
    gateway_address: str
    backend_address: str
    client_identity: rpc.TlsIdentity = field(repr=False)

    @property
    def server_id(self) -> str:
        return self.spec.server_id


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
        stdout: IO[bytes] = self.popen.stdout  # type: ignore[assignment]
        threading.Thread(target=self._pump, args=(stdout,), daemon=True).start()

    def _pump(self, stream: IO[bytes]) -> None:
        for line in stream:
            self._lines.put(line)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait_ready(self, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited ({self.popen.returncode}); see {self._log.name}"
                )
            try:
                return self._lines.get(timeout=0.1).decode(errors="replace").strip()
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


@dataclass
class BenchInstance:
    root: Path
    registry: RunningRegistry
    agencies: dict[str, Agency]
    consent: Any  # consent.server.RunningConsent
    consent_identity: rpc.TlsIdentity = field(repr=False)
    _conf_client: ConfClient = field(repr=False)
    procs: list[Proc] = field(default_factory=list)

    def agency(self, key: str) -> Agency:
        return self.agencies[key]

    def server_identity(self, key: str) -> rpc.TlsIdentity:
        """The auth-certificate identity of ``key``'s security server (as its checker uses)."""
        from security_server import keystore

        agency = self.agencies[key]
        return keystore.load_keys(
            agency.data_dir, agency.server_id, self.registry.paths.passphrase()
        ).tls

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
            subject=CitizenId.parse(subject, INSTANCE),
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
            CitizenId.parse(subject, INSTANCE), consent_id, ConsentAction.REVOKE
        )

    def start_backend(self, key: str) -> Proc:
        agency = self.agencies[key]
        assert agency.spec.kind is not None
        proc = Proc(
            f"backend-{key}",
            [
                "backend", "serve", "--kind", agency.spec.kind,
                "--db", str(self.root / "backends" / f"{agency.spec.kind}.db"),
                "--address", agency.backend_address,
            ],
            self.root / f"backend-{key}.log",
        )  # fmt: skip
        self.procs.append(proc)
        return proc

    def start_server(self, key: str) -> Proc:
        agency = self.agencies[key]
        assert agency.config_path is not None
        proc = Proc(
            f"ss-{key}",
            ["security-server", "serve", "--config", str(agency.config_path)],
            self.root / f"ss-{key}.log",
        )
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                proc.stop()
        self.procs.clear()
        with contextlib.suppress(Exception):
            self.consent.stop(0)
        with contextlib.suppress(Exception):
            self._conf_client.stop()
        with contextlib.suppress(Exception):
            self.registry.stop(0)


def build_instance(
    root: Path,
    *,
    consent_db_url: str | None = None,
    consent_db_schema: str | None = None,
    server_workers: int = 32,
    exchange_stream: bool = True,
) -> BenchInstance:
    """Create the instance under ``root`` (registry and consent service running here)."""
    from consent.server import start_consent_service

    paths = init_instance(root, INSTANCE, utcnow())
    registry = start_registry(paths, "127.0.0.1:0")
    cleanup: list[Any] = [lambda: registry.stop(0)]
    try:
        service = registry.service
        passphrase = paths.passphrase()
        anchor_json = paths.anchor.read_bytes()
        ca_pem = paths.load_ca_pem()
        service.add_purpose(CONSENT_PURPOSE, "Checking eligibility for a social benefit", "", ADMIN)
        for spec in SPECS:
            service.add_member(spec.member, spec.name, ADMIN)
            service.add_subsystem(spec.subsystem, ADMIN)
            if spec.kind is not None:
                kind = KINDS[spec.kind]
                service.add_service(
                    spec.service, list(kind.fields), ["personal"], kind.description, ADMIN
                )
        agencies: dict[str, Agency] = {}
        for spec in SPECS:
            key = crypto.generate_signing_key("ecdsa-p256")
            issued = service.issue_client_certificate(
                pki.build_csr(key, "information system"), "client", spec.subsystem, ADMIN
            )
            client = rpc.TlsIdentity(issued.cert_pem, _pem(key), ca_pem)
            data_dir = root / "servers" / spec.key
            exchange = gateway = backend = ""
            config_path: Path | None = None
            if spec.kind is not None:
                exchange = f"127.0.0.1:{free_port()}"
                gateway = f"127.0.0.1:{free_port()}"
                backend = f"127.0.0.1:{free_port()}"
                provisioning.provision(
                    data_dir,
                    spec.server_id,
                    exchange,
                    [spec.subsystem],
                    passphrase,
                    anchor_json,
                    provisioning.register_with_service(service, ADMIN),
                )
                config = SecurityServerConfig(
                    server_id=spec.server_id,
                    data_dir=data_dir,
                    exchange_address=exchange,
                    gateway_address=gateway,
                    registry_address=registry.address,
                    passphrase_file=paths.passphrase_file,
                    backends={spec.subsystem: backend},
                    # No audit log runs in the exchange benchmark: records stay in the durable
                    # outbox. A window longer than the benchmark keeps it releasing data.
                    outbox_window_s=3600.0,
                    workers=server_workers,
                    conf_poll_s=5.0,
                    exchange_stream=exchange_stream,
                )
                config_path = data_dir / "server.toml"
                config_path.write_text(dump_config(config, base=data_dir), encoding="utf-8")
            agencies[spec.key] = Agency(
                spec, data_dir, config_path, exchange, gateway, backend, client
            )
        for client_key, provider_key, basis, fields in AGREEMENTS:
            service.add_agreement(
                agencies[client_key].spec.subsystem,
                agencies[provider_key].spec.service,
                CONSENT_PURPOSE,
                basis,
                "Benchmark agreement" if basis != "CONSENT" else "",
                list(fields),
                0,
                0,
                False,
                actor=ADMIN,
            )

        # The consent service, set up the way an operator does.
        signing_key = ed25519.Ed25519PrivateKey.generate()
        tls_key = crypto.generate_signing_key("ecdsa-p256")
        issued = service.issue_client_certificate(
            pki.build_csr(tls_key, "consent"),
            "service",
            "consent",
            ADMIN,
            dns_names=["localhost"],
            ip_addresses=["127.0.0.1"],
        )
        identity = rpc.TlsIdentity(issued.cert_pem, _pem(tls_key), issued.ca_pem)
        service.set_trust_anchors(
            consent_service_key_der=crypto.public_key_to_der(signing_key.public_key()),
            actor=ADMIN,
        )
        conf_client = ConfClient(
            registry.address,
            identity,
            paths.load_anchor(),
            root / "consent" / "globalconf.bin",
            poll_interval=timedelta(seconds=2),
        )
        conf_client.refresh()
        conf_client.start()
        cleanup.append(conf_client.stop)
        (root / "consent").mkdir(parents=True, exist_ok=True)
        engine = db.create_engine(
            consent_db_url or db.sqlite_url(root / "consent" / "consent.db"),
            schema=consent_db_schema,
        )
        consent = start_consent_service(
            engine=engine,
            identity=identity,
            signer=crypto.KeySigner(signing_key),
            tag_key=os.urandom(32),
            conf=conf_client.current,
        )
        cleanup.append(lambda: consent.stop(0))
        service.set_trust_anchors(consent_service_address=consent.address, actor=ADMIN)
        conf_client.refresh()
        return BenchInstance(root, registry, agencies, consent, identity, conf_client)
    except BaseException:
        for fn in reversed(cleanup):
            with contextlib.suppress(Exception):
                fn()
        raise
