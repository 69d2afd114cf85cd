"""A whole CDX instance on loopback for integration tests: registry, three agencies, backends.

``build_instance(tmp_path)`` creates, in ``tmp_path``:

- a registry (``registry.bootstrap.init_instance`` + ``start_registry``) for instance ``VN``;
- three agencies, each with a member, one subsystem, a security server (real keys, registered
  through the registry, real mutual TLS), a sample backend over SQLite, an information-system
  client certificate and an API token:

  ===========  ===============  =======================  =================================
  key          member           subsystem                service (backend kind)
  ===========  ===============  =======================  =================================
  population   VN:GOV:BCA       VN:GOV:BCA:population    VN:GOV:BCA:population/person/v1
  tax          VN:GOV:GDT       VN:GOV:GDT:income        VN:GOV:GDT:income/income/v1
  social       VN:GOV:VSS       VN:GOV:VSS:benefits      VN:GOV:VSS:benefits/insurance/v1
  ===========  ===============  =======================  =================================

- the agreements in ``AGREEMENTS`` (see there), purposes in ``PURPOSES``.

Citizens and their data come from ``security_server.backends.sample`` (``CITIZENS``).

Each server runs on its own ``OffsetClock`` (``instance.agency("tax").clock.offset = ...``)
so tests can make one party's configuration expire or its messages stale. Servers listed in
``relay`` are registered behind a ``TcpRelay`` that records every byte peers send them.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
from cryptography.hazmat.primitives import serialization

from cdx import crypto, envelope, pki, rpc
from cdx.clock import utcnow
from cdx.globalconf import to_ms
from cdx.lawful import ConsentChecker
from cdx.v1 import audit_pb2, common_pb2, exchange_pb2, exchange_pb2_grpc
from registry.bootstrap import init_instance
from registry.server import RunningRegistry, start_registry
from security_server import provisioning
from security_server.backends import RunningBackend, start_backend
from security_server.backends.sample import CITIZENS, KINDS, UNKNOWN_CITIZEN
from security_server.config import Limits, SecurityServerConfig, hash_token
from security_server.outbox import AuditShipper
from security_server.records import new_id
from security_server.server import RunningSecurityServer, start_security_server
from stack.provision import free_port
from stack.topology import AGREEMENTS, PURPOSES, SPECS, AgencySpec, AgreementSpec

INSTANCE = "VN"
ADMIN = "admin:test"

__all__ = [
    "AGREEMENTS",
    "CITIZENS",
    "PURPOSES",
    "UNKNOWN_CITIZEN",
    "Agency",
    "ExchangeInstance",
    "Forger",
    "OffsetClock",
    "TcpRelay",
    "build_instance",
]


class OffsetClock:
    """``utcnow() + offset``; tests move one server's clock without touching the others."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return utcnow() + self.offset


