"""A whole CDX instance on loopback for integration tests: registry, three agencies, backends.

``build_instance(tmp_path)`` provisions the sample instance of ``stack`` in ``tmp_path``
(``stack.provision.create_instance``: registry and CA for instance ``VN``, three agencies with
registered security servers, sample registers, information-system client certificates and API
tokens, the agreements of ``AGREEMENTS``) and starts it with ``stack.runtime.start_instance``:
the composition the demo and `cdx up` run. By default only the registry and the agencies run
here (``HARNESS``); ``options`` adds the consent service, the audit log, witnesses or the
portal (``consent_env``, ``tests/e2e/portal_env.py``).

  ===========  ===============  =======================  =================================
  key          member           subsystem                service (backend kind)
  ===========  ===============  =======================  =================================
  population   VN:GOV:BCA       VN:GOV:BCA:population    VN:GOV:BCA:population/person/v1
  tax          VN:GOV:GDT       VN:GOV:GDT:income        VN:GOV:GDT:income/income/v1
  social       VN:GOV:VSS       VN:GOV:VSS:benefits      VN:GOV:VSS:benefits/insurance/v1
  ===========  ===============  =======================  =================================

Citizens and their data come from ``security_server.backends.sample`` (``CITIZENS``).

Every server binds port 0 and its address is registered once bound. Each server runs on its
own ``OffsetClock`` (``instance.agency("tax").clock.offset = ...``) so tests can make one
party's configuration expire or its messages stale; such a test builds its own instance
(``build_instance(tmp_path)``), never changes a module's. Servers listed in ``relay`` are
registered behind a ``TcpRelay`` that records every byte peers send them.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
from cryptography.hazmat.primitives import serialization

from cdx import crypto, envelope, pki, rpc
from cdx.clock import utcnow
from cdx.globalconf import to_ms
from cdx.keyfiles import load_identity
from cdx.lawful import ConsentChecker
from cdx.paths import InstancePaths
from cdx.v1 import audit_pb2, common_pb2, exchange_pb2, exchange_pb2_grpc
from registry.server import RunningRegistry
from security_server.backends.sample import CITIZENS, UNKNOWN_CITIZEN
from security_server.config import Limits, SecurityServerConfig
from security_server.outbox import AuditShipper
from security_server.records import new_id
from stack.agency import RunningAgency
from stack.provision import create_instance
from stack.runtime import RunningInstance, StackOptions, start_instance
from stack.topology import AGREEMENTS, PURPOSES, SAMPLE, AgencySpec, AgreementSpec

INSTANCE = "VN"
ADMIN = "admin:test"

#: What the harness runs by default: the registry and the agencies (started by the harness,
#: with the plug-ins a test gives), polling global configuration every second.
HARNESS = StackOptions(
    consent=False,
    audit=False,
    witnesses=False,
    portal=False,
    notify=False,
    conf_poll=timedelta(seconds=1),
)

__all__ = [
    "ADMIN",
    "AGREEMENTS",
    "CITIZENS",
    "HARNESS",
    "PURPOSES",
    "UNKNOWN_CITIZEN",
    "Agency",
    "AgencySpec",
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


class Agency(RunningAgency):
    """One agency (``stack.agency.RunningAgency``) as its information system sees it: gateway
    stubs, queries, and the records its server made."""

    def __init__(self, spec: AgencySpec, *args: Any, relay_keys: frozenset[str], **kw: Any) -> None:
        kw["clock"] = OffsetClock()
        super().__init__(spec, *args, **kw)
        self.clock: OffsetClock = kw["clock"]
        client_dir = self.instance_dir / "clients" / spec.key
        self.client_identity: rpc.TlsIdentity = load_identity(
            client_dir / "client.pem",
            client_dir / "client.key",
            InstancePaths(self.instance_dir).ca_pem,
            InstancePaths(self.instance_dir).passphrase(),
        )
        self.token: str = (client_dir / "token").read_text().strip()
        self.relay: TcpRelay | None = TcpRelay() if spec.key in relay_keys else None
        self._channels: dict[str, grpc.Channel] = {}

    def advertise(self, bound: str) -> str:
        if self.relay is None:
            return bound
        self.relay.point_to(bound)
        return self.relay.address

    def stop(self, grace: float = 0.2) -> None:
        self._close_channels()
        super().stop(grace)

    def close(self) -> None:
        super().close()
        if self.relay is not None:
            self.relay.close()

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
        token: str | None = None,
        timeout: float = 10.0,
    ) -> exchange_pb2.QueryResponse:
        """``Gateway.Query`` as this agency (``token``: present another API token than its
        own); raises the ``CdxError`` of a refusal."""
        request = exchange_pb2.QueryRequest(
            client=self.subsystem if client is None else client,
            service=service,
            subject=subject,
            purpose=purpose,
            fields=list(fields),
            consent_id=consent_id,
        )
        bearer = self.token if token is None else token
        metadata = (("authorization", f"Bearer {bearer}"),) if via == "token" else None
        result: exchange_pb2.QueryResponse = rpc.invoke(
            self.gateway(via).Query, request, timeout=timeout, metadata=metadata
        )
        return result


class ExchangeInstance:
    """A running test instance: the stack (``stack``), its registry and its agencies."""

    def __init__(self, stack: RunningInstance) -> None:
        self.stack = stack
        self.root: Path = stack.data_dir
        #: The running registry (a test that restarts it puts the new one here).
        self.registry: RunningRegistry = stack.registry
        self.agencies: dict[str, Agency] = {
            k: a for k, a in stack.agencies.items() if isinstance(a, Agency)
        }
        self.admin_identity: rpc.TlsIdentity = self.registry.paths.admin_identity()

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
        self.stack.sync_conf()

    def close(self) -> None:
        self.stack.stop()
        if self.registry is not self.stack.registry:
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
    """A new information-system certificate for ``subsystem`` (unencrypted key in memory)."""
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
    options: StackOptions = HARNESS,
    witness_quorum: int = 0,
) -> ExchangeInstance:
    """Provision the sample instance under ``root``, start it, and (by default) its servers.

    ``relay``: agency keys whose exchange endpoint is registered behind a ``TcpRelay``.
    ``audit_shippers`` / ``consent_checkers``: plug-ins by agency key (test doubles).
    ``configure(key, config)``: adjust a server's config (e.g. the outbox window).
    ``database(name) -> (url, schema)``: where each server keeps its outbox and replay cache
    (the ``db_url_factory`` fixture; default: SQLite ``ss.db`` in each server's data dir).
    ``options``: which other components run (default ``HARNESS``: none).
    The registers always run; with ``start=False`` the security servers wait for
    ``agency.start()``. Call ``instance.close()`` when done.
    """

    def settings(key: str, config: SecurityServerConfig) -> SecurityServerConfig:
        db_url, db_schema = database(f"ss_{key}") if database else ("", None)
        config = replace(
            config,
            database_url=db_url,
            database_schema=db_schema,
            workers=8,
            conf_poll_s=1.0,
            # Most test instances ship nowhere; an instance may outlive the default 5-minute
            # backlog window on a loaded machine. Tests of the window set their own.
            outbox_window_s=3600.0,
            limits=limits or Limits(),
        )
        return configure(key, config) if configure is not None else config

    create_instance(
        root,
        topology=SAMPLE.with_agreements(tuple(agreements)),
        configure=settings,
        witness_quorum=witness_quorum,
    )
    stack = start_instance(
        root,
        replace(options, agencies=False),
        agency_factory=functools.partial(Agency, relay_keys=frozenset(relay)),
    )
    try:
        instance = ExchangeInstance(stack)
        for key, agency in instance.agencies.items():
            agency.consent_checker = (consent_checkers or {}).get(key)
            agency.audit_shipper = (audit_shippers or {}).get(key)
            agency.start_backend()
        if start:
            for agency in instance.agencies.values():
                agency.start()
    except BaseException:
        stack.stop()
        raise
    return instance
