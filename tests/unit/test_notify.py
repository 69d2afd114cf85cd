"""The notification service's pure parts: which entries concern which choice, the messages in
both languages, addresses, sealing, webhook signatures and the retry schedule."""

from __future__ import annotations

import pytest

from cdx import errors
from cdx.v1 import audit_pb2, common_pb2
from notify import webhook
from notify.addresses import check_app_handle, check_email
from notify.channels import Delivery, SmtpSender, SmtpSettings
from notify.messages import render
from notify.model import Category, Preferences, categories_of, event_of
from notify.sealing import Sealer
from notify.service import RetryPolicy
from notify.servicer import categories_from_pb

CITIZEN = "079090000001"


def record(**kw: object) -> audit_pb2.AccessRecord:
    base: dict[str, object] = {
        "record_id": "r-1",
        "message_id": "m-1",
        "time_ms": 1_760_000_000_000,
        "client": "VN:GOV:VSS:benefits",
        "service": "VN:GOV:GDT:income/income/v1",
        "purpose": "SOCIAL_BENEFIT_ELIGIBILITY",
        "lawful_basis": common_pb2.LEGAL_OBLIGATION,
        "decision": common_pb2.ALLOW,
        "reason_code": "ok",
        "kind": "access",
    }
    base.update(kw)
    return audit_pb2.AccessRecord(**base)  # type: ignore[arg-type]


E, C, D, R, U, P = (
    Category.EVERY_ACCESS,
    Category.CONSENT_ACCESS,
    Category.DENIALS,
    Category.CONSENT_REQUESTS,
    Category.UNSEALED,
    Category.REPRESENTATIVE_ACTIONS,
)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, {E}),
        ({"lawful_basis": common_pb2.CONSENT}, {E, C}),
        ({"decision": common_pb2.DENY, "reason_code": "consent_missing"}, {D}),
        ({"decision": common_pb2.DECISION_UNSPECIFIED}, set()),
        ({"kind": "inspector_query"}, {E}),
        ({"kind": "unseal", "target_record_id": "r-0"}, {U}),
        (
            {"kind": "consent_event", "reason_code": "requested", "actor": "VN:GOV:VSS:benefits"},
            {R},
        ),
        ({"kind": "consent_event", "reason_code": "approved", "actor": "citizen"}, set()),
        ({"kind": "consent_event", "reason_code": "revoked", "actor": "system"}, set()),
        ({"kind": "consent_event", "reason_code": "approved", "actor": "guardian:0f1e"}, {P}),
        ({"kind": "log_anchor"}, set()),
    ],
)
def test_each_kind_of_entry_belongs_to_its_categories(fields: dict, expected: set) -> None:
    assert categories_of(record(**fields)) == frozenset(expected)


def test_both_records_of_one_exchange_are_one_event_and_an_unseal_links_its_target() -> None:
    consumer = event_of(4, record(record_id="r-c", role=common_pb2.CONSUMER))
    provider = event_of(5, record(record_id="r-p", role=common_pb2.PROVIDER))
    assert consumer is not None and provider is not None
    assert consumer.key == provider.key == "message:m-1"
    unseal = event_of(9, record(kind="unseal", record_id="r-u", target_record_id="r-p"))
    assert unseal is not None
    assert unseal.key == "record:r-u" and unseal.link_record_id == "r-p"
    assert event_of(1, record(kind="log_anchor")) is None


def test_preferences_want_an_event_only_with_a_chosen_category_and_an_address() -> None:
    event = event_of(1, record(lawful_basis=common_pb2.CONSENT))
    assert event is not None
    assert Preferences(frozenset({C}), email="a@b.vn").wants(event)
    assert not Preferences(frozenset({D}), email="a@b.vn").wants(event)
    assert not Preferences(frozenset({C})).wants(event)  # nowhere to send
    with pytest.raises(errors.InvalidArgumentError):
        Preferences(language="fr")
    assert "a@b.vn" not in repr(Preferences(email="a@b.vn", app_handle="h"))


@pytest.mark.parametrize("language", ["en", "vi"])
def test_messages_in_both_languages_link_to_the_entry_and_name_no_citizen(language: str) -> None:
    event = event_of(7, record(lawful_basis=common_pb2.CONSENT))
    assert event is not None
    message = render(
        event, language=language, chosen=frozenset({C}), conf=None, portal_url="https://p.vn/"
    )
    assert message.link == "https://p.vn/me/access/r-1"
    assert message.link in message.text
    assert message.category is C
    assert CITIZEN not in message.subject + message.text
    assert "\n" not in message.subject
    word = "used your data" if language == "en" else "đã sử dụng dữ liệu"
    assert word in message.subject


