"""Runs the audit log: store, sequencer, checkpointer and the ``AuditLog`` gRPC service.

``start_audit_service(...)`` migrates the database, starts the sequencer thread and the
checkpointer (a signed checkpoint every ``checkpoint_interval`` seconds when the tree grew) and
listens with mutual TLS. Given a ``TileStore`` it also publishes the log as C2SP tlog-tiles
(``audit.publisher``), and given ``tiles_listen`` serves them over HTTP(S) (``audit.http``).
The same port serves the entry feed of the notification service (``audit.entryfeed``).
Several processes may serve one database: appends stay consistent through the tree-state
compare-and-swap (see ``audit.sequencer``).

Keys of an audit data directory (``DATA/audit/``, private keys encrypted with the instance
passphrase, mode 0600), created by ``init_audit_keys``::

    log.key        Ed25519 key that signs checkpoints (its verifier text: log.vkey)
    record.key     ECDSA P-256 key that signs the log's own records (public: record.pub, DER)
    openings.key   X25519 master key wrapping the epoch keys of the openings
    audit.db       the SQLite database (PostgreSQL in production)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from cryptography.hazmat.primitives.asymmetric import ed25519, x25519
from sqlalchemy.engine import Engine

from audit import entryfeed, notes
from audit.aioserver import AioRunner, AsyncAuditLog, generic_handler
from audit.checkpointer import DEFAULT_INTERVAL, Checkpointer
from audit.cosigners import CosignatureCollector
from audit.entryfeed import EntryFeedServicer, EntryScanner
from audit.http import tiles_app
from audit.keys import KeyRing
from audit.publisher import TilePublisher
from audit.sequencer import Sequencer
from audit.service import AuditService
from audit.servicer import DEFAULT_TOKEN_AUDIENCE, DEFAULT_TOKEN_RELAYS, AuditLogServicer
from audit.sigpool import SignaturePool
from audit.store import AuditStore
from audit.tilestore import TileStore
from audit.tlogwitness import WitnessClient
from cdx import clock as cdx_clock
from cdx import crypto, db, errors, keyfiles, note, rpc, webserver
from cdx.globalconf import VerifiedGlobalConf
from cdx.representation import RepresentationChecker
from cdx.webserver import RunningWebServer
from consent.representation_client import RepresentationClient

log = logging.getLogger(__name__)

LOG_KEY = "log.key"
LOG_VKEY = "log.vkey"
RECORD_KEY = "record.key"
RECORD_PUB = "record.pub"
MASTER_KEY = "openings.key"
DATABASE = "audit.db"


@dataclass
class RunningAudit:
    """A started audit service and its parts."""

    address: str
    service: AuditService
    store: AuditStore
    sequencer: Sequencer
    checkpointer: Checkpointer
    engine: Engine
    _runner: AioRunner = field(repr=False)
    _threads: ThreadPoolExecutor = field(repr=False)
    _signatures: SignaturePool | None = field(default=None, repr=False)
    publisher: TilePublisher | None = None
    collector: CosignatureCollector | None = None
    tiles_url: str = ""
    _web: RunningWebServer | None = field(default=None, repr=False)
    _stopped: bool = field(default=False, repr=False)
    _on_stop: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def stop(self, grace: float | None = 0.5) -> None:
        """Stop serving, drain the sequencer, stop the checkpointer."""
        if self._stopped:
            return
        self._stopped = True
        self._runner.mark_serving(False)
        if self._web is not None:
            self._web.stop()
        self._runner.stop(grace)
        self._threads.shutdown(wait=True)
        if self._signatures is not None:
            self._signatures.close()
        if self.publisher is not None:
            self.publisher.stop()
        if self.collector is not None:
            self.collector.stop()
        self.checkpointer.stop()
        self.sequencer.stop()
        self.store.close()
        self.engine.dispose()
        for close in self._on_stop:
            close()

    def wait(self) -> None:
        """Block until the server stops (for ``cdx audit serve``)."""
        self._runner.wait()

    def __enter__(self) -> RunningAudit:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_audit_service(
    engine: Engine,
    identity: rpc.TlsIdentity,
    *,
    log_signer: note.NoteSigner,
    record_signer: crypto.Signer,
    master_key: x25519.X25519PrivateKey,
    conf: Callable[[], VerifiedGlobalConf],
    address: str = "127.0.0.1:0",
    checkpoint_interval: float = DEFAULT_INTERVAL,
    clock: cdx_clock.Clock = cdx_clock.utcnow,
    token_audience: str = DEFAULT_TOKEN_AUDIENCE,
    token_relays: Sequence[str] = DEFAULT_TOKEN_RELAYS,
    max_workers: int = 32,
    verify_workers: int = 0,
    migrate: bool = True,
    tiles: TileStore | None = None,
    tiles_listen: str | None = None,
    tiles_tls: TlsFiles | None = None,
    witnesses: Sequence[WitnessClient] = (),
    representation: RepresentationChecker | None = None,
) -> RunningAudit:
    """Start an audit service over ``engine`` listening on ``address`` with mutual TLS.

    ``log_signer`` signs checkpoints (its origin is ``conf().audit_log_origin``, or the signer's
    key name when global configuration names none); ``record_signer`` signs the log's own
    records and must be the key global configuration anchors as ``audit_service_key``.
    ``verify_workers`` worker processes check the record signatures of batches (0: in the
    request's thread). ``tiles`` is where the tlog-tiles are published; ``tiles_listen``
    (``HOST:PORT``) serves them over HTTP, over HTTPS with ``tiles_tls``. Each new checkpoint
    is sent to ``witnesses`` (tlog-witness ``add-checkpoint``) and their cosignatures stored.
    ``representation`` confirms that a citizen may read the history of someone they legally
    represent (default: the consent service global configuration names, asked over
    ``identity``).

    Raises:
        UnavailableError: the address cannot be bound.
        ConfExpiredError / UnavailableError: no current global configuration.
    """
    if migrate:
        db.migrate(engine, "audit")
    current = conf()
    origin = current.audit_log_origin or log_signer.name
    _check_anchors(current, log_signer, record_signer)
    audit_store = AuditStore(engine)
    sequencer = Sequencer(
        engine,
        clock=clock,
        on_commit=lambda s: audit_store.note_committed(s.size),
        seal=lambda entries: service.seal_openings(entries),
    )
    keyring = KeyRing(audit_store, master_key)
    service = AuditService(audit_store, sequencer, keyring, conf, record_signer, clock=clock)
    runner = AioRunner(identity)
    publisher = TilePublisher(audit_store, tiles, conf=conf) if tiles is not None else None

    def published() -> None:
        service.forget_checkpoints()
        if publisher is not None:  # tiles right after each checkpoint, not a round later
            publisher.nudge()

    checkpointer = Checkpointer(
        audit_store,
        log_signer,
        origin,
        interval=checkpoint_interval,
        clock=clock,
        # A store that no longer extends its last checkpoint shows as NOT_SERVING.
        on_health=lambda problem: runner.mark_serving(problem is None),
        on_publish=published,
    )
    threads = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="cdx-audit")
    signatures = SignaturePool(verify_workers) if verify_workers > 0 else None
    if signatures is not None:
        signatures.warm_up()
    on_stop: list[Callable[[], None]] = []
    if representation is None:
        client = RepresentationClient(lambda: conf().consent_service_address, identity)
        on_stop.append(client.close)
        representation = client
    servicer = AuditLogServicer(
        service,
        token_audience=token_audience,
        token_relays=token_relays,
        clock=clock,
        representation=representation,
    )
    sequencer.start()
    try:
        checkpointer.publish_once()  # the first checkpoint (maybe of the empty tree) at once
    except errors.CheckpointInconsistentError:
        log.error("the audit store does not extend its last checkpoint; not serving appends")
    checkpointer.start()
    collector = CosignatureCollector(
        audit_store,
        list(witnesses),
        clock=clock,
        stored_as=lambda verifier: _witness_id(conf(), verifier),
        on_store=service.forget_checkpoints,
    ).start()
    web = None
    if tiles is not None and publisher is not None:
        publisher.start()
        if tiles_listen:
            files = tiles_tls or TlsFiles()
            web = webserver.serve(
                tiles_app(tiles),
                tiles_listen,
                name="cdx-audit-tiles",
                tls_cert=files.cert,
                tls_key=files.key,
                tls_key_password=files.password,
            )
    try:
        feed = EntryFeedServicer(
            EntryScanner(audit_store, keyring), service.conf, servicer.peer, threads
        )
        port = runner.start(
            generic_handler(AsyncAuditLog(servicer, service, threads, signatures)),
            address,
            (entryfeed.generic_handler(feed),),
        )
    except BaseException:
        runner.stop(0)
        raise
    runner.mark_serving(checkpointer.health() is None)
    bound = f"{address.rsplit(':', 1)[0]}:{port}"
    log.info("audit log %s listening on %s", origin, bound)
    return RunningAudit(
        address=bound,
        service=service,
        store=audit_store,
        sequencer=sequencer,
        checkpointer=checkpointer,
        engine=engine,
        publisher=publisher,
        collector=collector,
        tiles_url=web.url if web is not None else "",
        _web=web,
        _runner=runner,
        _threads=threads,
        _signatures=signatures,
        _on_stop=on_stop,
    )


def _witness_id(conf: VerifiedGlobalConf, verifier: note.CosignatureVerifier) -> str:
    """The server id of a registered witness with this key, else the key's name."""
    for server_id, registered in notes.witness_verifiers(conf).items():
        if (registered.name, registered.key_id) == (verifier.name, verifier.key_id):
            return server_id
    return verifier.name


@dataclass(frozen=True)
class TlsFiles:
    """A certificate file and its (encrypted) key file for HTTPS; empty: plain HTTP."""

    cert: str | None = None
    key: str | None = None
    password: str | None = field(default=None, repr=False)


def _check_anchors(
    conf: VerifiedGlobalConf, log_signer: note.NoteSigner, record_signer: crypto.Signer
) -> None:
    """Warn when global configuration anchors other keys than the ones this process holds:
    its checkpoints or records would then fail everyone's verification."""
    if conf.audit_log_key and conf.audit_log_key != log_signer.verifier_key():
        log.warning("global configuration anchors another audit log key than this one")
    if conf.audit_service_key_der:
        anchored = crypto.key_id(crypto.public_key_from_der(conf.audit_service_key_der))
        if anchored != record_signer.key_id:
            log.warning("global configuration anchors another audit service key than this one")
    else:
        log.warning("global configuration anchors no audit service key yet")


# --- periods (temporal sharding) ---------------------------------------------------------------


def _offline_conf() -> VerifiedGlobalConf:
    raise errors.FailedPreconditionError("no global configuration is needed to start a period")


def anchor_new_period(
    previous: AuditStore,
    previous_key: note.NoteVerifier,
    previous_origin: str,
    engine: Engine,
    keys: AuditKeys,
    *,
    clock: cdx_clock.Clock = cdx_clock.utcnow,
) -> int:
    """Start the log of a new period over ``engine`` (an empty database; ``keys`` made by
    ``init_audit_keys`` with the new origin): its first entry anchors the last checkpoint of
    the ``previous`` log (``AuditService.anchor_previous_log``). Both logs must be stopped.
    Returns the size of the previous log the new one anchors.

    Raises:
        InvalidArgumentError: the new log has the previous log's origin.
        FailedPreconditionError: the previous log has no checkpoint, or entries that no
            checkpoint covers yet; the new log already has entries.
        NoteSignatureError / NoteFormatError / VerificationError: the previous log's checkpoint
            does not verify under ``previous_key`` for ``previous_origin``.
    """
    if keys.log_signer.name == previous_origin:
        raise errors.InvalidArgumentError("a new period needs a new origin (cdx audit init)")
    last = previous.latest_checkpoint()
    if last is None:
        raise errors.FailedPreconditionError("the previous log has no checkpoint")
    unsigned = previous.tree_state().size - last.size
    if unsigned:
        raise errors.FailedPreconditionError(
            f"the previous log has {unsigned} entries no checkpoint covers yet: serve it "
            "until its checkpointer signs them, then stop it and anchor"
        )
    db.migrate(engine, "audit")
    store = AuditStore(engine)
    sequencer = Sequencer(engine, clock=clock).start()  # the anchor has no opening to seal
    try:
        service = AuditService(
            store,
            sequencer,
            KeyRing(store, keys.master_key),
            _offline_conf,
            keys.record_signer,
            clock=clock,
        )
        service.anchor_previous_log(last.note_with_cosignatures, previous_key, previous_origin)
    finally:
        sequencer.stop()
        store.close()
    return last.size


# --- keys of an audit data directory -----------------------------------------------------------


@dataclass(frozen=True)
class AuditKeys:
    """The secret keys an audit service holds."""

    log_signer: note.NoteSigner
    record_signer: crypto.KeySigner
    master_key: x25519.X25519PrivateKey = field(repr=False)

    @property
    def log_verifier_key(self) -> str:
        """The verifier key text to anchor in global configuration (``audit_log_key``)."""
        return self.log_signer.verifier_key()

    @property
    def record_public_der(self) -> bytes:
        """The SPKI DER to anchor in global configuration (``audit_service_key``)."""
        return crypto.public_key_to_der(self.record_signer.public_key())


def init_audit_keys(
    data_dir: Path, passphrase: bytes, origin: str, *, continues: Path | None = None
) -> AuditKeys:
    """Create the audit service's keys in ``data_dir`` (refuses to overwrite existing ones).

    ``origin`` names the log (the checkpoint origin line and the log key's name), e.g.
    ``cdx.example.vn/audit``. ``continues`` is the directory of the log a new period follows
    (temporal sharding): its audit service key, which global configuration anchors and which
    signed the old period's own entries, is kept; the log key and the openings key are new.

    Raises:
        AlreadyExistsError: keys already exist there.
        KeyStoreError: a file could not be written, or ``continues`` holds no record key.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    for name in (LOG_KEY, RECORD_KEY, MASTER_KEY):
        if (data_dir / name).exists():
            raise errors.AlreadyExistsError(f"{data_dir / name} exists")
    record_key = (
        keyfiles.load_signing_key(continues / RECORD_KEY, passphrase)
        if continues is not None
        else crypto.generate_signing_key()
    )
    log_key = ed25519.Ed25519PrivateKey.generate()
    keyfiles.save_private_key(data_dir / LOG_KEY, log_key, passphrase)
    keyfiles.save_private_key(data_dir / RECORD_KEY, record_key, passphrase)
    keyfiles.save_private_key(data_dir / MASTER_KEY, crypto.generate_hpke_key(), passphrase)
    (data_dir / "origin").write_text(origin + "\n")
    keys = load_audit_keys(data_dir, passphrase)
    (data_dir / LOG_VKEY).write_text(keys.log_verifier_key + "\n")
    (data_dir / RECORD_PUB).write_bytes(keys.record_public_der)
    return keys


def load_audit_keys(data_dir: Path, passphrase: bytes) -> AuditKeys:
    """Load the keys ``init_audit_keys`` created.

    Raises:
        KeyStoreError: a key is missing, unreadable or of the wrong type.
    """
    try:
        origin = (data_dir / "origin").read_text().strip()
    except FileNotFoundError as exc:
        raise errors.KeyStoreError(f"no audit keys in {data_dir} (run init)") from exc
    log_key = keyfiles.load_private_key(data_dir / LOG_KEY, passphrase)
    if not isinstance(log_key, ed25519.Ed25519PrivateKey):
        raise errors.KeyStoreError("the log key must be an Ed25519 key")
    return AuditKeys(
        log_signer=note.NoteSigner(origin, log_key),
        record_signer=crypto.KeySigner(
            keyfiles.load_signing_key(data_dir / RECORD_KEY, passphrase)
        ),
        master_key=keyfiles.load_hpke_key(data_dir / MASTER_KEY, passphrase),
    )
