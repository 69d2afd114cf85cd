"""`cdx demo`: a whole instance on one machine and a real scenario, asserted step by step.

The story: Nguyễn Văn An applies for a social benefit. The social insurance agency (VSS)
pulls his identity from the population register (BCA) under a legal mandate and his income
from the tax department (GDT) under his consent; only the agreed fields come back; he sees
every access in his history, proven from the witnessed audit log's tiles; he asked to be told of
every access by e-mail, and the income query reaches his mailbox (a local SMTP server) with a
link to the verified entry; he revokes his consent and the next income query is denied. Then
he acts for his son, a minor: the population register (the representation authority) has
recorded him as the boy's parent, the boy's own approval of a request does not count, An
approves it for him and looks at his history, and the boy sees in his own verified history who
acted. Finally an inspector verifies the whole log.

Every step checks what it shows and the demo exits 0 only if every step held.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TextIO

import jwt

from cdx import crypto, errors, rpc
from cdx.cliutil import print_table
from cdx.clock import utcnow
from cdx.globalconf import to_ms
from cdx.keyfiles import load_identity
from cdx.paths import InstancePaths
from cdx.representation import parse_actor
from cdx.v1 import audit_pb2, common_pb2, consent_pb2, notify_pb2
from portal import verify
from portal.grpc_clients import GrpcAuditClient
from portal.tileproofs import TileEndpoints, with_tile_proofs
from security_server.backends.sample import CITIZENS, KINDS
from stack.mailsink import ReceivedMail
from stack.provision import create_instance
from stack.runtime import RunningInstance, StackOptions, start_instance
from stack.topology import spec

CITIZEN = CITIZENS[0]  # 079090000001, Nguyễn Văn An
MAILBOX = "an.nguyen@example.vn"
#: An's son, a minor (in no sample register: only his consents and history are involved).
CHILD_ID, CHILD_NAME = "079190000011", "Nguyễn Minh Khang"
PURPOSE = "SOCIAL_BENEFIT_ELIGIBILITY"
SOCIAL, POPULATION, TAX = spec("social"), spec("population"), spec("tax")


class StepFailed(Exception):
    """A step did not behave as expected."""


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise StepFailed(what)


def expect_denied(fn: Callable[[], object], code: str) -> errors.CdxError:
    try:
        fn()
    except errors.CdxError as exc:
        expect(exc.code == code, f"expected refusal {code!r}, got {exc.code!r}")
        return exc
    raise StepFailed(f"expected refusal {code!r}, but the query was answered")


@dataclass
class Result:
    title: str
    ok: bool
    detail: str
    seconds: float


class Story:
    """Prints the narrative and keeps score."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.results: list[Result] = []

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def step(self, title: str, fn: Callable[[], str]) -> bool:
        n = len(self.results) + 1
        self.say(f"\n── Step {n}. {title}")
        started = time.perf_counter()
        try:
            detail = fn()
            ok = True
        except StepFailed as exc:
            detail, ok = f"unexpected: {exc}", False
        except errors.CdxError as exc:
            detail, ok = f"unexpected error [{exc.code}]: {exc.message}", False
        elapsed = time.perf_counter() - started
        self.results.append(Result(title, ok, detail, elapsed))
        self.say(f"   {'✔' if ok else '✘'} {detail}")
        return ok

    def summary(self) -> bool:
        width = max(len(r.title) for r in self.results)
        self.say("\n── Summary")
        self.say(f"   {'#':>2}  {'step':<{width}}  result  time")
        for i, r in enumerate(self.results, 1):
            mark = "PASS" if r.ok else "FAIL"
            self.say(f"   {i:>2}  {r.title:<{width}}  {mark:<6}  {r.seconds * 1000:6.0f} ms")
        passed = sum(r.ok for r in self.results)
        self.say(f"\n   {passed} of {len(self.results)} steps behaved as expected.")
        return passed == len(self.results)


def _table(story: Story, rows: Sequence[tuple[str, ...]], headers: tuple[str, ...]) -> None:
    print_table(headers, rows, indent="   ", file=story.out)