class TcpRelay:
    """A TCP forwarder that records the bytes each connection's client sends (``captured``)."""

    def __init__(self) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self.target: tuple[str, int] | None = None
        self._lock = threading.Lock()
        self.client_streams: list[bytearray] = []
        self.server_streams: list[bytearray] = []
        self._closed = False
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True, name="test-relay").start()

    def point_to(self, address: str) -> None:
        host, port = address.rsplit(":", 1)
        self.target = (host, int(port))

    def captured(self) -> bytes:
        """Everything clients sent, all connections concatenated."""
        with self._lock:
            return b"".join(bytes(s) for s in self.client_streams)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.target is None:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            up, down = bytearray(), bytearray()
            with self._lock:
                self.client_streams.append(up)
                self.server_streams.append(down)
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, up), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, down), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, sink: bytearray) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                with self._lock:
                    sink.extend(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            for s in self._sockets:
                with contextlib.suppress(OSError):
                    s.close()


@dataclass
class Agency:
    """One agency: its identifiers, security server, backend and information-system client."""

    spec: AgencySpec
    data_dir: Path
    config: SecurityServerConfig
    clock: OffsetClock
    backend: RunningBackend
    client_identity: rpc.TlsIdentity = field(repr=False)
    token: str = field(repr=False)
    registered_address: str = ""
    relay: TcpRelay | None = None
    server: RunningSecurityServer | None = None
    consent_checker: ConsentChecker | None = None
    audit_shipper: AuditShipper | None = None
    _channels: dict[str, grpc.Channel] = field(default_factory=dict, repr=False)

    @property
    def key(self) -> str:
        return self.spec.key

    @property
    def server_id(self) -> str:
        return self.spec.server_id

    @property
    def subsystem(self) -> str:
        return self.spec.subsystem

    @property
    def service(self) -> str:
        return self.spec.service

    @property
    def running(self) -> RunningSecurityServer:
        assert self.server is not None, f"server of {self.key} is not running"
        return self.server

    def start(self) -> RunningSecurityServer:
        self.server = start_security_server(
            self.config,
            consent_checker=self.consent_checker,
            audit_shipper=self.audit_shipper,
            now_fn=self.clock,
        )
        if self.relay is not None:
            self.relay.point_to(self.server.exchange_address)
        return self.server

    def stop(self) -> None:
        self._close_channels()
        if self.server is not None:
            self.server.stop(0.2)
            self.server = None

    def restart(self) -> RunningSecurityServer:
        self.stop()
        return self.start()

    def mark(self) -> int:
        """The newest outbox sequence number: pass it to ``records_since`` later."""
        return self.running.outbox.last_seq()

    def records_since(self, mark: int) -> list[audit_pb2.AccessRecord]:
        """Access records this server made after ``mark`` (decoded, in order)."""
        return self.running.outbox.records(after_seq=mark)

    def exchange_identity(self) -> rpc.TlsIdentity:
        """This server's own mutual-TLS identity (its registered auth certificate)."""
        return self.running.keys.tls

    def _close_channels(self) -> None:
        for ch in self._channels.values():
            ch.close()
        self._channels.clear()

    def gateway(self, via: str = "cert") -> exchange_pb2_grpc.GatewayStub:
        """A Gateway stub as this agency's information system (``via`` = "cert" or "token")."""
        server = self.running
        key = f"{via}:{server.gateway_address}:{server.gateway_token_address}"
        channel = self._channels.get(key)
        if channel is None:
            if via == "cert":
                channel = rpc.secure_channel(server.gateway_address, self.client_identity)
            else:
                assert server.gateway_token_address, "token gateway disabled"
                channel = rpc.secure_channel(
                    server.gateway_token_address, None, self.client_identity.ca_pem
                )
            self._channels[key] = channel
        return exchange_pb2_grpc.GatewayStub(channel)

    def query(
        self,
        service: str,
        subject: str,
        purpose: str,
        fields: Sequence[str] = (),
        *,
        consent_id: str = "",
        via: str = "cert",
        client: str | None = None,
        timeout: float = 10.0,
    ) -> exchange_pb2.QueryResponse:
        """``Gateway.Query`` as this agency; raises the ``CdxError`` of a refusal."""
        request = exchange_pb2.QueryRequest(
            client=self.subsystem if client is None else client,
            service=service,
            subject=subject,
            purpose=purpose,
            fields=list(fields),
            consent_id=consent_id,
        )
        metadata = (("authorization", f"Bearer {self.token}"),) if via == "token" else None
        result: exchange_pb2.QueryResponse = rpc.invoke(
            self.gateway(via).Query, request, timeout=timeout, metadata=metadata
        )
        return result


@dataclass
class ExchangeInstance:
    root: Path
    registry: RunningRegistry
    agencies: dict[str, Agency]
    admin_identity: rpc.TlsIdentity = field(repr=False)

    @property
    def registry_service(self) -> Any:
        return self.registry.service

    def agency(self, key: str) -> Agency:
        return self.agencies[key]

    def forger(self, consumer: str) -> Forger:
        """Builds raw request envelopes as ``consumer``'s server would (to attack providers)."""
        return Forger(self, self.agencies[consumer])

    def sync_conf(self) -> None:
        """Make every running server fetch the registry's latest configuration now."""
        for agency in self.agencies.values():
            if agency.server is not None:
                with contextlib.suppress(Exception):
                    agency.server.conf_client.refresh()

    def close(self) -> None:
        for agency in self.agencies.values():
            agency.stop()
            agency.backend.stop()
            if agency.relay is not None:
                agency.relay.close()
        self.registry.stop()


class Forger:
    """Crafts request envelopes with a consumer server's real keys, then lets a test break them.

    ``build(...)`` returns a correctly sealed and signed request (``envelope.SealedRequest``);
    ``send(provider, env)`` posts it to the provider's exchange endpoint over mutual TLS with
    the consumer's auth certificate (or ``identity``) and returns the verified response body
    data, raising the provider's ``CdxError`` on refusal.
    """

    def __init__(self, instance: ExchangeInstance, consumer: Agency) -> None:
        self.instance = instance
        self.consumer = consumer
        self._channels: dict[tuple[str, bytes], grpc.Channel] = {}

    def build(
        self,
        provider: str,
        *,
        subject: str = CITIZENS[0].id,
        purpose: str = "SOCIAL_BENEFIT_ELIGIBILITY",
        fields: Sequence[str] = (),
        service: str | None = None,
        client: str | None = None,
        consumer_server: str | None = None,
        provider_server: str | None = None,
        issued_at: datetime | None = None,
        issued_at_delta: timedelta = timedelta(0),
        protocol_version: int = envelope.PROTOCOL_VERSION,
        lawful_basis: int = common_pb2.LAWFUL_BASIS_UNSPECIFIED,
        signer: crypto.Signer | None = None,
        message_id: str | None = None,
    ) -> envelope.SealedRequest:
        target = self.instance.agencies[provider]
        now = (issued_at or self.consumer.clock()) + issued_at_delta
        conf = self.consumer.running.conf_client.current()
        provider_info = conf.servers[target.server_id]
        header = exchange_pb2.EnvelopeHeader(
            protocol_version=protocol_version,
            message_id=message_id or new_id(),
            client=client or self.consumer.subsystem,
            consumer_server=consumer_server or self.consumer.server_id,
            service=service or target.service,
            provider_server=provider_server or target.server_id,
            purpose=purpose,
            lawful_basis=lawful_basis,  # type: ignore[arg-type]
            fields=list(fields),
            issued_at_ms=to_ms(now),
            deadline_ms=to_ms(now + timedelta(seconds=30)),
        )
        body = exchange_pb2.RequestBody(subject=subject)
        return envelope.seal_request(
            header,
            body,
            provider_info.hpke_public_key,
            signer or self.consumer.running.keys.signer,
        )

    def resign(self, env: exchange_pb2.SignedEnvelope) -> exchange_pb2.SignedEnvelope:
        """Sign ``env``'s (possibly altered) header and ciphertext again with the real key."""
        signed = envelope.signing_input(env.header, env.ciphertext)
        return exchange_pb2.SignedEnvelope(
            header=env.header,
            ciphertext=env.ciphertext,
            signature=self.consumer.running.keys.signer.sign(signed),
        )

    def send(
        self,
        provider: str,
        env: exchange_pb2.SignedEnvelope,
        *,
        identity: rpc.TlsIdentity | None = None,
        timeout: float = 10.0,
    ) -> exchange_pb2.SignedEnvelope:
        target = self.instance.agencies[provider]
        tls = identity or self.consumer.exchange_identity()
        address = target.running.exchange_address
        key = (address, tls.cert_pem)
        channel = self._channels.get(key)
        if channel is None:
            channel = rpc.secure_channel(address, tls)
            self._channels[key] = channel
        result: exchange_pb2.SignedEnvelope = rpc.invoke(
            exchange_pb2_grpc.ExchangeStub(channel).Forward, env, timeout=timeout
        )
        return result

    def open(
        self, provider: str, sealed: envelope.SealedRequest, answer: exchange_pb2.SignedEnvelope
    ) -> envelope.VerifiedResponse:
        """Verify and decrypt a provider's answer to ``sealed``."""
        target = self.instance.agencies[provider]
        conf = self.consumer.running.conf_client.current()
        return envelope.open_response(
            answer,
            request_hash=sealed.request_hash,
            response_key=sealed.response_key,
            provider_signing_key=conf.servers[target.server_id].signing_public_key,
        )

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()


def _pem_key(key: crypto.PrivateSigningKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def client_identity(service: Any, subsystem: str, ca_pem: bytes) -> rpc.TlsIdentity:
    key = crypto.generate_signing_key("ecdsa-p256")
    issued = service.issue_client_certificate(
        pki.build_csr(key, "information system"), "client", subsystem, ADMIN
    )
    return rpc.TlsIdentity(issued.cert_pem, _pem_key(key), ca_pem)


def build_instance(
    root: Path,
    *,
    relay: Iterable[str] = (),
    audit_shippers: dict[str, AuditShipper] | None = None,
    consent_checkers: dict[str, ConsentChecker] | None = None,
    configure: Callable[[str, SecurityServerConfig], SecurityServerConfig] | None = None,
    agreements: Sequence[AgreementSpec] = AGREEMENTS,
    start: bool = True,
    limits: Limits | None = None,
    database: Callable[[str], tuple[str, str | None]] | None = None,
) -> ExchangeInstance:
    """Build (and by default start) a three-agency instance under ``root``.

    ``relay``: agency keys whose exchange endpoint is registered behind a ``TcpRelay``.
    ``configure(key, config)``: adjust a server's config (e.g. the outbox window).
    ``database(name) -> (url, schema)``: where each server keeps its outbox and replay cache
    (the ``db_url_factory`` fixture; default: SQLite ``ss.db`` in each server's data dir).
    Call ``instance.close()`` when done (module-scoped fixtures share one instance).
    """
    now = utcnow()
    paths = init_instance(root, INSTANCE, now)
    registry = start_registry(paths, "127.0.0.1:0")
    service = registry.service
    passphrase = paths.passphrase()
    anchor_json = paths.anchor.read_bytes()
    ca_pem = paths.load_ca_pem()
    agencies: dict[str, Agency] = {}
    relay_keys = set(relay)
    try:
        for code, (description, description_vi) in PURPOSES.items():
            service.add_purpose(code, description, description_vi, ADMIN)
        for spec in SPECS:
            service.add_member(spec.member, spec.name, ADMIN)
            service.add_subsystem(spec.subsystem, ADMIN)
            kind = KINDS[spec.kind]
            service.add_service(
                spec.service, list(kind.fields), ["personal"], kind.description, ADMIN
            )
        for spec in SPECS:
            data_dir = root / "servers" / spec.server_dir_name
            relay_obj = TcpRelay() if spec.key in relay_keys else None
            exchange_port = free_port()
            registered = relay_obj.address if relay_obj else f"127.0.0.1:{exchange_port}"
            provisioning.provision(
                data_dir,
                spec.server_id,
                registered,
                [spec.subsystem],
                passphrase,
                anchor_json,
                provisioning.register_with_service(service, ADMIN),
            )
            backend = start_backend(spec.kind, root / "backends" / f"{spec.kind}.db")
            token = crypto.new_salt().hex()
            db_url, db_schema = database(f"ss_{spec.key}") if database else ("", None)
            config = SecurityServerConfig(
                server_id=spec.server_id,
                data_dir=data_dir,
                exchange_address=f"127.0.0.1:{exchange_port}",
                gateway_address="127.0.0.1:0",
                gateway_token_address="127.0.0.1:0",
                registry_address=registry.address,
                passphrase_file=paths.passphrase_file,
                database_url=db_url,
                database_schema=db_schema,
                backends={spec.subsystem: backend.address},
                gateway_tokens={hash_token(token): spec.subsystem},
                workers=8,
                conf_poll_s=1.0,
                # Most test instances ship nowhere; a module's instance may outlive the default
                # 5-minute backlog window on a loaded machine. Tests of the window set their own.
                outbox_window_s=3600.0,
                limits=limits or Limits(),
            )
            if configure is not None:
                config = configure(spec.key, config)
            agencies[spec.key] = Agency(
                spec=spec,
                data_dir=data_dir,
                config=config,
                clock=OffsetClock(),
                backend=backend,
                client_identity=client_identity(service, spec.subsystem, ca_pem),
                token=token,
                registered_address=registered,
                relay=relay_obj,
                consent_checker=(consent_checkers or {}).get(spec.key),
                audit_shipper=(audit_shippers or {}).get(spec.key),
            )
        for a in agreements:
            client, provider = agencies[a.client], agencies[a.provider]
            service.add_agreement(
                client.subsystem,
                provider.service,
                a.purpose,
                a.lawful_basis,
                a.legal_reference,
                list(a.fields),
                a.rate_limit_per_minute,
                0,
                a.sealed,
                actor=ADMIN,
            )
        instance = ExchangeInstance(root, registry, agencies, paths.admin_identity())
        if start:
            for agency in agencies.values():
                agency.start()
    except BaseException:
        for agency in agencies.values():
            with contextlib.suppress(Exception):
                agency.stop()
            with contextlib.suppress(Exception):
                agency.backend.stop()
        registry.stop()
        raise
    return instance
