"""Setting up a security server's data directory: keys, registration, certificates, anchor.

Two ways to register (``cdx security-server init``):

- online: ``register_online`` calls ``RegistryAdmin.RegisterServer`` with an admin certificate;
- offline: ``write_request`` exports a request file an administrator registers with
  ``cdx registry server register --request FILE --out CERTS``; the certificates file is then
  installed with ``cdx security-server install-certificates --certificates CERTS``.

Request file (JSON, ``format = "cdx-server-registration/v1"``)::

    {"format": "cdx-server-registration/v1", "server_id": "VN:GOV:BCA:ss1",
     "address": "ss1.bca.example:5500", "subsystems": ["VN:GOV:BCA:population"],
     "auth_csr": "-----BEGIN CERTIFICATE REQUEST-----...", "signing_csr": "...",
     "hpke_public_key": "<base64 of 32 raw X25519 bytes>",
     "witness_public_key": "<base64 of 32 raw Ed25519 bytes>",
     "dns_names": ["localhost"], "ip_addresses": ["127.0.0.1"]}

Certificates file (JSON, ``format = "cdx-server-certificates/v1"``)::

    {"format": "cdx-server-certificates/v1", "server_id": "VN:GOV:BCA:ss1",
     "auth_cert": "-----BEGIN CERTIFICATE-----...", "signing_cert": "...", "ca_cert": "..."}
"""

from __future__ import annotations

import base64
import ipaddress
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cdx import errors, files
from cdx.globalconf import Anchor
from cdx.ids import SecurityServerId, SubsystemId
from security_server import keystore

REQUEST_FORMAT = "cdx-server-registration/v1"
CERTIFICATES_FORMAT = "cdx-server-certificates/v1"
MAX_FILE_BYTES = 256 * 1024


@dataclass(frozen=True)
class RegistrationRequest:
    """What the registry needs to register a server (public material only)."""

    server_id: str
    address: str
    subsystems: tuple[str, ...]
    auth_csr_pem: bytes
    signing_csr_pem: bytes
    hpke_public_raw: bytes
    witness_public_raw: bytes
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "format": REQUEST_FORMAT,
                "server_id": self.server_id,
                "address": self.address,
                "subsystems": list(self.subsystems),
                "auth_csr": self.auth_csr_pem.decode(),
                "signing_csr": self.signing_csr_pem.decode(),
                "hpke_public_key": base64.b64encode(self.hpke_public_raw).decode(),
                "witness_public_key": base64.b64encode(self.witness_public_raw).decode(),
                "dns_names": list(self.dns_names),
                "ip_addresses": list(self.ip_addresses),
            },
            indent=2,
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> RegistrationRequest:
        """Parse a request file.

        Raises:
            MalformedError: not a CDX server registration request.
            InvalidIdentifierError: a bad server or subsystem id.
        """
        obj = _load(data, REQUEST_FORMAT)
        try:
            request = cls(
                server_id=str(SecurityServerId.parse(obj["server_id"])),
                address=str(obj["address"]),
                subsystems=tuple(str(SubsystemId.parse(s)) for s in obj["subsystems"]),
                auth_csr_pem=str(obj["auth_csr"]).encode(),
                signing_csr_pem=str(obj["signing_csr"]).encode(),
                hpke_public_raw=base64.b64decode(obj["hpke_public_key"], validate=True),
                witness_public_raw=base64.b64decode(
                    obj.get("witness_public_key", ""), validate=True
                ),
                dns_names=tuple(str(d) for d in obj.get("dns_names", [])),
                ip_addresses=tuple(str(i) for i in obj.get("ip_addresses", [])),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise errors.MalformedError("not a CDX server registration request") from exc
        return request


@dataclass(frozen=True)
class IssuedCertificates:
    server_id: str
    auth_cert_pem: bytes
    signing_cert_pem: bytes
    ca_cert_pem: bytes

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "format": CERTIFICATES_FORMAT,
                "server_id": self.server_id,
                "auth_cert": self.auth_cert_pem.decode(),
                "signing_cert": self.signing_cert_pem.decode(),
                "ca_cert": self.ca_cert_pem.decode(),
            },
            indent=2,
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> IssuedCertificates:
        """Parse a certificates file.

        Raises:
            MalformedError: not a CDX server certificates file.
        """
        obj = _load(data, CERTIFICATES_FORMAT)
        try:
            return cls(
                str(obj["server_id"]),
                str(obj["auth_cert"]).encode(),
                str(obj["signing_cert"]).encode(),
                str(obj["ca_cert"]).encode(),
            )
        except (KeyError, TypeError) as exc:
            raise errors.MalformedError("not a CDX server certificates file") from exc


