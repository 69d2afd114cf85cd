"""``cdx audit ...`` end to end: ``init`` and ``serve`` make a real audit log process; real
security servers ship to it; the inspector commands run through ``cdx.cli.main``."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from audit import store
from audit.client import AuditClient
from cdx import cli, crypto, db, keyfiles, pki
from cdx.clock import utcnow
from cdx.globalconf import to_ms
from cdx.v1 import audit_pb2
from security_server import keystore
from security_server.backends.sample import CITIZENS
from tests.integration.exchange_harness import ADMIN, ExchangeInstance, build_instance
from tests.waiting import eventually

CDX = [sys.executable, "-m", "cdx.cli"]
ORIGIN = "cdx.test/audit"
ANNE = CITIZENS[0]
BENEFIT = "SOCIAL_BENEFIT_ELIGIBILITY"

pytestmark = pytest.mark.xdist_group("audit-cli")


@dataclass
class Result:
    rc: int
    out: str
    err: str


def run(*argv: str) -> Result:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = cli.main(list(argv))
        except SystemExit as exc:
            rc = int(exc.code or 0)
    return Result(rc, out.getvalue(), err.getvalue())


@dataclass
class Env:
    data: Path
    instance: ExchangeInstance
    address: str
    process: subprocess.Popen[str]
    tiles_url: str

    def cdx(self, *argv: str) -> Result:
        return run(*argv, "--data", str(self.data), "--registry", self.instance.registry.address)


@pytest.fixture(scope="module", autouse=True)
def _keep_test_logging() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("cdx.telemetry.configure_logging", lambda **_kw: None)
        yield


def _issue(
    instance: ExchangeInstance,
    kind: str,
    name: str,
    directory: Path,
    stem: str,
    passphrase: bytes,
    **kw: object,
) -> None:
    key = crypto.generate_signing_key()
    issued = instance.registry_service.issue_client_certificate(
        pki.build_csr(key, name), kind, name, ADMIN, **kw
    )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{stem}.pem").write_bytes(issued.cert_pem)
    keyfiles.save_private_key(directory / f"{stem}.key", key, passphrase)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """Shared by the module: a test that changes the log (shreds, rewrites) runs its own."""
    with audit_cli_env(tmp_path_factory.mktemp("audit-cli")) as e:
        yield e


@contextlib.contextmanager
def audit_cli_env(data: Path) -> Iterator[Env]:
    """An instance whose log was set up with ``cdx audit init`` and runs as ``cdx audit serve``;
    two exchanges reached it."""
    instance = build_instance(data, start=False)
    passphrase = (data / "passphrase").read_bytes().strip()
    shutil.rmtree(data / "audit")  # the instance's log is set up again, with the CLI
    result = run("audit", "init", "--data", str(data), "--origin", ORIGIN)
    assert result.rc == 0, result.err
    vkey = re.search(r"log verifier key\s+(\S+)", result.out)
    assert vkey and vkey.group(1) == (data / "audit" / "log.vkey").read_text().strip()
    _issue(
        instance,
        "service",
        "audit",
        data / "audit" / "tls",
        "audit",
        passphrase,
        ip_addresses=["127.0.0.1"],
    )
    _issue(instance, "inspector", "inspector", data / "inspectors", "inspector", passphrase)
    instance.registry_service.set_trust_anchors(
        audit_log_origin=ORIGIN,
        audit_log_key=vkey.group(1),
        audit_service_key_der=(data / "audit" / "record.pub").read_bytes(),
        actor=ADMIN,
    )
    (data / "registry" / "address").write_text(instance.registry.address)
    process = subprocess.Popen(
        [
            *CDX,
            "audit",
            "serve",
            "--data",
            str(data),
            "--listen",
            "127.0.0.1:0",
            "--registry",
            instance.registry.address,
            "--interval",
            "1",
            "--tiles-listen",
            "127.0.0.1:0",
            "--tiles-https",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "listening on" in line, process.stderr.read() if process.stderr else line
        tiles_line = process.stdout.readline()
        assert "tiles served at" in tiles_line, tiles_line
        tiles_url = tiles_line.split()[-1]  # the port it bound
        address = line.split()[-1]  # the port it bound, now registered
        instance.registry_service.set_trust_anchors(audit_log_address=address, actor=ADMIN)
        for agency in instance.agencies.values():
            keys = keystore.load_keys(agency.data_dir, agency.server_id, passphrase)
            agency.audit_shipper = AuditClient(address, keys.tls)
            agency.start()
        social, population = instance.agency("social"), instance.agency("population")
        for citizen in CITIZENS[:2]:
            social.query(population.service, citizen.id, BENEFIT)
        eventually(
            lambda: not (social.running.outbox.depth() or population.running.outbox.depth()),
            timeout=20,
            what="the outboxes drained",
        )
        yield Env(data, instance, address, process, tiles_url)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            process.kill()
        instance.close()


def _wait_checkpoint(env: Env, size: int) -> None:
    def covering() -> bool:
        r = env.cdx("audit", "checkpoint")
        found = re.search(r"tree size\s+(\d+)", r.out)
        return r.rc == 0 and found is not None and int(found.group(1)) >= size

    eventually(covering, timeout=10, interval=0.2, what=f"a checkpoint of size {size}")


def _entries(env: Env) -> int:
    engine = db.create_engine(db.sqlite_url(env.data / "audit" / "audit.db"))
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(sa.select(sa.func.count()).select_from(store.leaves)).scalar_one()
            )
    finally:
        engine.dispose()


def test_checkpoint_prints_a_verified_checkpoint_and_saves_it(env: Env, tmp_path: Path) -> None:
    _wait_checkpoint(env, 4)
    saved = tmp_path / "checkpoint.note"
    r = env.cdx("audit", "checkpoint", "--save", str(saved))
    assert r.rc == 0, r.err
    assert f"origin        {ORIGIN}" in r.out and "signature     valid" in r.out
    assert saved.read_text().startswith(ORIGIN + "\n")


def test_proof_verifies_a_record_locally(env: Env) -> None:
    _wait_checkpoint(env, 4)
    engine = db.create_engine(db.sqlite_url(env.data / "audit" / "audit.db"))
    with engine.connect() as conn:
        record_id = conn.execute(
            sa.select(store.leaves.c.record_id).where(store.leaves.c.idx == 1)
        ).scalar_one()
    engine.dispose()
    r = env.cdx("audit", "proof", "--record-id", record_id)
    assert r.rc == 0, r.err
    assert f"entry 1 (record {record_id}) is in tree" in r.out
    r = env.cdx("audit", "proof", "--record-id", "no-such-record")
    assert r.rc == 2 and "not_found" in r.err


def test_search_lists_hits_and_is_itself_logged(env: Env) -> None:
    before = _entries(env)
    r = env.cdx("audit", "search", "--client", "VN:GOV:VSS")
    assert r.rc == 0, r.err
    assert "VN:GOV:VSS:benefits" in r.out and "ALLOW ok" in r.out
    assert re.search(r"this query is logged as record \S+", r.out)
    r = env.cdx("audit", "search", "--subject", ANNE.id)
    assert r.rc == 2 and "reason_required" in r.err
    r = env.cdx("audit", "search", "--subject", ANNE.id, "--reason", "complaint 17", "--json")
    assert r.rc == 0, r.err
    assert ANNE.id not in r.out  # hits show records, never the id in clear
    assert _entries(env) == before + 2


def test_receipts_export_and_verify_offline_and_proofs_come_from_tiles(
    env: Env, tmp_path: Path
) -> None:
    _wait_checkpoint(env, _entries(env))
    old = tmp_path / "old.checkpoint"
    assert env.cdx("audit", "checkpoint", "--save", str(old)).rc == 0
    receipt = tmp_path / "entry.tlog-proof"
    r = env.cdx(
        "audit", "proof", "--index", "1", "--tiles", env.tiles_url, "--export", str(receipt)
    )
    assert r.rc == 0, r.out + r.err
    assert "entry 1 (record" in r.out and receipt.read_text().startswith("c2sp.org/tlog-proof@v1")
    vkey = f"@{env.data / 'audit' / 'log.vkey'}"
    # Offline: a fresh process with no data directory, no registry, no network.
    proc = subprocess.run(
        [*CDX, "audit", "receipt", str(receipt), "--log-key", vkey],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 0 and "VALID: entry 1 of" in proc.stdout, proc.stderr
    lines = receipt.read_text().split("\n")
    lines[2] = "index 0"  # the same entry claimed elsewhere
    receipt.write_text("\n".join(lines))
    r = run("audit", "receipt", str(receipt), "--log-key", vkey)
    assert r.rc != 0 and "invalid_proof" in r.err
    # Consistency: the log grew since the saved checkpoint.
    social, population = env.instance.agency("social"), env.instance.agency("population")
    social.query(population.service, CITIZENS[2].id, BENEFIT)
    before = _entries(env)
    eventually(
        lambda: not (social.running.outbox.depth() or population.running.outbox.depth()),
        timeout=20,
        what="the outboxes drained",
    )
    _wait_checkpoint(env, max(before, _entries(env)))
    size1 = int(old.read_text().split("\n")[1])
    grown = tmp_path / "grown.tlog-consistency"
    r = env.cdx(
        "audit", "proof", "--consistency", str(size1), "0", "--old-checkpoint", str(old),
        "--tiles", env.tiles_url, "--export", str(grown),
    )  # fmt: skip
    assert r.rc == 0, r.out + r.err
    r = run("audit", "receipt", str(grown), "--log-key", vkey)
    assert r.rc == 0 and f"VALID: tree {size1} is a prefix of tree" in r.out, r.err


def test_search_pages_with_after(env: Env) -> None:
    r = env.cdx("audit", "search", "--client", "VN:GOV", "--limit", "1", "--json")
    assert r.rc == 0, r.err
    (first,) = json.loads(r.out)["hits"]
    r = env.cdx("audit", "search", "--client", "VN:GOV", "--limit", "1")
    assert f"more may follow: add --after {first['index']}" in r.out
    r = env.cdx(
        "audit",
        "search",
        "--client",
        "VN:GOV",
        "--limit",
        "1",
        "--after",
        str(first["index"]),
        "--json",
    )
    (second,) = json.loads(r.out)["hits"]
    assert second["index"] > first["index"]


def test_refused_lists_what_the_log_refused_for_good(env: Env) -> None:
    from cdx import records

    agency = env.instance.agency("population")
    passphrase = (env.data / "passphrase").read_bytes().strip()
    keys = keystore.load_keys(agency.data_dir, agency.server_id, passphrase)
    record = audit_pb2.AccessRecord(
        record_id="01900000-0000-7000-8000-0000000000aa",
        message_id="01900000-0000-7000-8000-0000000000ab",
        time_ms=to_ms(utcnow()),
        recorder=agency.server_id,
        client="VN:GOV:VSS:benefits\x1b[2J",
        reason_code="no_agreement",
        kind="access",
    )
    with AuditClient(env.address, keys.tls) as client:
        (result,) = client.ship(
            [audit_pb2.OutboxItem(record=records.sign_access_record(record, keys.signer))]
        )
    assert result.error_code == "unsafe_characters"
    r = env.cdx("audit", "refused")
    assert r.rc == 0, r.err
    assert record.record_id in r.out and "unsafe_characters" in r.out and agency.server_id in r.out
    assert "\x1b" not in r.out


def test_verify_passes_with_a_progress_bar_and_exit_zero(env: Env) -> None:
    _wait_checkpoint(env, _entries(env))
    r = env.cdx("audit", "verify", "--progress")
    assert r.rc == 0, r.out + r.err
    assert "VERIFIED: the log is intact" in r.out
    assert "verifying [" in r.err and "100%" in r.err
    # The real entry point in its own process: exit status 0, no bar when not a TTY.
    proc = subprocess.run(
        [
            *CDX,
            "audit",
            "verify",
            "--data",
            str(env.data),
            "--registry",
            env.instance.registry.address,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "verifying [" not in proc.stderr


def test_shred_destroys_old_epochs_and_the_log_still_verifies(tmp_path: Path) -> None:
    with audit_cli_env(tmp_path) as env:  # its own: keys are destroyed
        _shred_destroys_old_epochs(env)


def _shred_destroys_old_epochs(env: Env) -> None:
    # Records from an old month reach the log through a security server.
    social = env.instance.agency("social")
    keys = keystore.load_keys(
        social.data_dir, social.server_id, (env.data / "passphrase").read_bytes().strip()
    )
    from security_server.records import Decision, build_record, sign_item

    decision = Decision(
        role=1,
        message_id="old-message",
        client=social.subsystem,
        service="x",
        subject=ANNE.id,
        request_value=b"r",
        verified=True,
    )
    record, opening = build_record(
        decision,
        recorder=social.server_id,
        allowed=False,
        reason_code="no_agreement",
        now=datetime(2024, 1, 10, tzinfo=UTC),
    )
    with AuditClient(env.address, keys.tls) as client:
        (result,) = client.ship([sign_item(record, opening, keys.signer)])
    assert not result.error_code
    r = run("audit", "shred", "--data", str(env.data), "--before", "2024-03-01")
    assert r.rc == 1 and "2024-01" in r.out and "--yes" in r.out  # a dry run first
    r = run("audit", "shred", "--data", str(env.data), "--before", "2024-03-01", "--yes")
    assert r.rc == 0, r.err
    assert "destroyed the opening keys of 1 epoch(s): 2024-01" in r.out
    _wait_checkpoint(env, _entries(env))
    r = env.cdx("audit", "verify", "--no-progress")
    assert r.rc == 0, r.out


def test_verify_names_a_record_updated_in_the_database_and_fails(tmp_path: Path) -> None:
    with audit_cli_env(tmp_path) as env:  # its own: an entry is rewritten
        _verify_names_an_updated_record(env)


def _verify_names_an_updated_record(env: Env) -> None:
    _wait_checkpoint(env, _entries(env))
    engine = db.create_engine(db.sqlite_url(env.data / "audit" / "audit.db"))
    try:
        with engine.begin() as conn:
            leaf = conn.execute(
                sa.select(store.leaves.c.leaf).where(store.leaves.c.idx == 2)
            ).scalar_one()
            signed = audit_pb2.SignedAccessRecord.FromString(leaf)
            record = audit_pb2.AccessRecord.FromString(signed.record)
            record.released_fields.append("address")
            signed.record = record.SerializeToString(deterministic=True)
            conn.exec_driver_sql("DROP TRIGGER audit_leaves_no_update")
            conn.execute(
                store.leaves.update()
                .where(store.leaves.c.idx == 2)
                .values(leaf=signed.SerializeToString(deterministic=True))
            )
    finally:
        engine.dispose()
    r = env.cdx("audit", "verify", "--no-progress")
    assert r.rc == 1
    assert "FAILED: the log does not verify" in r.out
    assert f"entry_altered [entry 2, record {record.record_id}]" in r.out
    assert f"invalid_record_signature [entry 2, record {record.record_id}]" in r.out


def test_help_describes_the_commands() -> None:
    r = run("audit", "--help")
    assert r.rc == 0
    for command in (
        "checkpoint",
        "proof",
        "search",
        "refused",
        "verify",
        "shred",
        "unseal",
        "serve",
    ):
        assert command in r.out
    r = run("audit", "verify", "--help")
    assert "Exit status: 0 only if everything holds" in r.out