def _show(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return f"{int(value):,}".replace(",", ".") if value >= 10_000 else str(int(value))
    return str(value)


class Scenario:
    def __init__(self, inst: RunningInstance, story: Story) -> None:
        self.inst = inst
        self.story = story
        self.token = inst.token(CITIZEN.id)
        self.consent_id = ""
        self.income_records: set[str] = set()
        self.income_values: list[str] = []
        paths = InstancePaths(inst.layout.data_dir)
        tls = inst.layout.data_dir / "portal" / "tls"
        identity = load_identity(
            tls / "portal.pem", tls / "portal.key", paths.ca_pem, inst.passphrase
        )
        self.audit = GrpcAuditClient(inst.layout.audit, identity)

    def bearer(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),)

    # --- the steps ------------------------------------------------------------------------

    def identity_under_mandate(self) -> str:
        r = self.inst.query("social", POPULATION.service, CITIZEN.id, PURPOSE)
        agreed = {"full_name", "birth_date", "gender"}
        released = set(r.released_fields)
        held = set(KINDS["population"].fields) | {KINDS["population"].internal_field}
        expect(released == agreed, f"released {sorted(released)}, agreed {sorted(agreed)}")
        expect(set(r.data.keys()) == agreed, "data holds fields outside the agreement")
        self.story.say(
            f"   VSS asks BCA's population register for {CITIZEN.full_name}'s identity "
            f"(legal basis: {r.legal_reference})."
        )
        self.story.say(f"   The register holds {len(held)} columns: {', '.join(sorted(held))}.")
        for name in sorted(r.data.keys()):
            self.story.say(f"     {name:<12} {_show(r.data[name])}")
        return (
            f"only the {len(agreed)} agreed fields were released "
            f"(receipt {r.record_id[:13]}…, provider record {r.provider_record_id[:13]}…)"
        )

    def field_outside_agreement(self) -> str:
        exc = expect_denied(
            lambda: self.inst.query(
                "social", POPULATION.service, CITIZEN.id, PURPOSE, ("full_name", "address")
            ),
            "field_not_allowed",
        )
        return f"asking BCA for the address as well is refused: [{exc.code}]"

    def income_without_consent(self) -> str:
        exc = expect_denied(
            lambda: self.inst.query("social", TAX.service, CITIZEN.id, PURPOSE),
            "consent_missing",
        )
        return f"income from GDT needs the citizen's consent; none yet: [{exc.code}]"

    def consent_requested_and_approved(self) -> str:
        until = utcnow() + timedelta(days=30)
        terms = consent_pb2.ConsentTerms(
            subject=CITIZEN.id,
            grantee=SOCIAL.subsystem,
            services=[TAX.service],
            purpose=PURPOSE,
            fields=["annual_income", "tax_year"],
            valid_until_ms=to_ms(until),
            max_uses=5,
            retention_days=90,
            data_from="2024-01-01",
        )
        pending = self.inst.agency_consent("social").RequestConsent(
            consent_pb2.RequestConsentRequest(requester=SOCIAL.subsystem, terms=terms), timeout=10
        )
        expect(pending.state == consent_pb2.PENDING, "the request is not pending")
        citizen = self.inst.citizen_consent()
        mine = citizen.ListMyConsents(
            consent_pb2.ListMyConsentsRequest(states=[consent_pb2.PENDING]),
            metadata=self.bearer(),
            timeout=10,
        )
        expect([c.id for c in mine.consents] == [pending.id], "the citizen does not see it")
        self.story.say(
            f"   VSS requests consent to read annual_income, tax_year for {PURPOSE}, "
            f"up to 5 uses, until {until:%Y-%m-%d}."
        )
        self.story.say(
            f"   {CITIZEN.full_name} logs in (development IdP) and sees 1 pending request."
        )
        approved = citizen.Approve(
            consent_pb2.ConsentActionRequest(consent_id=pending.id),
            metadata=self.bearer(),
            timeout=10,
        )
        expect(approved.state == consent_pb2.ACTIVE, "approval did not activate the consent")
        key = crypto.public_key_from_der(self.inst.conf.current().consent_service_key_der)
        claims = jwt.PyJWS().decode(approved.artefact, key=key, algorithms=["EdDSA"])  # type: ignore[arg-type]
        expect(b"annual_income" in claims, "the artefact does not carry the terms")
        self.consent_id = approved.id
        return (
            f"approved; consent {approved.id[:13]}… is ACTIVE with a JWS artefact "
            f"verified under the consent service's key ({len(approved.artefact)} bytes)"
        )

    def asks_to_be_told(self) -> str:
        request = notify_pb2.SetPreferencesRequest(
            preferences=notify_pb2.NotifyPreferences(
                categories=[notify_pb2.EVERY_ACCESS, notify_pb2.CONSENT_REQUESTS],
                email=MAILBOX,
                language="en",
            )
        )
        chosen = self.inst.citizen_notify().SetPreferences(
            request, metadata=self.bearer(), timeout=10
        )
        expect(chosen.email == MAILBOX and len(chosen.categories) == 2, "choices not stored")
        sink = self.inst.mail_sink
        expect(sink is not None, "no mail sink")
        assert sink is not None and self.inst.notify is not None and self.inst.audit is not None
        # What happened before he chose is not his to be told: let the log and the
        # notification service take it in first.
        deadline = time.monotonic() + 20
        while any(s.outbox.depth() for s in self.inst.servers.values()) or (
            self.inst.notify.service.cursor() < self.inst.audit.store.tree_state().size - 1
        ):
            if time.monotonic() > deadline:
                raise StepFailed("the notification service did not catch up with the log")
            time.sleep(0.1)
        self.story.say(
            f"   In the portal, {CITIZEN.full_name} asks to be told of every access to his "
            f"data by e-mail ({MAILBOX}). A local SMTP server ({sink.address}) stands in "
            "for his mailbox."
        )
        return "choices stored by the notification service (his address sealed at rest)"

    def income_with_consent(self) -> str:
        r = self.inst.query("social", TAX.service, CITIZEN.id, PURPOSE, consent_id=self.consent_id)
        self.income_records = {r.record_id, r.provider_record_id}
        self.income_values = [_show(v) for v in r.data.values()]
        expect(set(r.released_fields) == {"annual_income", "tax_year"}, "wrong fields released")
        expect("employer" not in r.data, "a field outside the consent was released")
        for name in sorted(r.data.keys()):
            self.story.say(f"     {name:<14} {_show(r.data[name])}")
        return "income released under consent; 'employer' (not consented) was dropped"

    def told_by_email(self) -> str:
        sink = self.inst.mail_sink
        assert sink is not None
        started = time.perf_counter()
        deadline = time.monotonic() + 20

        def about_income() -> list[tuple[ReceivedMail, str]]:
            return [
                (m, w)
                for m in sink.messages(to=MAILBOX)
                for w in m.text.split()
                if "/me/access/" in w and w.rsplit("/", 1)[1] in self.income_records
            ]

        while not about_income():
            if time.monotonic() > deadline:
                raise StepFailed("no e-mail about the income query within 20 s")
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        found = about_income()
        expect(len(found) == 1, f"{len(found)} e-mails about one query")
        mail, link = found[0]
        raw = mail.raw.decode("utf-8", "replace")
        expect(CITIZEN.id not in raw, "the e-mail carries the national id")
        expect(not any(v in raw for v in self.income_values), "the e-mail carries his income")
        self.story.say(f"   Subject: {mail.subject}")
        for line in mail.text.splitlines()[2:9]:
            if line.strip():
                self.story.say(f"     {line}")
        self.story.say(f"     {link}")
        return (
            f"one e-mail for the income query ({elapsed * 1000:.0f} ms after the query "
            "returned), no national id and no income in it, linking to the verified entry"
        )

    def citizen_history(self) -> str:
        conf = self.inst.conf.current()
        trust = verify.LogTrust.from_conf(conf)
        tiles = TileEndpoints()(conf)  # the log's tiles, as the portal computes proofs
        expect(tiles is not None, "global configuration names no tile endpoint")
        assert tiles is not None
        deadline = time.monotonic() + 20
        while True:
            history = with_tile_proofs(self.audit.citizen_history(self.token, 50), tiles)
            checked: list[verify.CheckedRecord] = []
            cp = None
            if history.checkpoint is not None:
                cp = verify.check_checkpoint(history.checkpoint.note, trust)
            for item in history.items:
                opening = item.opening
                checked.append(
                    verify.check_record(
                        item.entry, item.proof, cp, trust, opening=opening, subject=CITIZEN.id
                    )
                )
            verified = [c for c in checked if c.status == verify.Status.VERIFIED]
            accesses = [c for c in checked if c.access.kind == "access"]
            consent_events = {
                c.access.reason_code
                for c in checked
                if c.access.kind == "consent_event" and c.access.consent_id == self.consent_id
            }
            # 7 = both sides of the 3 exchanges that reached a provider + the consumer-side
            # refusal of step 2; and the consent's own lifecycle (requested, then approved),
            # logged by the consent service. Every entry, of either kind, must verify.
            if (
                len(accesses) >= 7
                and {"requested", "approved"} <= consent_events
                and len(verified) == len(checked)
            ):
                break
            if time.monotonic() > deadline:
                raise StepFailed(f"{len(verified)} of {len(checked)} entries verified after 20 s")
            time.sleep(0.3)
        rows = []
        for c in sorted(checked, key=lambda c: c.access.time):
            a = c.access
            side = a.role.lower() if a.kind == "access" else "consent"
            outcome = (
                a.decision.lower() + (f" ({a.reason_code})" if a.decision == "DENY" else "")
                if a.kind == "access"
                else a.reason_code
            )
            rows.append((
                f"{a.time:%H:%M:%S}", side, a.client.split(":")[2],
                a.service.split(":")[2].split("/")[0] if a.service else "-",
                a.lawful_basis.lower(), outcome, "verified",
            ))  # fmt: skip
        _table(self.story, rows, ("time", "side", "by", "register", "basis", "decision", "proof"))
        assert cp is not None
        return (
            f"{len(checked)} entries ({len(checked) - len(accesses)} consent events), each "
            f"proven from the log's tiles in checkpoint {cp.size} signed by the log "
            f"and cosigned by {len(cp.witnesses)} of {len(trust.witnesses)} witnesses"
        )

    def revoke(self) -> str:
        citizen = self.inst.citizen_consent()
        revoked = citizen.Revoke(
            consent_pb2.ConsentActionRequest(consent_id=self.consent_id),
            metadata=self.bearer(),
            timeout=10,
        )
        started = time.perf_counter()
        expect(revoked.state == consent_pb2.REVOKED, "the consent is not revoked")
        exc = expect_denied(
            lambda: self.inst.query(
                "social", TAX.service, CITIZEN.id, PURPOSE, consent_id=self.consent_id
            ),
            "consent_revoked",
        )
        elapsed = (time.perf_counter() - started) * 1000
        return (
            f"revoked; the very next income query is refused [{exc.code}] ({elapsed:.0f} ms later)"
        )

    def parent_acts_for_child(self) -> str:
        inst = self.inst
        authority = inst.conf.current().representation_authority
        expect(authority == POPULATION.subsystem, "the population register is not the authority")
        today = utcnow().date()
        majority = today.replace(year=today.year + 10, day=min(today.day, 28))
        relation = rpc.invoke(
            inst.representation("population").RegisterRelation,
            consent_pb2.RegisterRelationRequest(
                authority=authority,
                relation=consent_pb2.Relation(
                    kind=consent_pb2.RELATION_PARENT,
                    representative=CITIZEN.id,
                    represented=CHILD_ID,
                    majority_date=majority.isoformat(),
                    representative_name=CITIZEN.full_name,
                    represented_name=CHILD_NAME,
                ),
            ),
            timeout=10,
        )
        self.story.say(
            f"   BCA's population register records {CITIZEN.full_name} as the parent of "
            f"{CHILD_NAME}, a minor until {majority:%Y-%m-%d} (a majority date, no birth date)."
        )
        terms = consent_pb2.ConsentTerms(
            subject=CHILD_ID,
            grantee=SOCIAL.subsystem,
            services=[TAX.service],
            purpose=PURPOSE,
            fields=["annual_income"],
            valid_until_ms=to_ms(utcnow() + timedelta(days=30)),
        )
        pending = inst.agency_consent("social").RequestConsent(
            consent_pb2.RequestConsentRequest(requester=SOCIAL.subsystem, terms=terms), timeout=10
        )
        citizen = inst.citizen_consent()
        child = (("authorization", f"Bearer {inst.token(CHILD_ID)}"),)
        own = expect_denied(
            lambda: rpc.invoke(
                citizen.Approve,
                consent_pb2.ConsentActionRequest(consent_id=pending.id),
                metadata=child,
                timeout=10,
            ),
            "minor_needs_representative",
        )
        self.story.say(
            f"   VSS asks {CHILD_NAME} for consent; his own approval is refused [{own.code}]."
        )
        approved = citizen.Approve(
            consent_pb2.ConsentActionRequest(consent_id=pending.id, acting_for=CHILD_ID),
            metadata=self.bearer(),
            timeout=10,
        )
        expect(approved.state == consent_pb2.ACTIVE, "the parent's approval did not count")
        self.audit.citizen_history(self.token, 50, 0, CHILD_ID)  # An looks: that is logged too
        self.story.say(
            f"   {CITIZEN.full_name} logs in as himself, acts for his son, approves the request "
            "and looks at his son's data use."
        )
        trust = verify.LogTrust.from_conf(inst.conf.current())
        deadline = time.monotonic() + 20
        child_token = inst.token(CHILD_ID)
        while True:
            history = self.audit.citizen_history(child_token, 50)
            cp = (
                verify.check_checkpoint(history.checkpoint.note, trust)
                if history.checkpoint is not None
                else None
            )
            checked = [
                verify.check_record(
                    i.entry, i.proof, cp, trust, opening=i.opening, subject=CHILD_ID
                )
                for i in history.items
            ]
            by_parent = [
                c
                for c in checked
                if c.status == verify.Status.VERIFIED and parse_actor(c.access.actor) is not None
            ]
            kinds = {c.access.kind for c in by_parent}
            if {"consent_event", "representative_access"} <= kinds:
                break
            if time.monotonic() > deadline:
                raise StepFailed("the son's history does not show his parent's actions")
            time.sleep(0.3)
        rows = [
            (
                f"{c.access.time:%H:%M:%S}",
                c.access.reason_code if c.access.kind == "consent_event" else "history read",
                c.access.actor,
                "verified",
            )
            for c in sorted(by_parent, key=lambda c: c.access.time)
        ]
        _table(self.story, rows, ("time", "what", "by", "proof"))
        return (
            f"relation {relation.id[:13]}…: the parent's approval counts, the minor's does not; "
            f"{CHILD_NAME}'s verified history shows who acted for him"
        )

    def inspector_verifies(self) -> str:
        from audit.client import AuditClient
        from audit.verify import Trust, verify_log

        inst = self.inst
        # Wait for every outbox to drain and a checkpoint covering everything to be cosigned.
        deadline = time.monotonic() + 20
        while any(s.outbox.depth() for s in inst.servers.values()):
            if time.monotonic() > deadline:
                raise StepFailed("outboxes did not drain")
            time.sleep(0.2)
        d = inst.layout.inspector_dir
        paths = InstancePaths(inst.layout.data_dir)
        identity = load_identity(
            d / "inspector.pem", d / "inspector.key", paths.ca_pem, inst.passphrase
        )
        conf = inst.conf.current()
        assert inst.audit is not None
        store = inst.audit.store
        size = store.tree_state().size
        while True:
            cp = store.latest_checkpoint(min_cosignatures=conf.witness_quorum)
            if cp is not None and cp.size >= size:
                break
            if time.monotonic() > deadline:
                raise StepFailed("no cosigned checkpoint covers the log")
            time.sleep(0.2)
        client = AuditClient(inst.layout.audit, identity)
        try:
            report = verify_log(client, Trust.from_conf(conf), require_quorum=True)
            denials = inst.inspector_audit().Search(
                audit_pb2.SearchRequest(decision=common_pb2.DENY, limit=100), timeout=10
            )
        finally:
            client.close()
        rows = [
            ("entries recomputed into the root", str(report.entries_checked)),
            ("record signatures checked", str(report.signatures_checked)),
            ("checkpoints checked (signature, consistency)", str(report.checkpoints_checked)),
            ("messages paired (consumer + provider)", str(report.messages_paired)),
            ("witnesses cosigning the latest checkpoint", ", ".join(report.cosigned_by)),
        ]
        _table(self.story, rows, ("check", "result"))
        for finding in report.findings:
            self.story.say(f"   {finding}")
        expect(report.ok, "verification found problems: " + "; ".join(map(str, report.errors)))
        expect(len(report.cosigned_by) >= conf.witness_quorum, "witness quorum not met")
        return (
            f"log of {report.tree_size} entries verified; the inspector's search finds "
            f"{len(denials.hits)} denials"
        )


