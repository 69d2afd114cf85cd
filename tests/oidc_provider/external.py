"""An independent OpenID provider for the tests: the certified ``oidc-provider`` package (npm)
run by node on loopback, with a portal client (confidential, PKCE), a CLI client (public,
device authorization grant), test citizens and an inspector.

``install()`` puts the package in a cache directory (``$CDX_CACHE_DIR`` or ``~/.cache/cdx``)
from ``package-lock.json``; ``.ci/run`` runs ``install.sh`` beforehand. When node, npm or the
package cannot be had, tests skip with a reason starting "OIDC provider unavailable:" (CI turns
such skips into failures).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import random
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx2
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from cdx.globalconf import IdentityProviderInfo
from tests.conftest import skip_missing

HERE = Path(__file__).resolve().parent
UNAVAILABLE = "OIDC provider unavailable:"
PORTAL_CLIENT = "cdx-portal"
PORTAL_SECRET = "portal-client-secret-0123456789abcdef"
CLI_CLIENT = "cdx-cli"
INSPECTOR_LOGIN = "inspector-1"
START_TIMEOUT_S = 30.0


def cache_dir() -> Path:
    """Where the package is installed, one folder per version of the lock file."""
    lock = (HERE / "package-lock.json").read_bytes()
    base = Path(os.environ.get("CDX_CACHE_DIR") or Path.home() / ".cache" / "cdx")
    return base / f"oidc-provider-{hashlib.sha256(lock).hexdigest()[:12]}"


def install() -> Path:
    """Install the provider (once; concurrent test workers wait for each other).

    Skips the calling test when node, npm or the package cannot be had.
    """
    if shutil.which("node") is None or shutil.which("npm") is None:
        skip_missing(f"{UNAVAILABLE} node and npm", "apt-get install nodejs npm")
    target = cache_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / f"{target.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "node_modules" / "oidc-provider" / "package.json").exists():
            result = subprocess.run(
                ["bash", str(HERE / "install.sh")],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            if result.returncode != 0:
                last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["?"]
                skip_missing(
                    f"{UNAVAILABLE} the npm package oidc-provider ({last[0]})",
                    "bash tests/oidc_provider/install.sh",
                )
    return target


def fixed_port() -> int:
    """A loopback port for a URL that must be registered before its server starts (an
    external provider's issuer; a portal redirect URI registered at the provider, as an
    operator fixes in configuration). Everything CDX starts itself binds port 0 instead, which
    the kernel takes from the ephemeral range: a fixed port is chosen below that range, so no
    port-0 listener of a concurrent test can take it between the choice and the bind."""
    low = _ephemeral_low()
    for _ in range(200):
        port = random.randrange(max(1024, low - 12000), low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free fixed port below the ephemeral range")


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def signing_key(kid: str) -> dict[str, Any]:
    """A fresh RSA signing key as a private JWK (RS256)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk: dict[str, Any] = RSAAlgorithm.to_jwk(key, as_dict=True)
    jwk.pop("key_ops", None)  # PyJWT says "sign" only; the provider verifies hints with it too
    jwk.update(kid=kid, use="sig", alg="RS256")
    return jwk


