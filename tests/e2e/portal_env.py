"""A whole instance with the portal in front, for the browser tests.

``start_portal_env(root)`` runs the sample instance of ``stack`` with every component: the
consent service (``consent_env.start_consent_env``), the audit log (witness quorum 2 of 3),
every security server shipping its records to it and witnessing its checkpoints, and the
portal itself (HTTPS with its registry-issued certificate, Secure cookies, real gRPC clients
with its own ``urn:cdx:service:portal`` identity and its own global-configuration client).

The surface tests use: ``PortalEnv.url``, ``portal``, ``token(citizen)``, ``query(...)``, ``audit``,
``start_audit()`` (after ``audit.stop()``), ``portal_identity``, ``consent_env`` and
``close()``; ``play_demo_scenario`` is the demo's story: the social insurance agency asks a
citizen for consent to read her income from the tax department, she approves, and the agency
queries the tax service (on her consent) and the population register (on a legal
obligation).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

from audit.server import RunningAudit
from cdx import rpc
from cdx.v1 import consent_pb2, exchange_pb2
from cdx.webserver import RunningWebServer
from tests.integration.consent_env import (
    CONSENT_PURPOSE,
    SOCIAL,
    SOCIAL_SUBSYSTEM,
    TAX_SERVICE,
    ConsentEnv,
    bearer,
    start_consent_env,
    terms,
)
from tests.integration.exchange_harness import HARNESS

POPULATION_SERVICE = "VN:GOV:BCA:population/person/v1"
CITIZEN_A = "079090000001"  # Nguyễn Văn An: tax and population records
CITIZEN_B = "079090000002"  # Trần Thị Bình: never accessed in the scenario

#: Every component, the log checkpointing and the witnesses cosigning within a second.
EVERYTHING = replace(
    HARNESS,
    audit=True,
    witnesses=True,
    portal=True,
    portal_https=True,
    checkpoint_interval=0.3,
    witness_interval=0.2,
)


@dataclass
class PortalEnv:
    consent_env: ConsentEnv

    @property
    def url(self) -> str:
        return str(self.consent_env.instance.stack.portal.url)

    @property
    def portal(self) -> RunningWebServer:
        """The running portal (``cdx.webserver.serve`` of ``portal.app.create_app``)."""
        running: RunningWebServer = self.consent_env.instance.stack.portal.portal
        return running

    @property
    def audit(self) -> RunningAudit:
        audit = self.consent_env.instance.stack.audit
        assert audit is not None
        return audit

    def start_audit(self) -> RunningAudit:
        """Start the audit log again (after ``audit.stop()``) on the address it had."""
        return self.consent_env.instance.stack.start_audit()

    @property
    def portal_identity(self) -> rpc.TlsIdentity:
        """The portal's mutual-TLS identity (the relay of citizens' tokens)."""
        return self.consent_env.instance.stack.service_identity("portal")

    @property
    def ca_pem(self) -> bytes:
        return self.portal_identity.ca_pem

    def token(self, citizen: str) -> str:
        return self.consent_env.token(citizen)

    def query(
        self,
        agency: str,
        service: str,
        subject: str,
        fields: list[str],
        *,
        purpose: str = CONSENT_PURPOSE,
        consent_id: str = "",
    ) -> exchange_pb2.QueryResponse:
        """``Gateway.Query`` as an agency's information system; raises its ``CdxError``."""
        return self.consent_env.instance.agency(agency).query(
            service, subject, purpose, fields, consent_id=consent_id
        )

    def close(self) -> None:
        self.consent_env.close()


def start_portal_env(root: Path, *, quorum: int = 2, one_clock: bool = False) -> PortalEnv:
    """``one_clock``: the central services and the portal share ``consent_env.clock``."""
    return PortalEnv(
        start_consent_env(
            root,
            start_servers=True,
            options=EVERYTHING,
            witness_quorum=quorum,
            one_clock=one_clock,
        )
    )


@dataclass(frozen=True)
class Scenario:
    consent_id: str
    pending_id: str
    record_ids: tuple[str, ...]  # both sides of both exchanges


def play_demo_scenario(penv: PortalEnv, citizen: str = CITIZEN_A) -> Scenario:
    """The social insurance agency checks a citizen's eligibility for a benefit."""
    env = penv.consent_env
    agency_api = env.agency_api(env.server_identity(SOCIAL))
    requested = agency_api.RequestConsent(
        consent_pb2.RequestConsentRequest(
            requester=SOCIAL_SUBSYSTEM,
            terms=terms(citizen, fields=("annual_income", "tax_year")),
        ),
        timeout=10,
    )
    approved = env.citizen().Approve(
        consent_pb2.ConsentActionRequest(consent_id=requested.id),
        metadata=bearer(env.token(citizen)),
        timeout=10,
    )
    assert approved.state == consent_pb2.ACTIVE
    pending = agency_api.RequestConsent(  # a second request, left for the citizen to answer
        consent_pb2.RequestConsentRequest(
            requester=SOCIAL_SUBSYSTEM,
            terms=terms(citizen, fields=("annual_income",), valid_for=timedelta(days=90)),
        ),
        timeout=10,
    )
    income = penv.query(
        SOCIAL, TAX_SERVICE, citizen, ["annual_income", "tax_year"], consent_id=approved.id
    )
    person = penv.query(SOCIAL, POPULATION_SERVICE, citizen, ["full_name", "birth_date"])
    records = (
        income.record_id,
        income.provider_record_id,
        person.record_id,
        person.provider_record_id,
    )
    return Scenario(approved.id, pending.id, records)
