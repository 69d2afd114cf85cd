"""An audit log attached to a test instance of ``exchange_harness`` (or ``consent_env``), the way
an operator sets one up: keys and TLS under ``DATA/audit`` (``cdx audit init`` layout), anchored
in global configuration by the registry, every security server shipping its outbox to it.

The log runs in this process (``start``) or as a real ``cdx audit serve`` process (``spawn``)
that a test may SIGKILL; it always listens on the one address global configuration names.
``verify()`` runs the real ``cdx audit verify`` command as an inspector.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from audit.client import AuditClient
from audit.server import RunningAudit, init_audit_keys, load_audit_keys, start_audit_service
from cdx import crypto, db, keyfiles, pki
from cdx.confclient import ConfClient
from cdx.keyfiles import load_identity
from security_server import keystore
from tests.integration.exchange_harness import ADMIN, ExchangeInstance, free_port

from .processes import CDX, spawn

ORIGIN = "cdx.test/faults"
INSPECTOR = "inspector"


def _issue(instance: ExchangeInstance, kind: str, name: str, cert: Path, key: Path) -> None:
    """A registry-issued certificate, its key stored encrypted with the instance passphrase."""
    private = crypto.generate_signing_key()
    extra = {"ip_addresses": ["127.0.0.1"]} if kind == "service" else {}
    issued = instance.registry_service.issue_client_certificate(
        pki.build_csr(private, name), kind, name, ADMIN, **extra
    )
    cert.parent.mkdir(parents=True, exist_ok=True)
    cert.write_bytes(issued.cert_pem)
    keyfiles.save_private_key(key, private, instance.registry.paths.passphrase())


@dataclass
class AuditLog:
    instance: ExchangeInstance
    data: Path
    address: str
    db_url: str
    schema: str | None
    inspector: AuditClient
    conf_client: ConfClient
    running: RunningAudit | None = None
    process: subprocess.Popen[str] | None = None
    _clients: list[AuditClient] = field(default_factory=list, repr=False)

    @property
    def directory(self) -> Path:
        return self.data / "audit"

    # --- running it ------------------------------------------------------------------------

    def start(self) -> RunningAudit:
        """Run the log in this process (the same keys and database ``spawn`` uses)."""
        passphrase = self.instance.registry.paths.passphrase()
        keys = load_audit_keys(self.directory, passphrase)
        tls = load_identity(
            self.directory / "tls" / "audit.pem",
            self.directory / "tls" / "audit.key",
            self.instance.registry.paths.ca_pem,
            passphrase,
        )
        self.running = start_audit_service(
            db.create_engine(self.db_url, schema=self.schema),
            tls,
            log_signer=keys.log_signer,
            record_signer=keys.record_signer,
            master_key=keys.master_key,
            conf=self.conf_client.current,
            address=self.address,
            checkpoint_interval=1.0,
        )
        return self.running

    def stop(self) -> None:
        if self.running is not None:
            self.running.stop(0)
            self.running.engine.dispose()
            self.running = None
        if self.process is not None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(10)
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(10)
            self.process = None

    def spawn(self) -> subprocess.Popen[str]:
        """Run the log as ``cdx audit serve`` (a separate process a test may SIGKILL)."""
        args = [
            "audit", "serve", "--data", str(self.data), "--listen", self.address,
            "--registry", self.instance.registry.address, "--database", self.db_url,
            "--interval", "1",
        ]  # fmt: skip
        if self.schema:
            args += ["--schema", self.schema]
        proc = spawn(args, "listening")
        self.process = proc
        return proc

    def kill(self) -> None:
        """SIGKILL the ``cdx audit serve`` process: no shutdown code runs."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self.process = None

    # --- looking at it -----------------------------------------------------------------------

    def size(self) -> int:
        return int(self.inspector.checkpoint().size)

    def logged_record_ids(self) -> list[str]:
        """Record ids of every entry up to the latest checkpoint, in log order."""
        from cdx.v1 import audit_pb2

        size = self.size()
        return [
            audit_pb2.AccessRecord.FromString(e.record.record).record_id
            for e in self.inspector.iter_entries(0, size)
        ]

    def wait_logged(self, record_ids: Iterable[str], timeout: float = 30.0) -> list[str]:
        """Wait until a checkpoint covers every one of ``record_ids``; return the log's ids."""
        wanted = set(record_ids)
        deadline = time.monotonic() + timeout
        while True:
            try:
                logged = self.logged_record_ids()
            except Exception:  # the log is restarting: try again
                logged = []
            if wanted <= set(logged):
                return logged
            if time.monotonic() > deadline:
                missing = wanted - set(logged)
                raise AssertionError(f"{len(missing)} record(s) never reached the log")
            time.sleep(0.2)

    def verify(self) -> subprocess.CompletedProcess[str]:
        """``cdx audit verify`` as an inspector, against the running log."""
        args = [str(CDX), "audit", "verify", "--data", str(self.data), "--address", self.address]
        args += ["--registry", self.instance.registry.address, "--inspector", INSPECTOR]
        return subprocess.run(
            [*args, "--no-progress"], capture_output=True, text=True, timeout=120, check=False
        )

    def close(self) -> None:
        self.stop()
        self.inspector.close()
        for client in self._clients:
            client.close()
        self.conf_client.stop()


def attach_audit_log(
    instance: ExchangeInstance,
    data: Path,
    *,
    db_url: str | None = None,
    schema: str | None = None,
) -> AuditLog:
    """Create ``DATA/audit`` keys and TLS, anchor the log in global configuration and give
    every agency a shipper to it. Start (or restart) the agencies afterwards."""
    passphrase = instance.registry.paths.passphrase()
    keys = init_audit_keys(data / "audit", passphrase, ORIGIN)
    _issue(instance, "service", "audit", data / "audit/tls/audit.pem", data / "audit/tls/audit.key")
    _issue(
        instance,
        "inspector",
        INSPECTOR,
        data / "inspectors" / f"{INSPECTOR}.pem",
        data / "inspectors" / f"{INSPECTOR}.key",
    )
    address = f"127.0.0.1:{free_port()}"
    instance.registry_service.set_trust_anchors(
        audit_log_origin=ORIGIN,
        audit_log_key=keys.log_verifier_key,
        audit_log_address=address,
        audit_service_key_der=keys.record_public_der,
        actor=ADMIN,
    )
    tls = load_identity(
        data / "audit/tls/audit.pem",
        data / "audit/tls/audit.key",
        instance.registry.paths.ca_pem,
        passphrase,
    )
    conf_client = ConfClient(
        instance.registry.address,
        tls,
        instance.registry.paths.load_anchor(),
        data / "audit" / "globalconf.bin",
        poll_interval=timedelta(seconds=1),
    )
    conf_client.refresh()
    conf_client.start()
    inspector = AuditClient(
        address,
        load_identity(
            data / "inspectors" / f"{INSPECTOR}.pem",
            data / "inspectors" / f"{INSPECTOR}.key",
            instance.registry.paths.ca_pem,
            passphrase,
        ),
    )
    log = AuditLog(
        instance,
        data,
        address,
        db_url or db.sqlite_url(data / "audit" / "audit.db"),
        schema,
        inspector,
        conf_client,
    )
    for agency in instance.agencies.values():
        server_tls = keystore.load_keys(agency.data_dir, agency.server_id, passphrase).tls
        shipper = AuditClient(address, server_tls, timeout=5.0)
        log._clients.append(shipper)
        agency.audit_shipper = shipper
    instance.sync_conf()
    return log