def test_a_line_break_in_a_registered_name_cannot_reach_a_mail_header() -> None:
    event = event_of(7, record(client="VN:GOV:VSS\r\nBcc: x@evil.example:benefits"))
    assert event is not None
    message = render(event, language="en", chosen=frozenset({E}), conf=None, portal_url="")
    assert "\r" not in message.subject and "\n" not in message.subject
    delivery = Delivery(1, "k", "email", "a@b.vn", "bad\r\nBcc: x@evil.example", "t", "",
                        "en", "every_access", 1, 0)  # fmt: skip
    with pytest.raises(errors.DeliveryRefusedError):
        SmtpSender(SmtpSettings("127.0.0.1", 25, "cdx@example.vn")).message(delivery)


def test_plain_addresses_are_accepted_and_normalised() -> None:
    assert check_email("An.Nguyen+cdx@Example.VN") == "An.Nguyen+cdx@example.vn"
    assert check_email("a_b-c@mail.gov.vn") == "a_b-c@mail.gov.vn"
    assert check_app_handle("app:an-01.x_y") == "app:an-01.x_y"


@pytest.mark.parametrize(
    "bad", ["", "a", "@b.vn", "a@", "a@b", "a@b.vn\n", "<a@b.vn>", "a@b..vn", "a..b@c.vn"]
)
def test_malformed_addresses_raise_exactly_invalid_address(bad: str) -> None:
    with pytest.raises(errors.InvalidAddressError):
        check_email(bad)


def test_sealed_values_open_only_in_their_row_and_under_their_key() -> None:
    sealer = Sealer(b"\x01" * 32, b"\x02" * 32)
    sealed = sealer.seal("notify_preferences", "tag-1", '{"email": "a@b.vn"}')
    assert "a@b.vn" not in sealed
    assert sealer.open("notify_preferences", "tag-1", sealed) == '{"email": "a@b.vn"}'
    with pytest.raises(errors.KeyStoreError):
        sealer.open("notify_preferences", "tag-2", sealed)  # moved to another row
    with pytest.raises(errors.KeyStoreError):
        Sealer(b"\x03" * 32, b"\x02" * 32).open("notify_preferences", "tag-1", sealed)
    with pytest.raises(errors.KeyStoreError):
        sealer.open("notify_preferences", "tag-1", sealed[:-4] + "AAAA")
    assert sealer.subject_tag(CITIZEN) != Sealer(b"\x01" * 32, b"\x04" * 32).subject_tag(CITIZEN)
    assert CITIZEN not in sealer.subject_tag(CITIZEN)
    key = sealer.delivery_key("message:m-1", "email", "a@b.vn")
    assert key != sealer.delivery_key("message:m-1", "email", "c@d.vn")
    assert key == sealer.delivery_key("message:m-1", "email", "a@b.vn")


def test_webhook_secrets_round_trip_and_refuse_garbage() -> None:
    secret = bytes(range(32))
    assert webhook.parse_secret(webhook.secret_text(secret)) == secret
    for bad in ("secret", "whsec_***"):
        with pytest.raises(errors.MalformedError):
            webhook.parse_secret(bad)


def test_retries_back_off_exponentially_up_to_a_ceiling() -> None:
    policy = RetryPolicy(base_s=2.0, max_s=60.0, jitter=0.0)
    assert [policy.delay_s(n) for n in (1, 2, 3, 4, 10)] == [2.0, 4.0, 8.0, 16.0, 60.0]
    jittered = RetryPolicy(base_s=10.0, jitter=0.2)
    assert all(8.0 <= jittered.delay_s(1) <= 12.0 for _ in range(50))


def test_unknown_or_too_many_categories_are_refused() -> None:
    assert categories_from_pb([1, 3]) == frozenset({E, D})
    with pytest.raises(errors.InvalidArgumentError):
        categories_from_pb([99])
    with pytest.raises(errors.LimitExceededError):
        categories_from_pb([1] * 17)


def test_a_long_vietnamese_subject_keeps_its_spaces_in_the_sent_mail() -> None:
    import email
    import email.policy

    subject = "CDX: Bảo hiểm xã hội Việt Nam đã sử dụng dữ liệu của bạn, một tiêu đề rất dài"
    delivery = Delivery(1, "k", "email", "a@b.vn", subject, "Xin chào,\nnội dung", "", "vi",
                        "every_access", 1, 0)  # fmt: skip
    raw = SmtpSender(SmtpSettings("127.0.0.1", 25, "cdx@example.vn")).message(delivery).as_bytes()
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert str(parsed["Subject"]) == subject
    body = parsed.get_body(("plain",))  # type: ignore[attr-defined]
    assert body.get_content().startswith("Xin chào,\nnội dung")
