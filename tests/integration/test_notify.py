"""The notification service over a whole instance: real security servers, the audit log and
its entry feed, the consent service, a real SMTP server (``stack.mailsink``, aiosmtpd) and a
real HTTP webhook receiver; SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from cdx import errors
from cdx.v1 import audit_pb2, consent_pb2, notify_pb2
from notify import webhook
from tests.conftest import database
from tests.integration.consent_env import SOCIAL, SOCIAL_SUBSYSTEM, TAX_SERVICE, bearer, terms
from tests.integration.notify_env import (
    POPULATION_SERVICE,
    WEBHOOK_SECRET,
    NotifyEnv,
    start_notify_env,
)
from tests.waiting import eventually

AN = "079090000001"
BINH = "079090000002"
CHI = "079090000003"
IDENTITY_FIELDS = ["full_name", "birth_date"]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def env(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NotifyEnv]:
    with database(request.param, "notify") as (url, schema):
        notify_db = (url, schema) if url else None
        e = start_notify_env(
            tmp_path_factory.mktemp(f"notify-{request.param}"), webhook=True, database=notify_db
        )
        try:
            yield e
        finally:
            e.close()


def _sent(env: NotifyEnv) -> int:
    return env.notify.service.counts()["sent"]


def test_an_access_is_emailed_once_with_a_link_to_its_entry(env: NotifyEnv) -> None:
    address = "an.nguyen@example.vn"
    env.set_preferences(AN, [notify_pb2.EVERY_ACCESS], email=address)
    response = env.query(SOCIAL, POPULATION_SERVICE, AN, IDENTITY_FIELDS)
    assert env.sink.wait_for(1, to=address), "no e-mail arrived"
    # Both sides of the exchange are in the log (two entries, one message id): one e-mail.
    eventually(
        lambda: (
            {response.record_id, response.provider_record_id}
            <= {r.record_id for r in _entries(env)}
        ),
        what="both records of the exchange in the log",
    )
    eventually(lambda: env.notify.service.cursor() >= _last_index(env), what="the feed")
    mail = env.sink.messages(to=address)
    assert len(mail) == 1
    assert "used your data" in mail[0].subject
    links = [line for line in mail[0].text.splitlines() if "/me/access/" in line]
    assert len(links) == 1
    assert links[0].rsplit("/", 1)[1] in {response.record_id, response.provider_record_id}
    assert mail[0].message["Message-ID"].endswith("@notify.cdx>")


def test_choices_decide_what_is_told(env: NotifyEnv) -> None:
    address = "binh.tran@example.vn"
    env.set_preferences(BINH, [notify_pb2.CONSENT_ACCESS, notify_pb2.DENIALS], email=address)
    # A legal-mandate access: not under consent, so nothing is sent.
    env.query(SOCIAL, POPULATION_SERVICE, BINH, IDENTITY_FIELDS)
    # A refused one (no consent): told as a denial.
    with pytest.raises(errors.ConsentDeniedError):
        env.query(SOCIAL, TAX_SERVICE, BINH, ["annual_income"])
    assert env.sink.wait_for(1, to=address)
    # An access under her consent: told.
    consent = env.consent_env.citizen().Grant(
        consent_pb2.GrantRequest(terms=terms(BINH)), metadata=bearer(env.token(BINH)), timeout=10
    )
    env.query(SOCIAL, TAX_SERVICE, BINH, ["annual_income"], consent_id=consent.id)
    assert env.sink.wait_for(2, to=address)
    eventually(lambda: env.notify.service.cursor() >= _last_index(env), what="the feed")
    subjects = [m.subject for m in env.sink.messages(to=address)]
    assert len(subjects) == 2, subjects
    assert "refused" in subjects[0] and "used your data" in subjects[1]


def test_a_consent_request_is_told_in_vietnamese_and_by_the_app_webhook(env: NotifyEnv) -> None:
    address, handle = "chi.le@example.vn", "app:chi-01"
    env.set_preferences(
        CHI, [notify_pb2.CONSENT_REQUESTS], email=address, app_handle=handle, language="vi"
    )
    agency = env.consent_env.agency_api(env.consent_env.server_identity(SOCIAL))
    agency.RequestConsent(
        consent_pb2.RequestConsentRequest(requester=SOCIAL_SUBSYSTEM, terms=terms(CHI)),
        timeout=10,
    )
    assert env.sink.wait_for(1, to=address)
    assert "xin sự đồng ý" in env.sink.messages(to=address)[0].subject
    assert env.webhook is not None
    eventually(lambda: env.webhook.received, what="the webhook delivery")
    headers, body = env.webhook.received[0]
    delivery_id = webhook.verify(WEBHOOK_SECRET, headers, body, now=int(time.time()))
    document = json.loads(body)
    assert document["id"] == delivery_id
    assert document["recipient"] == handle
    assert document["category"] == "consent_requests"
    assert document["language"] == "vi"
    assert "/me/access/" in document["link"]


def test_a_sealed_access_is_told_only_once_unsealed(env: NotifyEnv) -> None:
    citizen, address = "079090000004", "dung.pham@example.vn"
    env.set_preferences(citizen, [notify_pb2.EVERY_ACCESS, notify_pb2.UNSEALED], email=address)
    covert = env.consent_env.instance.agency("population").query(
        "VN:GOV:VSS:benefits/insurance/v1", citizen, "IDENTITY_VERIFICATION", ["status"]
    )
    eventually(
        lambda: covert.provider_record_id in {r.record_id for r in _entries(env)},
        what="the sealed record in the log",
    )
    eventually(lambda: env.notify.service.cursor() >= _last_index(env), what="the feed")
    assert env.sink.messages(to=address) == []  # sealed: nothing told
    env.stack.inspector_audit().Unseal(
        audit_pb2.UnsealRequest(record_id=covert.provider_record_id, reason="case closed, 2026"),
        timeout=10,
    )
    assert env.sink.wait_for(1, to=address)
    mail = env.sink.messages(to=address)
    assert len(mail) == 1 and "disclosed" in mail[0].subject
    assert f"/me/access/{covert.provider_record_id}" in mail[0].text


def test_a_restarted_service_resumes_from_its_cursor_and_sends_nothing_twice(
    env: NotifyEnv,
) -> None:
    citizen, address = "079090000005", "em.vo@example.vn"
    env.set_preferences(citizen, [notify_pb2.EVERY_ACCESS], email=address)
    env.query(SOCIAL, POPULATION_SERVICE, citizen, IDENTITY_FIELDS)
    assert env.sink.wait_for(1, to=address)
    follower = env.notify.follower
    assert follower is not None
    follower.stop()  # the feed is down while more happens
    env.query(SOCIAL, POPULATION_SERVICE, citizen, IDENTITY_FIELDS)
    eventually(lambda: len(_entries(env)) and _last_index(env) > env.notify.service.cursor(),
               what="entries the stopped feed has not seen")  # fmt: skip
    env.notify.follower = type(follower)(
        env.notify.service, lambda: env.stack.layout.audit, env.stack.service_identity("notify")
    ).start()
    assert env.sink.wait_for(2, to=address)
    eventually(lambda: env.notify.service.cursor() >= _last_index(env), what="the feed")
    assert len(env.sink.messages(to=address)) == 2


def test_a_refused_address_becomes_a_dead_letter_and_others_keep_flowing(env: NotifyEnv) -> None:
    refused, fine = "gone@example.vn", "giang.ho@example.vn"
    env.sink.refuse(refused)
    before = env.notify.service.counts()["dead"]
    env.set_preferences("079090000006", [notify_pb2.EVERY_ACCESS], email=refused)
    # (six sample citizens: An chooses another address for this test)
    env.set_preferences(AN, [notify_pb2.EVERY_ACCESS], email=fine)
    env.query(SOCIAL, POPULATION_SERVICE, "079090000006", IDENTITY_FIELDS)
    env.query(SOCIAL, POPULATION_SERVICE, AN, IDENTITY_FIELDS)
    assert env.sink.wait_for(1, to=fine)
    eventually(lambda: env.notify.service.counts()["dead"] == before + 1, what="a dead letter")
    dead = env.notify.service.dead_letters()[-1]
    assert dead.last_error == "delivery_refused" and dead.attempts == 1
    assert refused not in dead.payload  # sealed: operators see no address


def _entries(env: NotifyEnv) -> list[audit_pb2.AccessRecord]:
    audit = env.stack.audit
    size = audit.store.tree_state().size
    out = []
    for row in audit.store.entries(0, size):
        signed = audit_pb2.SignedAccessRecord.FromString(row.leaf)
        out.append(audit_pb2.AccessRecord.FromString(signed.record))
    return out


def _last_index(env: NotifyEnv) -> int:
    return int(env.stack.audit.store.tree_state().size) - 1


def test_notify_keys_and_database_are_private(env: NotifyEnv) -> None:
    directory = env.stack.layout.notify_dir
    files = [directory / name for name in ("tag.key", "data.key", "webhook.key")]
    files += [p for p in (directory / "notify.db",) if p.exists()]  # SQLite only
    for path in (directory, *files):
        assert path.stat().st_mode & 0o077 == 0, path
