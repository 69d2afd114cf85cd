"""Global configuration distribution over real gRPC + mTLS, on SQLite and PostgreSQL: periodic
re-signing, polling with a last good copy on disk, fail-closed expiry, and each forged or stale
configuration refused with its own error code."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import grpc
import pytest

from cdx import crypto, db, errors, keyfiles, rpc
from cdx.clock import utcnow
from cdx.confclient import ConfClient
from cdx.globalconf import VerifiedGlobalConf, sign_global_conf, to_ms, verify_global_conf
from cdx.paths import InstancePaths
from cdx.v1 import registry_pb2, registry_pb2_grpc
from registry.bootstrap import init_instance, open_registry
from registry.client import RegistryAdminClient
from registry.server import RunningRegistry, start_registry
from registry.testing import register_server
from tests.conftest import require_postgres
from tests.ports import closed_address
from tests.waiting import eventually

VALIDITY = timedelta(seconds=2)

# Keep this module's tests on one worker: they share one registry.
pytestmark = pytest.mark.xdist_group("registry-conf")


@dataclass
class Setup:
    paths: InstancePaths
    running: RunningRegistry
    admin: RegistryAdminClient
    server_identity: rpc.TlsIdentity
    db_url: str | None
    db_schema: str | None


def _new_instance(tmp: Path, backend: str) -> tuple[InstancePaths, str | None, str | None]:
    url, schema = None, None
    if backend == "postgres":
        url = require_postgres()
        schema = f"t_registry_conf_{uuid.uuid4().hex[:8]}"
    return init_instance(tmp, "VN", utcnow(), db_url=url, db_schema=schema), url, schema


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgres":
        require_postgres()
    return str(request.param)


@pytest.fixture(scope="module")
def setup(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    paths, url, schema = _new_instance(tmp_path_factory.mktemp(f"conf-{backend}"), backend)
    running = start_registry(
        paths, conf_validity=VALIDITY, refresh_interval=timedelta(seconds=0.05)
    )
    admin = RegistryAdminClient(running.address, paths.admin_identity())
    admin.add_member("VN:GOV:GDT", "General Department of Taxation")
    admin.add_subsystem("VN:GOV:GDT:income")
    keys, certs = register_server(admin, "VN:GOV:GDT:ss1", "127.0.0.1:7101", ["VN:GOV:GDT:income"])
    yield Setup(paths, running, admin, keys.identity(certs), url, schema)
    admin.close()
    running.stop()
    if url and schema:
        db.drop_schema(url, schema)


def conf_client(setup: Setup, path: Path, address: str | None = None, **kw: object) -> ConfClient:
    return ConfClient(
        address or setup.running.address,
        setup.server_identity,
        setup.paths.load_anchor(),
        path,
        **kw,  # type: ignore[arg-type]
    )


# --- the real registry ---------------------------------------------------------------------------


def test_registry_re_signs_the_conf_before_half_its_validity(setup: Setup) -> None:
    service = setup.running.service
    first = service.conf_version()
    eventually(lambda: service.conf_version() > first, timeout=VALIDITY.total_seconds() * 2)
    raw = service.current_conf()
    conf = registry_pb2.GlobalConf.FromString(registry_pb2.SignedGlobalConf.FromString(raw).conf)
    age_ms = to_ms(utcnow()) - conf.issued_at_ms
    assert age_ms < VALIDITY.total_seconds() * 1000 / 2 + 200
    assert conf.expires_at_ms - conf.issued_at_ms == VALIDITY.total_seconds() * 1000


def test_polling_client_follows_changes_and_keeps_a_copy(setup: Setup, tmp_path: Path) -> None:
    path = tmp_path / "globalconf.bin"
    client = conf_client(setup, path, poll_interval=timedelta(seconds=0.05))
    seen: list[VerifiedGlobalConf] = []
    client.on_update(seen.append)
    client.start()
    try:
        eventually(lambda: client.version > 0)
        setup.admin.add_purpose("TAX_ASSESSMENT", "Tax assessment")
        eventually(lambda: "TAX_ASSESSMENT" in client.current().purposes)
    finally:
        client.stop()
    versions = [c.version for c in seen]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)
    assert path.read_bytes() == seen[-1].raw
    assert client.age() is not None and client.age() < VALIDITY  # type: ignore[operator]
    assert client.last_error is None and client.last_success is not None


def test_server_fails_closed_when_the_registry_is_unreachable(setup: Setup, tmp_path: Path) -> None:
    path = tmp_path / "globalconf.bin"
    client = conf_client(setup, path)
    client.refresh()
    held = client.current()
    client.stop()

    # The registry goes away; a restarted server still has its copy, until it expires.
    with closed_address() as dead:
        cut_off = conf_client(setup, path, address=dead, timeout=1.0)
        try:
            assert cut_off.current(held.issued_at + timedelta(seconds=1)).version == held.version
            with pytest.raises(errors.UnavailableError):
                cut_off.refresh()
            assert isinstance(cut_off.last_error, errors.UnavailableError)
            with pytest.raises(errors.ConfExpiredError):
                cut_off.current(held.expires_at)
        finally:
            cut_off.stop()


# --- forged and stale configurations, served over mTLS by a rogue endpoint -----------------------


class _Rogue(registry_pb2_grpc.GlobalConfServiceServicer):  # type: ignore[misc]
    def __init__(self) -> None:
        self.raw = b""

    def GetGlobalConfiguration(
        self, request: registry_pb2.GetGlobalConfRequest, context: grpc.ServicerContext
    ) -> registry_pb2.GetGlobalConfResponse:
        return registry_pb2.GetGlobalConfResponse(
            conf=registry_pb2.SignedGlobalConf.FromString(self.raw)
        )


@pytest.fixture(scope="module")
def rogue(setup: Setup) -> Iterator[tuple[str, _Rogue]]:
    """A GlobalConfService with a certificate of the same CA (say, a compromised host) that
    serves whatever bytes the test sets: only the anchor check protects the server."""
    servicer = _Rogue()
    identity = setup.paths.registry_identity()
    server, _health = rpc.create_server(identity, max_workers=4)
    registry_pb2_grpc.add_GlobalConfServiceServicer_to_server(servicer, server)
    port = rpc.add_port(server, "127.0.0.1:0", identity)
    server.start()
    yield f"127.0.0.1:{port}", servicer
    server.stop(0).wait()


def _genuine(setup: Setup) -> registry_pb2.GlobalConf:
    raw = setup.running.service.current_conf()
    return registry_pb2.GlobalConf.FromString(registry_pb2.SignedGlobalConf.FromString(raw).conf)


def _registry_signer(setup: Setup) -> crypto.KeySigner:
    key = keyfiles.load_signing_key(setup.paths.registry_key, setup.paths.passphrase())
    return crypto.KeySigner(key)


def _forge_other_key(setup: Setup, now: datetime) -> bytes:
    conf = _genuine(setup)
    conf.version += 100
    return sign_global_conf(conf, crypto.KeySigner(crypto.generate_signing_key("ed25519")))


def _forge_expired(setup: Setup, now: datetime) -> bytes:
    conf = _genuine(setup)
    conf.version += 100
    conf.issued_at_ms = to_ms(now - timedelta(minutes=20))
    conf.expires_at_ms = to_ms(now - timedelta(minutes=10))
    return sign_global_conf(conf, _registry_signer(setup))


def _forge_rollback(setup: Setup, now: datetime) -> bytes:
    conf = _genuine(setup)
    conf.version = 1
    return sign_global_conf(conf, _registry_signer(setup))


def _forge_wrong_instance(setup: Setup, now: datetime) -> bytes:
    conf = _genuine(setup)
    conf.version += 100
    conf.instance = "EE"
    return sign_global_conf(conf, _registry_signer(setup))


@pytest.mark.parametrize(
    ("forge", "error", "code"),
    [
        (_forge_other_key, errors.ConfSignatureError, "conf_invalid_signature"),
        (_forge_expired, errors.ConfExpiredError, "conf_expired"),
        (_forge_rollback, errors.ConfRollbackError, "conf_rollback"),
        (_forge_wrong_instance, errors.ConfWrongInstanceError, "conf_wrong_instance"),
    ],
    ids=["signed-by-another-key", "expired", "rolled-back", "wrong-instance"],
)
def test_bad_conf_is_refused_and_the_last_good_copy_stays(
    setup: Setup,
    rogue: tuple[str, _Rogue],
    tmp_path: Path,
    forge: Callable[[Setup, datetime], bytes],
    error: type[errors.CdxError],
    code: str,
) -> None:
    path = tmp_path / "globalconf.bin"
    good = conf_client(setup, path)
    good.refresh()
    held = good.current()
    good.stop()

    address, servicer = rogue
    servicer.raw = forge(setup, utcnow())
    client = conf_client(setup, path, address=address)
    try:
        with pytest.raises(error) as info:
            client.refresh()
        assert info.value.code == code
        assert client.current().raw == held.raw
        assert path.read_bytes() == held.raw
        assert client.last_error is info.value
    finally:
        client.stop()


# --- restarts and replicas -----------------------------------------------------------------------


def test_versions_keep_increasing_across_a_registry_restart(backend: str, tmp_path: Path) -> None:
    paths, url, schema = _new_instance(tmp_path / "instance", backend)
    try:
        running = start_registry(paths)
        with RegistryAdminClient(running.address, paths.admin_identity()) as admin:
            admin.add_member("VN:GOV:MOH", "Ministry of Health")
            admin.add_subsystem("VN:GOV:MOH:records")
            keys, certs = register_server(admin, "VN:GOV:MOH:ss1", "127.0.0.1:7201", [])
        client = ConfClient(
            running.address, keys.identity(certs), paths.load_anchor(), tmp_path / "gc.bin"
        )
        client.refresh()
        before = client.version
        client.stop()
        running.stop()

        running = start_registry(paths)
        try:
            restarted = ConfClient(
                running.address, keys.identity(certs), paths.load_anchor(), tmp_path / "gc.bin"
            )
            assert restarted.version == before  # loaded from disk
            with RegistryAdminClient(running.address, paths.admin_identity()) as admin:
                admin.add_member("VN:GOV:MOF", "Ministry of Finance")
            assert restarted.refresh()
            assert restarted.version > before
            assert "VN:GOV:MOF" in restarted.current().members
            restarted.stop()
        finally:
            running.stop()
    finally:
        if url and schema:
            db.drop_schema(url, schema)


def test_two_replicas_publish_strictly_increasing_versions(backend: str, tmp_path: Path) -> None:
    paths, url, schema = _new_instance(tmp_path / "instance", backend)
    replicas = [open_registry(paths), open_registry(paths)]
    failures: list[BaseException] = []

    def work(index: int) -> None:
        try:
            service = replicas[index]
            for n in range(5):
                service.add_member(f"VN:GOV:R{index}N{n}", f"member {n}", f"admin:r{index}")
                service.refresh_conf()
        except BaseException as exc:  # collected and asserted below
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert failures == []
        anchor = paths.load_anchor()
        conf = verify_global_conf(replicas[0].current_conf(), anchor, utcnow())
        assert len(conf.members) == 10
        history = replicas[1].history(100)
        assert len([h for h in history if h.action == "member.add"]) == 10
        # one new version per change, none reused: 1 (init) + 2 certificates + 10 members
        assert conf.version >= 13
    finally:
        for r in replicas:
            r.engine.dispose()
        if url and schema:
            db.drop_schema(url, schema)
