"""The consumer side of the exchange: ``Gateway.Query`` for this agency's information systems.

For an authenticated client subsystem hosted on this server, ``Consumer.query``:

1. checks limits, the subject's format, the service and the agreement (client × service ×
   purpose, requested fields), so a request no agreement covers never leaves the agency;
2. builds the envelope header (UUIDv7 message id, lawful basis from the agreement, deadline,
   trace context), seals the body (subject, parameters, fresh response key) to the provider
   server's HPKE key and signs header + ciphertext digest (``cdx.envelope.seal_request``);
3. forwards it over the long-lived mutual-TLS channel to the provider server named in global
   configuration;
4. verifies the response signature under the provider's registered key and its request hash,
   decrypts it, keeps only fields the agreement permits and the provider declared released;
5. (before forwarding) refuses with ``audit_backlog`` while its own outbox backlog is older
   than the window, like the provider;
6. records its own CONSUMER access record (ALLOW, or DENY with the local or provider's code)
   durably before returning data + record id + the provider's record id.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from cdx import crypto, envelope, errors, telemetry
from cdx.clock import Clock
from cdx.globalconf import VerifiedGlobalConf, to_ms
from cdx.ids import CitizenId
from cdx.v1 import common_pb2, exchange_pb2
from security_server import policy, records
from security_server.config import Limits
from security_server.decisions import DecisionCounter, note_decision
from security_server.peers import PeerPool
from security_server.records import Decision, Recorder, new_id, request_value

log = logging.getLogger(__name__)

ConfSource = Callable[[datetime], VerifiedGlobalConf]


class Consumer:
    """Serves ``Gateway.Query`` for the client subsystems this server hosts."""

    def __init__(
        self,
        *,
        server_id: str,
        conf: ConfSource,
        signer: crypto.Signer,
        recorder: Recorder,
        peers: PeerPool,
        limits: Limits,
        now_fn: Clock,
    ) -> None:
        self._outbox = recorder.outbox
        self.server_id = server_id
        self._conf = conf
        self._signer = signer
        self._recorder = recorder
        self._peers = peers
        self._limits = limits
        self._now = now_fn
        self.decisions = DecisionCounter()

    def query(
        self,
        client: str,
        request: exchange_pb2.QueryRequest,
        *,
        certificate: tuple[str, int] | None = None,
        traceparent: str = "",
        tracestate: str = "",
    ) -> exchange_pb2.QueryResponse:
        """Run one query for the authenticated ``client`` subsystem.

        ``certificate`` (fingerprint, serial) is the client certificate it authenticated with,
        if any: a revoked one is refused.

        Raises:
            CdxError: the local or the provider's reason (already recorded as a DENY record).
        """
        now = self._now()
        decision = Decision(
            role=common_pb2.CONSUMER,
            message_id=new_id(),
            client=client,
            service=request.service,  # kept by the record only if well-formed
            purpose=request.purpose,
            verified=True,
        )
        with telemetry.stage("consumer.query", server=self.server_id) as stage:
            try:
                response = self._query(
                    client, request, now, decision, certificate, traceparent, tracestate
                )
            except errors.CdxError as exc:
                self._deny(decision, exc.code, now, stage)
                raise
            except Exception:
                self._deny(decision, errors.InternalError.code, now, stage)
                raise
            self.decisions.add(True)
            note_decision(stage, self.server_id, "consumer", decision, allowed=True, reason="ok")
        return response

    def _deny(self, decision: Decision, code: str, now: datetime, stage: object = None) -> None:
        self.decisions.add(False)
        note_decision(stage, self.server_id, "consumer", decision, allowed=False, reason=code)
        try:
            self._recorder.record(decision, allowed=False, reason_code=code, now=now)
        except errors.CdxError as exc:
            log.error("could not record a denial (%s): %s", code, exc.code)

    def _check_limits(self, request: exchange_pb2.QueryRequest) -> None:
        limits = self._limits
        if request.ByteSize() > limits.max_query_bytes:
            raise errors.LimitExceededError("query too large")
        if len(request.fields) > limits.max_fields:
            raise errors.LimitExceededError("too many requested fields")
        if any(not f or len(f) > limits.max_field_name_chars for f in request.fields):
            raise errors.InvalidArgumentError("invalid field name")
        if len(set(request.fields)) != len(request.fields):
            raise errors.InvalidArgumentError("a field is requested twice")
        if request.parameters.ByteSize() > limits.max_parameters_bytes:
            raise errors.LimitExceededError("parameters too large")
        if len(request.subject) > limits.max_subject_chars:
            raise errors.InvalidCitizenIdError()
        if not request.service or not request.purpose:
            raise errors.InvalidArgumentError("service and purpose are required")
        if len(request.consent_id) > 128:
            raise errors.LimitExceededError("consent id too long")
        if request.consent_id and not records.VALIDATORS["consent_id"](request.consent_id):
            raise errors.InvalidArgumentError("malformed consent id")

    def _query(
        self,
        client: str,
        request: exchange_pb2.QueryRequest,
        now: datetime,
        d: Decision,
        certificate: tuple[str, int] | None,
        traceparent: str,
        tracestate: str,
    ) -> exchange_pb2.QueryResponse:
        self._check_limits(request)
        conf = self._conf(now)
        if certificate is not None and conf.is_revoked(*certificate):
            raise errors.CertificateRevokedError()
        if request.client and request.client != client:
            raise errors.PermissionDeniedError("the credentials belong to another subsystem")
        me = conf.servers.get(self.server_id)
        if me is None:
            raise errors.FailedPreconditionError("this server is not registered (or revoked)")
        if client not in me.subsystems:
            raise errors.PermissionDeniedError("this server does not host the client subsystem")
        subject = CitizenId.parse(request.subject, conf.instance).value
        d.subject = subject
        d.request_value = request_value(subject, request.parameters)

        auth = policy.authorize(conf, client, request.service, request.purpose, request.fields)
        agreement = auth.agreement
        d.set_lawful_basis(agreement.lawful_basis)
        d.legal_reference = agreement.legal_reference
        d.consent_id = request.consent_id
        d.sealed = agreement.sealed
        provider = conf.server_for_subsystem(auth.service.subsystem)
        if provider is None:
            raise errors.UnknownServiceError("no security server provides this service")
        # Our own records must reach the audit log too: fail closed like the provider does.
        self._outbox.check_release(now)

        deadline = now + timedelta(seconds=self._limits.forward_timeout_s)
        # With tracing on, the provider continues this server's span (W3C trace context).
        traceparent, tracestate = telemetry.outgoing_trace(traceparent, tracestate)
        header = exchange_pb2.EnvelopeHeader(
            protocol_version=envelope.PROTOCOL_VERSION,
            message_id=d.message_id,
            client=client,
            consumer_server=self.server_id,
            service=request.service,
            provider_server=provider.id,
            purpose=request.purpose,
            lawful_basis=d.lawful_basis,  # type: ignore[arg-type]
            consent_id=request.consent_id,
            legal_reference=agreement.legal_reference,
            fields=list(request.fields),
            issued_at_ms=to_ms(now),
            deadline_ms=to_ms(deadline),
            trace=exchange_pb2.TraceContext(traceparent=traceparent, tracestate=tracestate),
        )
        body = exchange_pb2.RequestBody(subject=subject)
        if request.parameters.fields:
            body.parameters.CopyFrom(request.parameters)
        sealed = envelope.seal_request(header, body, provider.hpke_public_key, self._signer)
        metadata = (("traceparent", traceparent),) if traceparent else ()
        with telemetry.stage("exchange.forward", server=self.server_id):
            answer = self._peers.forward(
                provider.id,
                provider.address,
                sealed.envelope,
                timeout=self._limits.forward_timeout_s,
                metadata=metadata,
            )
        verified = envelope.open_response(
            answer,
            request_hash=sealed.request_hash,
            response_key=sealed.response_key,
            provider_signing_key=provider.signing_public_key,
        )
        rheader = verified.header
        if rheader.message_id != d.message_id or rheader.provider_server != provider.id:
            raise errors.RequestHashMismatchError("the response names another message or server")
        # Defence in depth: keep only what the agreement permits and the provider declared.
        permitted = auth.fields & frozenset(rheader.released_fields)
        data = exchange_pb2.QueryResponse().data
        for name, value in verified.body.data.fields.items():
            if name in permitted:
                data.fields[name].CopyFrom(value)
        released = tuple(sorted(data.fields))
        d.released_fields = released
        if rheader.consent_id and not records.VALIDATORS["consent_id"](rheader.consent_id):
            raise errors.MalformedError("the response names a malformed consent id")
        d.consent_id = rheader.consent_id or d.consent_id
        d.response_value = verified.body.SerializeToString(deterministic=True)
        record_id = self._recorder.record(d, allowed=True, now=now)
        response = exchange_pb2.QueryResponse(
            released_fields=released,
            message_id=d.message_id,
            record_id=record_id,
            provider_record_id=rheader.provider_record_id,
            lawful_basis=rheader.lawful_basis,
            legal_reference=rheader.legal_reference,
            consent_id=rheader.consent_id,
        )
        response.data.CopyFrom(data)
        return response
