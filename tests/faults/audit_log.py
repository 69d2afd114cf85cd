"""The audit log of a test instance (``exchange_harness`` or ``consent_env``), run so that a
fault test can kill it: in this process (``start``) or as a real ``cdx audit serve`` process
(``spawn``) that a test may SIGKILL.

The instance provisioned the log's keys and TLS identity under ``DATA/audit`` (``cdx audit
init`` layout) and anchored it in global configuration; ``attach_audit_log`` adds an inspector
certificate (``DATA/inspectors``) and gives every agency a shipper to the log. The first start
binds a free port and registers it; later starts (and respawns) bind the same one.
``verify()`` runs the real ``cdx audit verify`` command as an inspector.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from audit.client import AuditClient
from audit.server import RunningAudit, load_audit_keys, start_audit_service
from cdx import crypto, db, keyfiles, pki
from cdx.confclient import ConfClient
from cdx.keyfiles import load_identity
from security_server import keystore
from tests.integration.exchange_harness import ADMIN, ExchangeInstance
from tests.waiting import eventually

from .processes import CDX, spawn_reading

INSPECTOR = "inspector"


def _issue(instance: ExchangeInstance, kind: str, name: str, cert: Path, key: Path) -> None:
    """A registry-issued certificate, its key stored encrypted with the instance passphrase."""
    private = crypto.generate_signing_key()
    issued = instance.registry_service.issue_client_certificate(
        pki.build_csr(private, name), kind, name, ADMIN
    )
    cert.parent.mkdir(parents=True, exist_ok=True)
    cert.write_bytes(issued.cert_pem)
    keyfiles.save_private_key(key, private, instance.registry.paths.passphrase())


@dataclass
class AuditLog:
    instance: ExchangeInstance
    data: Path
    db_url: str
    schema: str | None
    conf_client: ConfClient
    #: Where the log listens: port 0 until its first start, then the port it bound.
    address: str = "127.0.0.1:0"
    running: RunningAudit | None = None
    process: subprocess.Popen[str] | None = None
    _clients: list[AuditClient] = field(default_factory=list, repr=False)

    @property
    def directory(self) -> Path:
        return self.data / "audit"

    # --- running it ------------------------------------------------------------------------

    def _bound(self, address: str) -> None:
        """The log listens on ``address``: global configuration names it from now on."""
        if address != self.address:
            self.address = address
            self.instance.registry_service.set_trust_anchors(audit_log_address=address, actor=ADMIN)
            self.conf_client.refresh()
            self.instance.sync_conf()

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
        self._bound(self.running.address)
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
        proc, line = spawn_reading(args, "listening")
        self.process = proc
        self._bound(line.rsplit(" ", 1)[1])  # "audit log ... listening on HOST:PORT"
        return proc

    def kill(self) -> None:
        """SIGKILL the ``cdx audit serve`` process: no shutdown code runs."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self.process = None

    # --- looking at it -----------------------------------------------------------------------

    def inspector(self) -> AuditClient:
        """A client of the log with the inspector's certificate (closed with the log)."""
        passphrase = self.instance.registry.paths.passphrase()
        identity = load_identity(
            self.data / "inspectors" / f"{INSPECTOR}.pem",
            self.data / "inspectors" / f"{INSPECTOR}.key",
            self.instance.registry.paths.ca_pem,
            passphrase,
        )
        client = AuditClient(lambda: self.address, identity)
        self._clients.append(client)
        return client

    def size(self) -> int:
        return int(self.inspector().checkpoint().size)

    def logged_record_ids(self) -> list[str]:
        """Record ids of every entry up to the latest checkpoint, in log order."""
        from cdx.v1 import audit_pb2

        inspector = self.inspector()
        size = int(inspector.checkpoint().size)
        return [
            audit_pb2.AccessRecord.FromString(e.record.record).record_id
            for e in inspector.iter_entries(0, size)
        ]

    def wait_logged(self, record_ids: Iterable[str], timeout: float = 30.0) -> list[str]:
        """Wait until a checkpoint covers every one of ``record_ids``; return the log's ids."""
        wanted = set(record_ids)

        def logged() -> list[str] | None:
            try:
                ids = self.logged_record_ids()
            except Exception:  # the log is restarting: try again
                return None
            return ids if wanted <= set(ids) else None

        return eventually(
            logged, timeout=timeout, interval=0.2, what=f"{len(wanted)} record(s) in the log"
        )

    def verify(self) -> subprocess.CompletedProcess[str]:
        """``cdx audit verify`` as an inspector, against the running log."""
        args = [str(CDX), "audit", "verify", "--data", str(self.data), "--address", self.address]
        args += ["--registry", self.instance.registry.address, "--inspector", INSPECTOR]
        return subprocess.run(
            [*args, "--no-progress"], capture_output=True, text=True, timeout=120, check=False
        )

    def close(self) -> None:
        self.stop()
        for client in self._clients:
            client.close()
        self.conf_client.stop()


def attach_audit_log(
    instance: ExchangeInstance,
    data: Path | None = None,
    *,
    db_url: str | None = None,
    schema: str | None = None,
) -> AuditLog:
    """The log of ``instance`` (``data``: its data directory), an inspector certificate, and a
    shipper to the log for every agency. Start (or restart) the agencies afterwards."""
    data = data or instance.root
    passphrase = instance.registry.paths.passphrase()
    _issue(
        instance,
        "inspector",
        INSPECTOR,
        data / "inspectors" / f"{INSPECTOR}.pem",
        data / "inspectors" / f"{INSPECTOR}.key",
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
    log = AuditLog(
        instance,
        data,
        db_url or db.sqlite_url(data / "audit" / "audit.db"),
        schema,
        conf_client,
    )
    for agency in instance.agencies.values():
        server_tls = keystore.load_keys(agency.data_dir, agency.server_id, passphrase).tls
        shipper = AuditClient(lambda: log.address, server_tls, timeout=5.0)
        log._clients.append(shipper)
        agency.audit_shipper = shipper
    return log
