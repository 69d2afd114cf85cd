"""The provider side of the exchange: checks, backend call, minimisation, sealed answer.

``Provider.forward`` runs the checks of DESIGN §6.2 in this order, each failing closed with its
own error code:

1. global configuration is current (``conf_expired``);
2. the envelope parses within limits (``malformed`` / ``limit_exceeded``);
3. the TLS peer is the registered, unrevoked server the header names, of the client's member
   (``peer_not_registered`` / ``certificate_revoked``);
4. the signature verifies under that server's registered key (``invalid_signature``), the
   protocol version is supported, the message is fresh (``message_expired`` /
   ``message_from_future``) and addressed to this server;
5. the message id was not seen before (``replayed_message``; durable, shared by replicas);
6. an agreement covers client × service × purpose and every requested field (``unknown_service``
   / ``no_agreement`` / ``purpose_not_allowed`` / ``field_not_allowed``);
7. the body decrypts (``decryption_failed``) and names a valid subject;
8. the lawful basis holds: legal mandate, or an active consent (``consent_*``);
9. the agreement's rate limit (``rate_limited``) and the outbox backlog (``audit_backlog``).

Then the backend is called with the allowed fields, every other field is dropped, the access
record is committed to the outbox, and only then is the sealed, signed response returned.
Every denial is recorded too (with what is known at that point) before the error is returned.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import x25519
from google.protobuf import struct_pb2

from cdx import crypto, envelope, errors, telemetry
from cdx.clock import Clock
from cdx.globalconf import VerifiedGlobalConf, to_ms
from cdx.ids import CitizenId
from cdx.lawful import ConsentChecker, decide_lawful_basis
from cdx.v1 import common_pb2, exchange_pb2
from security_server import policy
from security_server.config import Limits
from security_server.decisions import DecisionCounter, note_decision
from security_server.outbox import Outbox
from security_server.peers import BackendPool
from security_server.ratelimit import RateLimiter
from security_server.records import OK, Decision, Recorder, new_id, request_value
from security_server.replay import Claim, ReplayGuard

log = logging.getLogger(__name__)

ConfSource = Callable[[datetime], VerifiedGlobalConf]
BackendResolver = Callable[[str], "str | None"]


class Provider:
    """Answers ``Exchange.Forward`` for the services of this server's subsystems."""

    def __init__(
        self,
        *,
        server_id: str,
        conf: ConfSource,
        signer: crypto.Signer,
        hpke_key: x25519.X25519PrivateKey,
        recorder: Recorder,
        outbox: Outbox,
        replay: ReplayGuard,
        consent_checker: ConsentChecker,
        rate_limiter: RateLimiter,
        backends: BackendPool,
        backend_for: BackendResolver,
        limits: Limits,
        now_fn: Clock,
    ) -> None:
        self.server_id = server_id
        self._conf = conf
        self._signer = signer
        self._hpke_key = hpke_key
        self._recorder = recorder
        self._outbox = outbox
        self._replay = replay
        self._consent = consent_checker
        self._rate = rate_limiter
        self._backends = backends
        self._backend_for = backend_for
        self._limits = limits
        self._now = now_fn
        self.decisions = DecisionCounter()

    def forward(
        self, env: exchange_pb2.SignedEnvelope, peer_cert: x509.Certificate | None
    ) -> exchange_pb2.SignedEnvelope:
        """Check, answer and record one request envelope.

        Raises:
            CdxError: the reason of the denial (already recorded as a DENY access record).
        """
        now = self._now()
        decision = Decision(role=common_pb2.PROVIDER)
        pending: list[Claim] = []
        # One trace across both agencies: continue the consumer's span named in the header.
        parent = telemetry.envelope_parent(env)
        with telemetry.stage("provider.forward", server=self.server_id, parent=parent) as stage:
            try:
                response = self._handle(env, peer_cert, now, decision, pending)
            except errors.CdxError as exc:
                self._deny(decision, exc.code, now, pending, stage)
                raise
            except Exception:
                self._deny(decision, errors.InternalError.code, now, pending, stage)
                raise
            self.decisions.add(True)
            note_decision(stage, self.server_id, "provider", decision, allowed=True, reason="ok")
        return response

    def _store(
        self,
        decision: Decision,
        pending: list[Claim],
        *,
        allowed: bool,
        reason_code: str,
        now: datetime,
        record_id: str | None = None,
    ) -> None:
        """Record durably, burning the reserved message id (if any) in the same commit."""
        claim = pending.pop() if pending else None
        try:
            self._recorder.record(
                decision,
                allowed=allowed,
                reason_code=reason_code,
                now=now,
                record_id=record_id,
                claim=claim,
            )
        except errors.ReplayError:
            if claim is not None:
                self._replay.settle(claim, committed=True)  # a replica burnt it first
            raise
        except BaseException:
            if claim is not None:
                self._replay.settle(claim, committed=False)
            raise
        if claim is not None:
            self._replay.settle(claim, committed=True)

    def _deny(
        self,
        decision: Decision,
        code: str,
        now: datetime,
        pending: list[Claim],
        stage: object = None,
    ) -> None:
        self.decisions.add(False)
        note_decision(stage, self.server_id, "provider", decision, allowed=False, reason=code)
        try:
            try:
                self._store(decision, pending, allowed=False, reason_code=code, now=now)
            except errors.ReplayError:
                self._store(decision, [], allowed=False, reason_code=code, now=now)
        except errors.CdxError as exc:
            # The caller is refused either way; the missing record is an operational alarm.
            log.error("could not record a denial (%s): %s", code, exc.code)

    def _handle(
        self,
        env: exchange_pb2.SignedEnvelope,
        peer_cert: x509.Certificate | None,
        now: datetime,
        d: Decision,
        pending: list[Claim],
    ) -> exchange_pb2.SignedEnvelope:
        started = time.perf_counter()
        limits = self._limits
        conf = self._conf(now)

        header = envelope.parse_unverified_header(env)
        # Claims until the signature verifies; the record keeps each only if well-formed.
        d.message_id = header.message_id
        d.client = header.client
        d.service = header.service
        d.purpose = header.purpose

        consumer = policy.check_peer(
            conf, peer_cert, consumer_server=header.consumer_server, client=header.client
        )
        try:
            verified = envelope.verify_request(
                env,
                consumer.signing_public_key,
                now,
                max_age=limits.freshness,
                max_skew=limits.max_skew,
            )
        except (
            errors.EnvelopeExpiredError,
            errors.EnvelopeFromFutureError,
            errors.ProtocolVersionError,
        ):
            d.verified = True  # these are raised only after the signature verified
            raise
        header = verified.header
        d.verified = True
        if header.provider_server != self.server_id:
            raise errors.PermissionDeniedError("the message is addressed to another server")
        if len(header.fields) > limits.max_fields:
            raise errors.LimitExceededError("too many requested fields")

        expires_ms = header.issued_at_ms + int(
            (limits.freshness + limits.max_skew).total_seconds() * 1000
        )
        pending.append(self._replay.reserve(header.consumer_server, header.message_id, expires_ms))

        auth = policy.authorize(conf, header.client, header.service, header.purpose, header.fields)
        me = conf.servers.get(self.server_id)
        if me is None:
            raise errors.FailedPreconditionError("this server is not registered (or revoked)")
        if auth.service.subsystem not in me.subsystems:
            raise errors.UnknownServiceError("this server does not provide the service")
        agreement = auth.agreement
        d.set_lawful_basis(agreement.lawful_basis)
        d.legal_reference = agreement.legal_reference
        d.sealed = agreement.sealed
        if header.lawful_basis not in (common_pb2.LAWFUL_BASIS_UNSPECIFIED, d.lawful_basis):
            raise errors.PermissionDeniedError("the declared lawful basis is not the agreement's")

        body = envelope.open_request_body(verified, self._hpke_key)
        if len(body.subject) > limits.max_subject_chars:
            raise errors.LimitExceededError("subject too long")
        # Validated before the decision holds it: a record never commits to (nor opens) a
        # subject that is not a national id (the audit log would refuse it for good).
        subject = CitizenId.parse(body.subject, conf.instance).value
        if body.parameters.ByteSize() > limits.max_parameters_bytes:
            raise errors.LimitExceededError("parameters too large")
        d.subject = subject
        d.request_value = request_value(subject, body.parameters)

        lawful = decide_lawful_basis(
            agreement,
            auth.fields,
            explicit_fields=auth.explicit_fields,
            subject=subject,
            consent_id=header.consent_id or None,
            checker=self._consent,
            now=now,
        )
        d.consent_id = lawful.consent_id

        self._rate.acquire(agreement.id, agreement.rate_limit_per_minute, time.monotonic())
        self._outbox.check_release(now)

        telemetry.mark("provider.checks", started, server=self.server_id)
        with telemetry.stage("provider.backend", server=self.server_id):
            data = self._fetch(header, subject, body.parameters, lawful.allowed_fields, now)
        released = {k: v for k, v in data.fields.items() if k in lawful.allowed_fields}
        response_body = exchange_pb2.ResponseBody()
        for name, value in released.items():
            response_body.data.fields[name].CopyFrom(value)
        d.released_fields = tuple(sorted(released))
        d.response_value = response_body.SerializeToString(deterministic=True)

        record_id = new_id()
        response_header = exchange_pb2.ResponseHeader(
            protocol_version=envelope.PROTOCOL_VERSION,
            message_id=header.message_id,
            request_hash=verified.request_hash,
            provider_server=self.server_id,
            provider_record_id=record_id,
            released_fields=d.released_fields,
            lawful_basis=d.lawful_basis,  # type: ignore[arg-type]
            consent_id=d.consent_id,
            legal_reference=d.legal_reference,
            issued_at_ms=to_ms(now),
        )
        # Durable before release (DESIGN §6.4): nothing leaves until the record committed.
        self._store(d, pending, allowed=True, reason_code=OK, now=now, record_id=record_id)
        return envelope.seal_response(
            response_header,
            response_body,
            bytes(body.response_key),
            self._signer,
        )

    def _fetch(
        self,
        header: exchange_pb2.EnvelopeHeader,
        subject: str,
        parameters: struct_pb2.Struct,
        allowed: frozenset[str],
        now: datetime,
    ) -> struct_pb2.Struct:
        address = self._backend_for(header.service)
        if address is None:
            raise errors.BackendUnavailableError("no backend is configured for this service")
        timeout = self._limits.backend_timeout_s
        if header.deadline_ms:
            remaining = (header.deadline_ms - to_ms(now)) / 1000.0
            timeout = min(timeout, remaining)
        if timeout <= 0:
            raise errors.DeadlineExceededError()
        request = exchange_pb2.FetchRequest(
            service=header.service,
            subject=subject,
            fields=sorted(allowed),
            purpose=header.purpose,
            client=header.client,
            message_id=header.message_id,
        )
        if parameters.fields:
            request.parameters.CopyFrom(parameters)
        response = self._backends.fetch(address, request, timeout=timeout)
        data = response.data
        if data.ByteSize() > self._limits.max_response_bytes:
            raise errors.BackendUnavailableError("the backend answer exceeds the size limit")
        if len(data.fields) > self._limits.max_response_fields:
            raise errors.BackendUnavailableError("the backend answer has too many fields")
        return data
