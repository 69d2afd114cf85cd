"""The portal speaks English and Vietnamese: complete catalogues, a working language switch."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest

from portal.i18n import Catalogue, load_catalogues, negotiate
from tests.unit.portal_fakes import ALICE, INSPECTOR, csrf_of, harness

TEMPLATES = Path(__file__).resolve().parents[2] / "portal" / "templates"
PORTAL = TEMPLATES.parent


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_catalogues_have_the_same_keys_and_placeholders() -> None:
    cats = load_catalogues()
    en, vi = cats["en"], cats["vi"]
    assert set(en) == set(vi)
    for key in en:
        assert en[key].strip() and vi[key].strip(), key
        assert _placeholders(en[key]) == _placeholders(vi[key]), key


def test_every_key_the_code_uses_is_in_the_catalogue() -> None:
    en = load_catalogues()["en"]
    used: set[str] = set()
    for path in TEMPLATES.glob("*.html"):
        used |= set(re.findall(r"\bt\('([a-z_.]+)'", path.read_text()))
    for path in PORTAL.glob("*.py"):
        used |= {
            k
            for k in re.findall(
                r'"((?:flash|login\.error|search\.error|consents\.group|'
                r'terms|decision)\.[a-z_.]+)"',
                path.read_text(),
            )
        }
    used = {k for k in used if not k.endswith(".")}
    assert used and not sorted(used - set(en))


@pytest.mark.parametrize(
    "prefix,names",
    [
        (
            "error",
            [
                f"{n}.{p}"
                for n in (
                    "csrf",
                    "role",
                    "not_found",
                    "reason",
                    "transition",
                    "bad_request",
                    "method",
                    "unavailable",
                    "internal",
                )
                for p in ("title", "message")
            ],
        ),
        ("state", ["PENDING", "ACTIVE", "PAUSED", "REVOKED", "EXPIRED", "REJECTED"]),
        ("flash.consent", ["approve", "reject", "pause", "resume", "revoke"]),
        (
            "problem",
            [
                "not_in_checkpoint",
                "awaiting_cosignatures",
                "invalid_proof",
                "invalid_signature",
                "unknown_recorder",
                "recorder_not_party",
                "subject_mismatch",
                "proof_mismatch",
                "leaf_hash_mismatch",
                "invalid_checkpoint",
                "record_mismatch",
                "checkpoint_inconsistent",
            ],
        ),
        ("basis", ["CONSENT", "LEGAL_OBLIGATION", "PUBLIC_TASK", "VITAL_INTEREST"]),
        (
            "search.field",
            [
                "client",
                "service",
                "purpose",
                "decision",
                "recorder",
                "from",
                "until",
                "subject",
                "reason",
                "one_sided",
            ],
        ),
        (
            "reason",
            [
                "consent_revoked",
                "consent_paused",
                "consent_missing",
                "consent_expired",
                "no_agreement",
            ],
        ),
    ],
)
def test_dynamic_keys_exist(prefix: str, names: list[str]) -> None:
    for lang, messages in load_catalogues().items():
        missing = [n for n in names if f"{prefix}.{n}" not in messages]
        assert not missing, (lang, prefix, missing)


@pytest.mark.parametrize(
    "header,expected",
    [
        ("vi-VN,vi;q=0.9,en;q=0.8", "vi"),
        ("en-GB,en;q=0.9", "en"),
        ("fr-FR, vi;q=0.5, en;q=0.4", "vi"),
        ("de", "en"),
        ("", "en"),
        ("vi;q=abc, en;q=0.1", "en"),
    ],
)
def test_accept_language_negotiation(header: str, expected: str) -> None:
    assert negotiate(header, "en") == expected


def test_dates_are_written_the_way_each_language_does() -> None:
    from tests.unit.portal_fakes import NOW

    cat = Catalogue("Asia/Ho_Chi_Minh")
    assert cat.translator("vi").when(NOW) == "16:30, 02/06/2025 (UTC+07:00)"
    assert cat.translator("en").when(NOW) == "02 Jun 2025, 16:30 (UTC+07:00)"


def test_language_switch_changes_every_page() -> None:
    h = harness()
    h.world.record(ALICE)
    h.world.publish()
    client = h.client()
    h.login(client, ALICE)
    page = client.get("/me/access")
    assert '<html lang="en">' in page.text and "My data use" in page.text
    assert "Social benefit eligibility" in page.text  # purpose description from global conf
    switched = client.post(
        "/lang", data={"csrf_token": csrf_of(page.text), "lang": "vi", "next": "/me/access"}
    )
    assert switched.status_code == 303 and switched.headers["location"] == "/me/access"
    page = client.get("/me/access")
    assert '<html lang="vi">' in page.text
    assert "Dữ liệu của tôi được sử dụng" in page.text
    assert "Xét hưởng trợ cấp xã hội" in page.text  # description_vi from global conf
    assert "Đã xác minh" in page.text
    assert "My data use" not in page.text
    assert '<html lang="vi">' in client.get("/me/consents").text


def test_language_follows_the_browser_until_chosen() -> None:
    h = harness()
    client = h.client()
    page = client.get("/login", headers={"accept-language": "vi-VN,vi;q=0.9"})
    assert '<html lang="vi">' in page.text and "Đăng nhập" in page.text
    assert '<html lang="en">' in client.get("/login", headers={"accept-language": "en"}).text


def test_language_choice_survives_login() -> None:
    h = harness()
    client = h.client()
    page = client.get("/login")
    client.post("/lang", data={"csrf_token": csrf_of(page.text), "lang": "vi", "next": "/login"})
    h.login(client, INSPECTOR, "inspector")
    assert "Tra cứu nhật ký kiểm toán" in client.get("/inspect").text