@dataclass
class ExternalProvider:
    """A running ``oidc-provider``; ``rotate()`` restarts it signing with a new key."""

    root: Path
    portal_urls: list[str]
    id_token_ttl: int = 3600
    port: int = field(default_factory=fixed_port)
    keys: list[dict[str, Any]] = field(default_factory=lambda: [signing_key("key-1")])
    _process: subprocess.Popen[str] | None = field(default=None, repr=False)
    _output: list[str] = field(default_factory=list, repr=False)

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def anchor(self) -> IdentityProviderInfo:
        """How the registry anchors it."""
        return IdentityProviderInfo(
            self.issuer,
            b"",
            False,
            PORTAL_CLIENT,
            ("RS256",),
            "national_id",
            "cdx_roles",
            "inspector",
            CLI_CLIENT,
        )

    def oidc_settings(self, secret_file: Path) -> dict[str, Any]:
        """``cdx up``'s ``[oidc]`` table for it."""
        secret_file.write_text(PORTAL_SECRET + "\n")
        secret_file.chmod(0o600)
        return {
            "issuer": self.issuer,
            "client_id": PORTAL_CLIENT,
            "algorithms": ["RS256"],
            "national_id_claim": "national_id",
            "inspector_claim": "cdx_roles",
            "inspector_value": "inspector",
            "cli_client_id": CLI_CLIENT,
            "client_secret_file": str(secret_file),
            "scope": "cdx",
        }

    def _settings(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "port": self.port,
            "keys": self.keys,
            "idTokenTtl": self.id_token_ttl,
            "clients": [
                {
                    "client_id": PORTAL_CLIENT,
                    "client_secret": PORTAL_SECRET,
                    "redirect_uris": [f"{u.rstrip('/')}/auth/callback" for u in self.portal_urls],
                    "post_logout_redirect_uris": [
                        f"{u.rstrip('/')}/logged-out" for u in self.portal_urls
                    ],
                    "grant_types": ["authorization_code"],
                    "response_types": ["code"],
                    "token_endpoint_auth_method": "client_secret_basic",
                    "id_token_signed_response_alg": "RS256",
                },
                {
                    "client_id": CLI_CLIENT,
                    "token_endpoint_auth_method": "none",
                    "grant_types": ["urn:ietf:params:oauth:grant-type:device_code"],
                    "response_types": [],
                    "redirect_uris": [],
                    "id_token_signed_response_alg": "RS256",
                },
            ],
            "accounts": {INSPECTOR_LOGIN: {"cdx_roles": ["inspector"], "name": "Inspector One"}},
        }

    def start(self) -> ExternalProvider:
        modules = install() / "node_modules"
        settings = self.root / "oidc-provider.json"
        settings.write_text(json.dumps(self._settings()))
        env = {**os.environ, "NODE_PATH": str(modules)}
        script = self.root / "provider.mjs"
        shutil.copy(HERE / "provider.mjs", script)
        # ESM resolves packages from the script's folder upwards: link node_modules beside it.
        link = self.root / "node_modules"
        if not link.exists():
            link.symlink_to(modules, target_is_directory=True)
        self._output = []
        self._process = subprocess.Popen(
            ["node", str(script), str(settings)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        ready = threading.Event()
        process = self._process

        def pump() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                self._output.append(line.rstrip())
                if line.startswith("listening "):
                    ready.set()
            ready.set()

        threading.Thread(target=pump, name="oidc-provider-output", daemon=True).start()
        if not ready.wait(START_TIMEOUT_S) or process.poll() is not None:
            self.stop()
            detail = next((line for line in reversed(self._output) if line), "no output")
            skip_missing(
                f"{UNAVAILABLE} a running oidc-provider ({detail})", "check node and the package"
            )
        return self

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)
            self._process = None

    def rotate(self, *, keep_old: bool = False) -> str:
        """Restart signing with a new key (same issuer and port); returns the new key id."""
        kid = f"key-{len(self.keys) + 1}"
        self.keys = [signing_key(kid), *(self.keys if keep_old else [])]
        self.stop()
        self.start()
        return kid

    # --- scripted logins (what a browser does on its development login pages) -----------------

    def log_in(self, authorization_url: str, login: str, redirect_uri: str) -> str:
        """Follow an authorization request through the login and consent pages; returns the
        URL the provider sends the browser back to (with ``code`` and ``state``)."""
        with httpx2.Client(follow_redirects=False, timeout=10) as browser:
            url = authorization_url
            for _ in range(12):
                response = browser.get(url)
                if response.is_redirect:
                    url = urljoin(url, response.headers["location"])
                    if url.startswith(redirect_uri):
                        return url
                    continue
                form_action = _form_action(response.text)
                data = {"prompt": "consent"}
                if 'name="login"' in response.text:
                    data = {"prompt": "login", "login": login, "password": "any"}
                posted = browser.post(urljoin(url, form_action), data=data)
                assert posted.is_redirect, posted.text[:300]
                url = urljoin(url, posted.headers["location"])
                if url.startswith(redirect_uri):
                    return url
        raise AssertionError("the provider did not send the browser back")

    def approve_device(self, verification_uri_complete: str, login: str) -> None:
        """Log in on the device verification page and confirm the code (as the citizen would
        on their phone)."""
        with httpx2.Client(follow_redirects=False, timeout=10) as browser:
            url = verification_uri_complete
            for _ in range(12):
                response = browser.get(url)
                if response.is_redirect:
                    url = urljoin(url, response.headers["location"])
                    continue
                text = response.text
                if "Sign-in Success" in text or "successfully" in text.lower():
                    return
                action = urljoin(url, _form_action(text))
                if 'name="login"' in text:
                    data = {"prompt": "login", "login": login, "password": "any"}
                elif 'name="prompt" value="consent"' in text:
                    data = {"prompt": "consent"}
                else:  # the user-code confirmation form
                    data = _hidden_fields(text)
                    data.setdefault("confirm", "yes")
                posted = browser.post(action, data=data)
                if posted.is_redirect:
                    url = urljoin(action, posted.headers["location"])
                    continue
                if "Sign-in Success" in posted.text or "success" in posted.text.lower():
                    return
                url = action
        raise AssertionError("the device login did not complete")


def _form_action(html: str) -> str:
    marker = 'action="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)].replace("&amp;", "&")


def _hidden_fields(html: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for chunk in html.split("<input")[1:]:
        tag = chunk.split(">", 1)[0]
        if 'type="hidden"' not in tag:
            continue
        name = _attribute(tag, "name")
        if name:
            fields[name] = _attribute(tag, "value") or ""
    return fields


def _attribute(tag: str, name: str) -> str | None:
    marker = f'{name}="'
    if marker not in tag:
        return None
    start = tag.index(marker) + len(marker)
    return tag[start : tag.index('"', start)]


def code_and_state(callback_url: str) -> tuple[str, str]:
    query = parse_qs(urlsplit(callback_url).query)
    return query["code"][0], query["state"][0]


@contextlib.contextmanager
def running_provider(root: Path, portal_urls: list[str], **kw: Any) -> Any:
    provider = ExternalProvider(root, portal_urls, **kw).start()
    try:
        yield provider
    finally:
        provider.stop()


def wait_for(check: Any, timeout: float = 10.0, interval: float = 0.1) -> Any:
    """Poll ``check`` until it returns something truthy (with a deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(interval)