def _load(data: bytes, fmt: str) -> dict[str, Any]:
    if len(data) > MAX_FILE_BYTES:
        raise errors.LimitExceededError("file too large")
    try:
        obj = json.loads(data)
    except ValueError as exc:
        raise errors.MalformedError("not JSON") from exc
    if not isinstance(obj, dict) or obj.get("format") != fmt:
        raise errors.MalformedError(f"not a {fmt} file")
    return obj


def names_for(address: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """DNS and IP SANs for a server reachable at ``address`` (plus localhost for local use)."""
    host = address.rsplit(":", 1)[0].strip("[]")
    dns: list[str] = ["localhost"]
    ips: list[str] = ["127.0.0.1"]
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host and host not in dns:
            dns.append(host)
    else:
        if host not in ips and host not in ("0.0.0.0", "::"):  # noqa: S104 - compared, not bound
            ips.append(host)
    return tuple(dns), tuple(ips)


def prepare(
    data_dir: Path,
    server_id: str,
    address: str,
    subsystems: Sequence[str],
    passphrase: bytes,
    anchor_json: bytes,
) -> RegistrationRequest:
    """Generate keys and CSRs in ``data_dir``, install the anchor, and describe the request.

    Raises:
        AlreadyExistsError: keys already exist.
        MalformedError: the anchor file is not valid.
    """
    Anchor.from_json(anchor_json)  # refuse a bad anchor before generating anything
    dns, ips = names_for(address)
    generated = keystore.generate_keys(
        data_dir, server_id, passphrase, dns_names=dns, ip_addresses=ips
    )
    files.write_atomically(data_dir / keystore.ANCHOR, anchor_json)
    request = RegistrationRequest(
        server_id=server_id,
        address=address,
        subsystems=tuple(subsystems),
        auth_csr_pem=generated.auth_csr_pem,
        signing_csr_pem=generated.signing_csr_pem,
        hpke_public_raw=generated.hpke_public_raw,
        witness_public_raw=generated.witness_public_raw,
        dns_names=dns,
        ip_addresses=ips,
    )
    files.write_atomically(data_dir / "registration-request.json", request.to_json())
    return request


Register = Callable[[RegistrationRequest], IssuedCertificates]


def install(data_dir: Path, issued: IssuedCertificates) -> None:
    """Install the certificates the registry issued (checked against our keys)."""
    keystore.install_certificates(
        data_dir,
        auth_cert_pem=issued.auth_cert_pem,
        signing_cert_pem=issued.signing_cert_pem,
        ca_cert_pem=issued.ca_cert_pem,
    )


def provision(
    data_dir: Path,
    server_id: str,
    address: str,
    subsystems: Sequence[str],
    passphrase: bytes,
    anchor_json: bytes,
    register: Register,
) -> IssuedCertificates:
    """``prepare`` + ``register`` (online) + ``install``; returns the issued certificates."""
    request = prepare(data_dir, server_id, address, subsystems, passphrase, anchor_json)
    issued = register(request)
    install(data_dir, issued)
    return issued


def register_with_service(service: Any, actor: str, *, unbound: bool = False) -> Register:
    """A ``Register`` over an in-process ``RegistryService`` (tests, ``cdx up``).

    ``unbound``: the request's address may name port 0 (the server binds a free port when it
    starts; ``RegistryService.set_server_address`` registers it then).
    """

    def register(request: RegistrationRequest) -> IssuedCertificates:
        certs = service.register_server(
            request.server_id,
            request.address,
            request.auth_csr_pem,
            request.signing_csr_pem,
            request.hpke_public_raw,
            list(request.subsystems),
            actor,
            dns_names=list(request.dns_names),
            ip_addresses=list(request.ip_addresses),
            witness_public_raw=request.witness_public_raw,
            unbound=unbound,
        )
        return IssuedCertificates(
            request.server_id, certs.auth_cert_pem, certs.signing_cert_pem, certs.ca_pem
        )

    return register


def register_with_client(client: Any) -> Register:
    """A ``Register`` over ``registry.client.RegistryAdminClient`` (the admin API, mTLS)."""

    def register(request: RegistrationRequest) -> IssuedCertificates:
        certs = client.register_server(
            request.server_id,
            request.address,
            request.auth_csr_pem,
            request.signing_csr_pem,
            request.hpke_public_raw,
            list(request.subsystems),
            dns_names=list(request.dns_names),
            ip_addresses=list(request.ip_addresses),
            witness_public_raw=request.witness_public_raw,
        )
        return IssuedCertificates(
            request.server_id, certs.auth_cert_pem, certs.signing_cert_pem, certs.ca_pem
        )

    return register
