"""`cdx up` configured with an external OpenID provider (the certified ``oidc-provider`` from
npm, which CDX did not write), driven as people would: a citizen logs in from Chromium through
the provider's own login and consent pages, sees her history, approves and then revokes a
consent, and logs out (at the provider too); a copy of her session cookie taken before the
logout is refused afterwards; an inspector logs in; and the citizen's CLI logs in with the
device authorization grant and sees the same consent.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from stack.provision import InstanceLayout
from tests.conftest import PROJECT_ROOT
from tests.oidc_provider.external import INSPECTOR_LOGIN, ExternalProvider, fixed_port

try:
    from playwright.sync_api import Browser, Page, sync_playwright
except ImportError:  # pragma: no cover - depends on the environment
    sync_playwright = None

CDX = [sys.executable, "-m", "cdx.cli"]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = PROJECT_ROOT / "test-output" / "screenshots"
CITIZEN = "079090000001"
SOCIAL = "VN:GOV:VSS:benefits"
TAX_SERVICE = "VN:GOV:GDT:income/income/v1"
PURPOSE = "SOCIAL_BENEFIT_ELIGIBILITY"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.xdist_group("oidc_up"),
    pytest.mark.skipif(sync_playwright is None, reason="the playwright package is not installed"),
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium browser (apt-get install chromium)"),
]


@dataclass
class Up:
    data: Path
    layout: InstanceLayout
    provider: ExternalProvider
    lines: list[str]

    @property
    def portal(self) -> str:
        return f"http://{self.layout.portal}"


def _start_up(config: Path) -> tuple[subprocess.Popen[str], list[str]]:
    proc = subprocess.Popen(
        [*CDX, "up", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if line.startswith("Press Ctrl-C"):
            return proc, lines
    proc.kill()
    raise AssertionError("cdx up did not come up:\n" + "\n".join(lines))


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    root = tmp_path_factory.mktemp("oidc-up")
    portal_port = fixed_port()
    provider = ExternalProvider(root, [f"http://127.0.0.1:{portal_port}"]).start()
    try:
        oidc = provider.oidc_settings(root / "portal-client-secret")
        config = root / "single-box.toml"
        config.write_text(
            'data_dir = "data"\n'
            f"[ports]\nportal = {portal_port}\n"
            "[portal]\nenabled = true\ninsecure_cookies = true\n"
            "[oidc]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in oidc.items())
        )
        proc, lines = _start_up(config)
        try:
            data = root / "data"
            yield Up(data, InstanceLayout.load(data), provider, lines)
        finally:
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=60)
            assert proc.returncode == 0, out
    finally:
        provider.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert sync_playwright is not None and CHROMIUM is not None
    with sync_playwright() as p:
        try:
            launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        except Exception as exc:  # e.g. missing shared libraries
            pytest.skip(f"chromium could not start: {str(exc).splitlines()[0]}")
        yield launched
        launched.close()


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def cdx(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CDX, *args], capture_output=True, text=True, timeout=120, input=stdin, check=False
    )


def log_in_at_provider(page: Page, portal: str, login: str) -> None:
    """The portal's login page, then the provider's own login and consent pages, and back."""
    page.goto(f"{portal}/login")
    with page.expect_navigation():
        page.click(".login-options a.button")
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", "any password")
    with page.expect_navigation():
        page.click("button[type=submit]")
    if page.url.startswith(portal):
        return
    with page.expect_navigation(url=f"{portal}/**"):
        page.click("button:has-text('Continue')")


def until(page: Page, check: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out on {page.url}"
        time.sleep(0.3)
        page.reload()


def test_citizen_and_inspector_log_in_through_an_external_provider(
    up: Up, browser: Browser
) -> None:
    data, layout, portal = up.data, up.layout, up.portal
    # An agency's information system reads the citizen's identity (legal mandate) ...
    query = next(line.strip() for line in up.lines if line.strip().startswith("cdx query "))
    result = cdx(*query.split()[1:], "--json")
    assert result.returncode == 0, result.stderr
    # ... and the social insurance agency asks her for consent to read her income.
    social_ss = next(p for p in (data / "servers").iterdir() if p.name.startswith("VSS"))
    requested = cdx(
        "consent", "request", "--data", str(data), "--consent", layout.consent,
        "--ca", str(data / "registry" / "ca.pem"), "--server-dir", str(social_ss),
        "--subject", CITIZEN, "--grantee", SOCIAL, "--service", TAX_SERVICE,
        "--purpose", PURPOSE, "--fields", "annual_income", "--valid-days", "30",
    )  # fmt: skip
    assert requested.returncode == 0, requested.stderr
    consent_id = re.search(r"consent requested: (\S+)", requested.stdout).group(1)  # type: ignore[union-attr]

    context = browser.new_context(locale="en-GB", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{portal}/login")
    assert f"Log in with 127.0.0.1:{up.provider.port}" in page.inner_text("main")
    shot(page, "oidc-00-login")
    log_in_at_provider(page, portal, CITIZEN)
    assert page.url == f"{portal}/me/access"
    until(page, lambda: page.locator(".card .mark-verified").count() >= 1)
    shot(page, "oidc-01-history")

    # She approves the request, then revokes it (after the confirmation page).
    page.goto(f"{portal}/me/consents")
    with page.expect_navigation():
        page.click(f"#consent-{consent_id} form[action$='/approve'] button")
    assert page.locator(f"#consent-{consent_id} a.button.danger").count() == 1  # now active
    page.goto(f"{portal}/me/consents/{consent_id}/revoke")
    with page.expect_navigation():
        page.click("button:has-text('Yes, revoke this consent')")
    assert "It stopped working immediately." in page.inner_text("main")
    shot(page, "oidc-02-revoked")

    # A copy of the session cookie, taken while logged in ...
    [cookie] = [c for c in context.cookies() if c["name"] == "cdx_session"]
    thief = browser.new_context()
    thief.add_cookies([cookie])
    stolen = thief.new_page()
    stolen.goto(f"{portal}/me/access")
    assert stolen.url == f"{portal}/me/access"

    # ... she logs out, at the portal and at the provider (RP-initiated logout).
    with page.expect_navigation():
        page.click("form.logout button")
    if not page.url.startswith(portal):  # the provider asks whether to sign out there too
        shot(page, "oidc-03-provider-logout")
        with page.expect_navigation(url=f"{portal}/**"):
            page.click("button[name=logout]")
    assert page.url.startswith(f"{portal}/login")
    assert "You have logged out." in page.inner_text("main")
    stolen.goto(f"{portal}/me/access")
    assert stolen.url.startswith(f"{portal}/login"), "the copied cookie still opens the session"
    thief.close()

    # An inspector logs in (the provider's claim marks inspectors).
    inspector = browser.new_context(locale="en-GB").new_page()
    log_in_at_provider(inspector, portal, INSPECTOR_LOGIN)
    assert inspector.url == f"{portal}/inspect"
    shot(inspector, "oidc-04-inspector")
    context.close()

    # The citizen's CLI logs in with a device code and sees the revoked consent.
    token_file = data.parent / "citizen.token"
    login = subprocess.Popen(
        [*CDX, "consent", "login", "--data", str(data), "--out", str(token_file),
         "--registry", layout.registry, "--scope", "cdx"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert login.stderr is not None
    complete, shown = "", []
    for line in login.stderr:
        shown.append(line)
        found = re.search(r"\(or open (\S+)\)", line)
        if found:
            complete = found.group(1)
            break
    assert complete, "the CLI showed no verification address:\n" + "".join(shown)
    up.provider.approve_device(complete, CITIZEN)
    _, err = login.communicate(timeout=60)
    assert login.returncode == 0, err
    assert token_file.stat().st_mode & 0o077 == 0
    listed = cdx_consent_list(up, token_file)
    assert consent_id in listed and "REVOKED" in listed


def cdx_consent_list(up: Up, token_file: Path) -> str:
    portal_tls = up.data / "portal" / "tls"
    result = cdx(
        "consent", "list", "--data", str(up.data), "--consent", up.layout.consent,
        "--ca", str(up.data / "registry" / "ca.pem"), "--token-file", str(token_file),
        "--cert", str(portal_tls / "portal.pem"), "--key", str(portal_tls / "portal.key"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout
