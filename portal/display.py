"""Turns identifiers into words people read: agency names, service and purpose descriptions from
global conf, lawful bases, decisions and consent terms in plain language (both languages)."""

from __future__ import annotations

from dataclasses import dataclass

from cdx.globalconf import VerifiedGlobalConf
from cdx.representation import parse_actor
from portal.backends import Consent
from portal.i18n import Translator
from portal.verify import Access


def member_of(identifier: str) -> str:
    """``VN:GOV:GDT:income`` (or a service id) -> ``VN:GOV:GDT``."""
    return ":".join(identifier.split("/", 1)[0].split(":")[:3])


def subsystem_code(identifier: str) -> str:
    parts = identifier.split("/", 1)[0].split(":")
    return parts[3] if len(parts) > 3 else ""


@dataclass(frozen=True)
class Names:
    """Display names for one request (one language, one configuration)."""

    conf: VerifiedGlobalConf
    t: Translator

    def agency(self, identifier: str) -> str:
        member = self.conf.members.get(member_of(identifier))
        return member.name if member is not None and member.name else member_of(identifier)

    def system(self, identifier: str) -> str:
        return subsystem_code(identifier)

    def party(self, identifier: str) -> str:
        """ "Agency name (system)" for a subsystem id."""
        system = self.system(identifier)
        return f"{self.agency(identifier)} ({system})" if system else self.agency(identifier)

    def service(self, service_id: str) -> str:
        info = self.conf.services.get(service_id)
        return info.description if info is not None and info.description else service_id

    def purpose(self, code: str) -> str:
        p = self.conf.purposes.get(code)
        if p is None:
            return code or "—"
        if self.t.lang == "vi" and p.description_vi:
            return str(p.description_vi)
        return str(p.description or code)

    def fields(self, names: tuple[str, ...] | list[str]) -> str:
        return ", ".join(self.t.optional(f"field.{n}", n) for n in names) or "—"

    def basis(self, access: Access) -> str:
        label = self.t.optional(f"basis.{access.lawful_basis}", access.lawful_basis)
        if access.lawful_basis == "CONSENT":
            return label
        return f"{label}: {access.legal_reference}" if access.legal_reference else label

    def decision(self, access: Access) -> str:
        if access.decision == "ALLOW":
            return self.t("decision.allow")
        reason = self.t.optional(f"reason.{access.reason_code}", access.reason_code)
        return self.t("decision.deny_because", reason=reason)

    def reason(self, code: str) -> str:
        return self.t.optional(f"reason.{code}", code)

    def actor(self, actor: str, *, acting: bool = False) -> str:
        """Who took a consent action, in words: "your parent" for the represented person
        themself, "a parent (legal representative)" for a representative looking at it
        (``acting``), an agency's name, "you", "system"."""
        parsed = parse_actor(actor)
        if parsed is not None:
            return self.t(("actor.acting." if acting else "actor.representative.") + parsed[0])
        if ":" in actor:
            return self.party(actor)
        if acting and actor == "citizen":
            return self.t("actor.acting.citizen")
        return self.t.optional(f"actor.{actor}", actor)

    @staticmethod
    def by_representative(actor: str) -> bool:
        """Whether a legal representative took the action."""
        return parse_actor(actor) is not None

    def witness(self, server_id: str) -> str:
        return f"{self.agency(server_id)} ({server_id})"

    def consent_terms(self, consent: Consent) -> list[str]:
        """The terms of a consent as sentences a citizen can read."""
        terms, t = consent.terms, self.t
        lines = [
            t("terms.who", agency=self.party(terms.grantee)),
            t(
                "terms.what",
                fields=self.fields(terms.fields),
                services=", ".join(self.service(s) for s in terms.services) or "—",
            ),
            t("terms.why", purpose=self.purpose(terms.purpose)),
        ]
        if terms.valid_until is not None:
            lines.append(t("terms.until", date=t.day(terms.valid_until)))
        else:
            lines.append(t("terms.no_end"))
        if terms.data_from or terms.data_until:
            lines.append(
                t("terms.data_range", start=terms.data_from or "…", end=terms.data_until or "…")
            )
        if terms.max_uses:
            lines.append(t("terms.uses", used=consent.uses, max=terms.max_uses))
        if terms.retention_days:
            lines.append(t("terms.retention", days=terms.retention_days))
        return lines