def run_demo(data_dir: Path | None, *, keep: bool = False, out: TextIO = sys.stdout) -> int:
    """Run the scenario; returns the process exit code (0 only if every step held)."""
    story = Story(out)
    started = time.perf_counter()
    root = data_dir or Path(tempfile.mkdtemp(prefix="cdx-demo-")) / "data"
    story.say("CDX demo — a whole instance on this machine, with real servers and mutual TLS.")
    story.say(f"Data directory: {root}")
    create_instance(root)
    inst = start_instance(root, StackOptions(portal=keep, insecure_cookies=keep))
    try:
        layout = inst.layout  # the addresses the components bound
        rows = [("registry", layout.registry), ("consent service", layout.consent),
                ("audit log", layout.audit), ("audit log tiles", layout.audit_tiles)]  # fmt: skip
        for key, a in layout.agencies.items():
            agency = spec(key)
            kind = KINDS[str(agency.kind)]
            rows.append((f"{agency.name} security server ({agency.server_id})", a.exchange))
            rows.append((f"  {kind.description.split(':')[0]} backend", a.backend))
        story.say(f"Started in {time.perf_counter() - started:.1f} s:")
        _table(story, rows, ("component", "address"))
        story.say(f"\nCitizen: {CITIZEN.full_name} (national id kept out of every log).")
        s = Scenario(inst, story)
        story.step(
            "Identity from the population register (legal mandate)", s.identity_under_mandate
        )
        story.step("A field outside the agreement is refused", s.field_outside_agreement)
        story.step("Income without consent is refused", s.income_without_consent)
        story.step("Consent requested, approved by the citizen", s.consent_requested_and_approved)
        story.step("The citizen asks to be told of every access", s.asks_to_be_told)
        story.step("Income under consent, only consented fields", s.income_with_consent)
        story.step("The citizen is told by e-mail", s.told_by_email)
        story.step("The citizen's verified access history", s.citizen_history)
        story.step("The citizen revokes; the next query is refused", s.revoke)
        story.step("A parent acts for his child; the child sees who acted", s.parent_acts_for_child)
        story.step("The inspector verifies the whole log", s.inspector_verifies)
        ok = story.summary()
        story.say(f"   Total time {time.perf_counter() - started:.1f} s.")
        if keep and inst.portal is not None:
            story.say(f"\nThe instance keeps running. Portal: {inst.portal.url}")
            story.say("Log in as a citizen with id 079090000001. Press Ctrl-C to stop.")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                story.say("\nStopping…")
        s.audit.close()
        return 0 if ok else 1
    finally:
        inst.stop()
