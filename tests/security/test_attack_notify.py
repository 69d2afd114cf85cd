"""Attacks on the notification service and the audit log's entry feed.

Another citizen cannot read or change my preferences (whose they are comes from the relayed ID
token, and only the portal may relay one); a sent message holds no national id and no payload
value; an address that would change a message's structure (header injection) is refused; only
the notification service may follow the entry feed, which carries national ids.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime, timedelta

import grpc
import pytest

from cdx import errors, rpc
from cdx.clock import utcnow
from cdx.v1 import audit_pb2, audit_pb2_grpc, consent_pb2, notify_pb2, notify_pb2_grpc
from notify import webhook
from notify.addresses import check_app_handle, check_email
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

HOSTILE_EMAILS = [
    "an@example.vn\r\nBcc: victim@evil.example",
    "an@example.vn\nSubject: you won",
    "an@example.vn\rX-Injected: 1",
    "An Nguyen <an@example.vn>",
    "an@example.vn, victim@evil.example",
    "an@example.vn;victim@evil.example",
    '"an"@example.vn',
    "an(comment)@example.vn",
    "an@example",
    "an@@example.vn",
    "an @example.vn",
    "an@example.vn\x00",
    "an@exam_ple.vn",
    "an@-example.vn",
    "ａn@example.vn",  # a full-width look-alike
    "an@exämple.vn",
    "." + "a" * 10 + "@example.vn",
    "a" * 65 + "@example.vn",
    "an@" + "a" * 250 + ".vn",
]
HOSTILE_HANDLES = ["app:an\r\nX-Injected: 1", "../../etc", "-flag", "a" * 129, "an an", "an\u202e"]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NotifyEnv]:
    e = start_notify_env(tmp_path_factory.mktemp("notify-attacks"), webhook=True)
    try:
        yield e
    finally:
        e.close()


def _notify(env: NotifyEnv, identity: rpc.TlsIdentity) -> notify_pb2_grpc.CitizenNotificationsStub:
    channel = rpc.secure_channel(env.notify.address, identity)
    return notify_pb2_grpc.CitizenNotificationsStub(channel)


def _code(exc: grpc.RpcError) -> str:
    return rpc.error_from_rpc(exc).code


def test_another_citizen_cannot_read_or_change_my_preferences(env: NotifyEnv) -> None:
    mine = env.set_preferences(AN, [notify_pb2.EVERY_ACCESS], email="an@example.vn")
    portal = env.stack.citizen_notify()
    # Binh, logged in, asks for "the" preferences: he gets his own (none), never An's.
    theirs = portal.GetPreferences(
        notify_pb2.GetPreferencesRequest(), metadata=bearer(env.token(BINH)), timeout=10
    )
    assert theirs.email == "" and list(theirs.categories) == []
    # Binh replaces "the" preferences: his own change; An's stay as she chose.
    env.set_preferences(BINH, [notify_pb2.DENIALS], email="binh@evil.example")
    again = portal.GetPreferences(
        notify_pb2.GetPreferencesRequest(), metadata=bearer(env.token(AN)), timeout=10
    )
    assert (again.email, list(again.categories), again.version) == (
        "an@example.vn",
        [notify_pb2.EVERY_ACCESS],
        mine.version,
    )
    # No token, an inspector's token, an expired token: refused.
    refusals = {
        "none": (),
        "inspector": bearer(env.consent_env.token("dpa-inspector-1", role="inspector")),
        "expired": bearer(env.consent_env.token(AN, ttl=timedelta(minutes=5), now=_hours_ago(2))),
        "garbage": bearer("eyJhbGciOiJub25lIn0.e30."),
    }
    for name, metadata in refusals.items():
        with pytest.raises(grpc.RpcError) as refused:
            portal.SetPreferences(
                notify_pb2.SetPreferencesRequest(
                    preferences=notify_pb2.NotifyPreferences(email="x@evil.example")
                ),
                metadata=metadata,
                timeout=10,
            )
        assert refused.value.code() in (
            grpc.StatusCode.UNAUTHENTICATED,
            grpc.StatusCode.PERMISSION_DENIED,
        ), name
    # An's token relayed by anyone but the portal (a security server, the consent service):
    # refused, so a component that sees a citizen's token cannot act as them here.
    for identity in (
        env.consent_env.server_identity(SOCIAL),
        env.stack.service_identity("consent"),
    ):
        with pytest.raises(grpc.RpcError) as refused:
            _notify(env, identity).GetPreferences(
                notify_pb2.GetPreferencesRequest(), metadata=bearer(env.token(AN)), timeout=10
            )
        assert _code(refused.value) == "permission_denied"


def test_sent_messages_hold_no_national_id_or_payload_value(env: NotifyEnv) -> None:
    address, handle = "chi.le@example.vn", "app:chi"
    every = [c for c in notify_pb2.NotifyCategory.values() if c]
    env.set_preferences(CHI, every, email=address, app_handle=handle, language="vi")
    person = env.query(SOCIAL, POPULATION_SERVICE, CHI, ["full_name", "birth_date"])
    agency = env.consent_env.agency_api(env.consent_env.server_identity(SOCIAL))
    agency.RequestConsent(
        consent_pb2.RequestConsentRequest(requester=SOCIAL_SUBSYSTEM, terms=terms(CHI)),
        timeout=10,
    )
    with pytest.raises(errors.CdxError):
        env.query(SOCIAL, TAX_SERVICE, CHI, ["annual_income"])
    assert env.sink.wait_for(3, to=address)
    assert env.webhook is not None
    eventually(
        lambda: len([b for _, b in env.webhook.received if handle in b.decode()]) >= 3,
        what="three webhook deliveries",
    )
    values = {str(v) for v in person.data.values()} | {CHI}
    values |= {str(v).split(".")[0] for v in person.data.values()}  # numbers as printed
    mails = [m.raw for m in env.sink.messages(to=address)]
    hooks = [b for _, b in env.webhook.received if handle in b.decode()]
    for sent in mails + hooks:
        text = sent.decode("utf-8", "replace")
        for value in values:
            assert value not in text, "a message carries personal data"
        assert CHI not in json.dumps(text)


def test_hostile_addresses_are_refused_and_nothing_is_sent_to_them(env: NotifyEnv) -> None:
    citizen = "079090000004"
    env.set_preferences(citizen, [notify_pb2.EVERY_ACCESS], email="dung@example.vn")
    portal = env.stack.citizen_notify()
    for hostile in HOSTILE_EMAILS:
        with pytest.raises(errors.InvalidAddressError):
            check_email(hostile)
        with pytest.raises(grpc.RpcError) as refused:
            portal.SetPreferences(
                notify_pb2.SetPreferencesRequest(
                    preferences=notify_pb2.NotifyPreferences(
                        categories=[notify_pb2.EVERY_ACCESS], email=hostile, language="en"
                    )
                ),
                metadata=bearer(env.token(citizen)),
                timeout=10,
            )
        assert _code(refused.value) == "invalid_address", repr(hostile)
    for hostile in HOSTILE_HANDLES:
        with pytest.raises(errors.InvalidAddressError):
            check_app_handle(hostile)
    kept = portal.GetPreferences(
        notify_pb2.GetPreferencesRequest(), metadata=bearer(env.token(citizen)), timeout=10
    )
    assert kept.email == "dung@example.vn"
    env.query(SOCIAL, POPULATION_SERVICE, citizen, ["full_name"])
    assert env.sink.wait_for(1, to="dung@example.vn")
    for mail in env.sink.messages():
        assert not any("evil.example" in r for r in mail.recipients)
        assert mail.message["Bcc"] is None and mail.message["X-Injected"] is None


def test_only_the_notification_service_may_follow_the_entry_feed(env: NotifyEnv) -> None:
    address = env.stack.layout.audit
    outsiders = {
        "portal": env.stack.service_identity("portal"),
        "consent": env.stack.service_identity("consent"),
        "security server": env.consent_env.server_identity(SOCIAL),
        "information system": env.consent_env.client_identity(SOCIAL),
    }
    for name, identity in outsiders.items():
        channel = rpc.secure_channel(address, identity)
        try:
            stream = audit_pb2_grpc.AuditEntryFeedStub(channel).WatchEntries(
                audit_pb2.WatchEntriesRequest(after_index=-1), timeout=10
            )
            with pytest.raises(grpc.RpcError) as refused:
                next(iter(stream))
            assert _code(refused.value) == "permission_denied", name
        finally:
            channel.close()
    channel = rpc.secure_channel(address, env.stack.service_identity("notify"))
    try:
        stream = audit_pb2_grpc.AuditEntryFeedStub(channel).WatchEntries(
            audit_pb2.WatchEntriesRequest(after_index=-1), timeout=10
        )
        first = next(iter(stream))
        assert first.index >= 0
        stream.cancel()
    finally:
        channel.close()


def test_a_forged_or_replayed_webhook_delivery_is_detected() -> None:
    body = b'{"id": "k1", "text": "hello"}'
    now = int(time.time())
    signed = webhook.headers(WEBHOOK_SECRET, "k1", now, body)
    assert webhook.verify(WEBHOOK_SECRET, signed, body, now=now) == "k1"
    forged = [
        (signed, body + b" ", now),  # altered body
        (webhook.headers(b"\x01" * 32, "k1", now, body), body, now),  # another secret
        ({**signed, "webhook-id": "k2"}, body, now),  # another delivery's id
        (signed, body, now + 3600),  # replayed an hour later
        ({k: v for k, v in signed.items() if k != "webhook-signature"}, body, now),
    ]
    for headers, sent, at in forged:
        with pytest.raises(errors.SignatureError):
            webhook.verify(WEBHOOK_SECRET, headers, sent, now=at)


def _hours_ago(hours: int) -> datetime:
    return utcnow() - timedelta(hours=hours)
