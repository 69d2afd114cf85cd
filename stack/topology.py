"""Who an instance holds: agencies, purposes and exchange agreements (``Topology``).

``SAMPLE`` is the demo's, `cdx up`'s and the tests' instance; benchmarks pass their own.

=============  ===========  =======================  =================================
key            member       subsystem                service (sample backend)
=============  ===========  =======================  =================================
population     VN:GOV:BCA   VN:GOV:BCA:population    VN:GOV:BCA:population/person/v1
tax            VN:GOV:GDT   VN:GOV:GDT:income        VN:GOV:GDT:income/income/v1
social         VN:GOV:VSS   VN:GOV:VSS:benefits      VN:GOV:VSS:benefits/insurance/v1
=============  ===========  =======================  =================================

Deliberately absent: population -> tax (so "no agreement" is visible); social -> population
permits no ``address`` (so "field outside the agreement" is visible).

The population register is also the **representation authority** (docs/adr/0018): it registers
who legally represents whom (parents of minors, guardians) with the consent service, as the
national population database, which records them, does.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from security_server.backends.sample import KINDS

INSTANCE = "VN"


@dataclass(frozen=True)
class AgencySpec:
    key: str
    member: str
    name: str
    subsystem: str
    #: Sample backend kind (``security_server.backends.sample.KINDS``); ``None`` for an
    #: agency that only queries others through a client certificate (no security server).
    kind: str | None

    @property
    def serves(self) -> bool:
        """Whether the agency runs a security server and a sample register."""
        return self.kind is not None

    @property
    def server_id(self) -> str:
        return f"{self.member}:ss1"

    @property
    def server_dir_name(self) -> str:
        return f"{self.member.rsplit(':', 1)[1]}-ss1"

    @property
    def service(self) -> str:
        if self.kind is None:
            raise KeyError(f"agency {self.key} serves no register")
        return f"{self.subsystem}/{KINDS[self.kind].service_code}/v1"


SPECS: tuple[AgencySpec, ...] = (
    AgencySpec("population", "VN:GOV:BCA", "Bộ Công an", "VN:GOV:BCA:population", "population"),
    AgencySpec("tax", "VN:GOV:GDT", "Tổng cục Thuế", "VN:GOV:GDT:income", "tax"),
    AgencySpec("social", "VN:GOV:VSS", "Bảo hiểm xã hội Việt Nam", "VN:GOV:VSS:benefits", "social"),
)

#: purpose code -> (English description, Vietnamese description)
PURPOSES: dict[str, tuple[str, str]] = {
    "SOCIAL_BENEFIT_ELIGIBILITY": (
        "Checking eligibility for a social benefit",
        "Xét điều kiện hưởng trợ cấp xã hội",
    ),
    "TAX_ASSESSMENT": ("Assessing a tax liability", "Xác định nghĩa vụ thuế"),
    "IDENTITY_VERIFICATION": ("Verifying a person's identity", "Xác minh danh tính"),
}


@dataclass(frozen=True)
class AgreementSpec:
    client: str  # agency key
    provider: str  # agency key
    purpose: str
    lawful_basis: str
    legal_reference: str
    fields: tuple[str, ...]
    rate_limit_per_minute: int = 0
    sealed: bool = False
    retention_days: int = 0


AGREEMENTS: tuple[AgreementSpec, ...] = (
    AgreementSpec(
        "social", "population", "SOCIAL_BENEFIT_ELIGIBILITY", "LEGAL_OBLIGATION",
        "Law on Social Insurance 2024, Art. 10", ("full_name", "birth_date", "gender"),
    ),
    AgreementSpec(
        "social", "tax", "SOCIAL_BENEFIT_ELIGIBILITY", "CONSENT", "",
        ("annual_income", "tax_year"),
    ),
    AgreementSpec(
        "tax", "population", "TAX_ASSESSMENT", "LEGAL_OBLIGATION",
        "Law on Tax Administration 2019, Art. 99", ("full_name", "address"),
    ),
    AgreementSpec(
        "tax", "social", "TAX_ASSESSMENT", "PUBLIC_TASK",
        "Decree 126/2020, Art. 30", ("status", "contribution_months"), rate_limit_per_minute=3,
    ),
    AgreementSpec(
        "population", "social", "IDENTITY_VERIFICATION", "LEGAL_OBLIGATION",
        "Law on Residence 2020, Art. 37", ("status",), sealed=True,
    ),
)  # fmt: skip


@dataclass(frozen=True)
class Topology:
    """An instance's agencies, purposes and agreements (what provisioning registers)."""

    instance: str = INSTANCE
    agencies: tuple[AgencySpec, ...] = SPECS
    purposes: tuple[tuple[str, str, str], ...] = tuple(
        (code, en, vi) for code, (en, vi) in PURPOSES.items()
    )
    agreements: tuple[AgreementSpec, ...] = AGREEMENTS
    #: The agency whose subsystem registers legal representatives (``None``: none does).
    representation_authority: str | None = "population"

    def agency(self, key: str) -> AgencySpec:
        for a in self.agencies:
            if a.key == key:
                return a
        raise KeyError(key)

    @property
    def serving(self) -> tuple[AgencySpec, ...]:
        """The agencies that run a security server."""
        return tuple(a for a in self.agencies if a.serves)

    def with_agreements(self, agreements: tuple[AgreementSpec, ...]) -> Topology:
        return replace(self, agreements=agreements)


#: The sample instance (demo, `cdx up`, tests).
SAMPLE = Topology()


def spec(key: str) -> AgencySpec:
    return SAMPLE.agency(key)
