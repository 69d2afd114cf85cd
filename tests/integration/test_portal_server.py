"""The portal served by the kernel's web server (uvicorn) over real sockets: HTTPS, headers on the wire, start and stop."""

from __future__ import annotations

import socket
import ssl
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from cdx import crypto, errors, pki
from cdx.clock import utcnow
from cdx.webserver import serve, split_listen
from portal.app import create_app
from tests.unit.portal_fakes import ALICE, harness


def _tls_files(tmp_path: Path) -> tuple[str, str, bytes]:
    now = utcnow()  # the TLS client checks validity against the real clock
    ca_key, ca_cert = pki.create_ca("VN", now - timedelta(days=1))
    key = crypto.generate_signing_key()
    csr = pki.build_csr(key, "portal", ip_addresses=["127.0.0.1"])
    cert = pki.issue_service_certificate(
        ca_key, ca_cert, csr, "portal", now - timedelta(hours=1), ip_addresses=["127.0.0.1"]
    )
    cert_file, key_file = tmp_path / "portal.pem", tmp_path / "portal.key"
    cert_file.write_bytes(pki.cert_to_pem(cert))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pass phrase"),
        )
    )
    return str(cert_file), str(key_file), pki.cert_to_pem(ca_cert)


def test_https_portal_serves_a_login_with_secure_cookies(tmp_path: Path) -> None:
    cert, key, ca_pem = _tls_files(tmp_path)
    (tmp_path / "ca.pem").write_bytes(ca_pem)
    h = harness()
    h.world.record(ALICE)
    h.world.publish()
    app = create_app(
        h.config, h.consent, h.audit, h.idp, h.conf_source, h.world.clock, sessions=h.sessions
    )
    running = serve(
        app,
        "127.0.0.1:0",
        name="cdx-portal",
        tls_cert=cert,
        tls_key=key,
        tls_key_password="pass phrase",
    )
    try:
        assert running.url.startswith("https://127.0.0.1:")
        trusted = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        with httpx.Client(base_url=running.url, verify=trusted) as client:
            page = client.get("/login")
            assert page.status_code == 200
            assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
            assert "strict-transport-security" in page.headers
            assert "server" not in page.headers
            cookie = page.headers["set-cookie"]
            assert cookie.startswith("__Host-cdx_session=") and "Secure" in cookie
            start = client.get("/login/start", params={"issuer": h.idp.ISSUER})
            assert start.status_code == 303
            state = parse_qs(urlsplit(start.headers["location"]).query)["state"][0]
            code = h.idp.code_for(ALICE)
            login = client.get("/auth/callback", params={"state": state, "code": code})
            assert login.status_code == 303 and login.headers["location"] == "/me/access"
            assert "mark-verified" in client.get("/me/access").text
    finally:
        running.stop()
    host, port = split_listen(running.url.removeprefix("https://"))
    with pytest.raises(OSError), socket.create_connection((host, port), timeout=1):
        pass


def test_a_busy_port_is_reported() -> None:
    h = harness()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(errors.UnavailableError):
            app = create_app(
                h.config, h.consent, h.audit, h.idp, h.conf_source, sessions=h.sessions
            )
            serve(app, f"127.0.0.1:{port}", name="cdx-portal")


@pytest.mark.parametrize("bad", ["8080", "host:", ":80", "h:99999", "h:x"])
def test_listen_address_must_be_host_and_port(bad: str) -> None:
    with pytest.raises(errors.InvalidArgumentError):
        split_listen(bad)
