"""The instance CA: issues and validates auth, signing and client certificates; does no I/O.

Certificate profiles (DESIGN §5). The CA decides every name: of a CSR only its (self-signed)
public key is used; requested subject names and SANs are ignored.

========  =========================================  ===========================  ==============
profile   URI SANs                                   keyUsage (critical)          extKeyUsage
========  =========================================  ===========================  ==============
auth      ``urn:cdx:server:<server id>``             digitalSignature             serverAuth,
          (+ DNS/IP SANs given by the caller)                                     clientAuth
signing   ``urn:cdx:server:<server id>``,            digitalSignature,            ``CDX_MESSAGE_
          ``urn:cdx:member:<member id>``             contentCommitment            SIGNING_EKU``
client    the given ``urn:cdx:...`` URI              digitalSignature             clientAuth
========  =========================================  ===========================  ==============

Time is always a parameter (timezone-aware); nothing here reads the clock.
"""

from __future__ import annotations

import hashlib
import ipaddress
import urllib.parse
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import Literal, TypeAlias, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cdx.crypto import PrivateSigningKey, PublicSigningKey, public_key_to_der
from cdx.errors import (
    CertificateError,
    CertificateExpiredError,
    CertificateRevokedError,
    InvalidArgumentError,
    InvalidIdentifierError,
    MalformedError,
    SignatureError,
    UnknownKeyError,
)
from cdx.ids import MemberId, SecurityServerId

__all__ = [
    "CDX_MESSAGE_SIGNING_EKU",
    "CLIENT_URI_PREFIX",
    "CLOCK_SKEW",
    "DEFAULT_CA_VALIDITY",
    "DEFAULT_LEAF_VALIDITY",
    "MEMBER_URI_PREFIX",
    "SERVER_URI_PREFIX",
    "SERVICE_URI_PREFIX",
    "Usage",
    "build_csr",
    "cert_from_der",
    "cert_from_pem",
    "cert_to_pem",
    "certificate_uris",
    "create_ca",
    "fingerprint",
    "issue_auth_certificate",
    "issue_client_certificate",
    "issue_service_certificate",
    "issue_signing_certificate",
    "key_usage",
    "load_csr",
    "member_id_of",
    "member_uri",
    "server_id_of",
    "validate_certificate",
]

Usage: TypeAlias = Literal["auth", "signing", "client"]
_E = TypeVar("_E", bound=x509.ExtensionType)

#: Extended key usage of CDX message-signing certificates. It sits under the UUID arc 2.25
#: (ITU-T X.667: an OID anyone may mint from a random UUID without registration), so it
#: collides with no one and no TLS stack accepts a signing certificate for serverAuth/clientAuth.
CDX_MESSAGE_SIGNING_EKU = x509.ObjectIdentifier("2.25.10653161767369611169001668310453172441")

SERVER_URI_PREFIX = "urn:cdx:server:"
MEMBER_URI_PREFIX = "urn:cdx:member:"
CLIENT_URI_PREFIX = "urn:cdx:"

DEFAULT_CA_VALIDITY = timedelta(days=3650)
DEFAULT_LEAF_VALIDITY = timedelta(days=365)
#: Backdate notBefore so that a peer whose clock is slightly behind accepts a fresh certificate.
CLOCK_SKEW = timedelta(minutes=5)
_MAX_CN = 64  # RFC 5280 ub-common-name


def _utc(now: datetime) -> datetime:
    if not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
        raise InvalidArgumentError("now must be a timezone-aware datetime")
    return now.astimezone(UTC)


def _name(common_name: str, organisation: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name[:_MAX_CN])]
    if organisation:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation[:_MAX_CN]))
    return x509.Name(attrs)


def member_uri(member: MemberId) -> str:
    """The URI SAN naming a member in its signing certificates (``urn:cdx:member:...``)."""
    return MEMBER_URI_PREFIX + urllib.parse.quote(str(member), safe=":")


# --- CA and CSRs -------------------------------------------------------------------------------


def create_ca(
    instance: str, now: datetime, *, validity: timedelta = DEFAULT_CA_VALIDITY
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """Create the instance's self-signed ECDSA P-256 root CA (pathlen 0: it issues leaves only).

    Raises:
        InvalidArgumentError: empty or over-long instance, naive ``now``, non-positive validity.
    """
    if not isinstance(instance, str) or not instance or len(instance) > 40:
        raise InvalidArgumentError("instance must be 1..40 characters")
    start = _utc(now)
    if validity <= timedelta(0):
        raise InvalidArgumentError("validity must be positive")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(f"CDX {instance} Root CA", f"CDX {instance}")
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - CLOCK_SKEW)
        .not_valid_after(start + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def build_csr(
    private_key: PrivateSigningKey,
    common_name: str,
    *,
    uri: str | None = None,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
) -> bytes:
    """Build a PEM CSR signed by ``private_key`` (the key never leaves its server).

    Raises:
        InvalidArgumentError: bad common name, IP address or DNS name.
        UnknownKeyError: not an ECDSA P-256 or Ed25519 key.
    """
    if not isinstance(common_name, str) or not 1 <= len(common_name) <= _MAX_CN:
        raise InvalidArgumentError("common name must be 1..64 characters")
    public_key_to_der(private_key.public_key())  # rejects unsupported key types
    builder = x509.CertificateSigningRequestBuilder().subject_name(_name(common_name))
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(uri)] if uri else []
    sans += _dns_and_ip(dns_names, ip_addresses)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    algorithm = hashes.SHA256() if isinstance(private_key, ec.EllipticCurvePrivateKey) else None
    return builder.sign(private_key, algorithm).public_bytes(serialization.Encoding.PEM)


def _signing_public(key: object) -> PublicSigningKey:
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    raise UnknownKeyError("only ECDSA P-256 and Ed25519 keys are certified")


def load_csr(csr_pem: bytes) -> x509.CertificateSigningRequest:
    """Parse a PEM CSR from untrusted bytes and check its self-signature (proof of possession).

    Raises:
        MalformedError: not a PEM CSR.
        UnknownKeyError: its key is not ECDSA P-256 or Ed25519.
        SignatureError: its self-signature does not verify.
    """
    if not isinstance(csr_pem, bytes):
        raise MalformedError("a CSR must be bytes")
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
        public = csr.public_key()
    except UnsupportedAlgorithm as exc:
        raise UnknownKeyError("unsupported CSR key type") from exc
    except (ValueError, TypeError, x509.InvalidVersion) as exc:
        raise MalformedError("not a PEM certificate signing request") from exc
    _signing_public(public)
    try:
        valid = csr.is_signature_valid
    except (ValueError, TypeError, UnsupportedAlgorithm, InvalidSignature) as exc:
        raise SignatureError("the CSR signature does not verify") from exc
    if not valid:
        raise SignatureError("the CSR signature does not verify")
    return csr


# --- issuing -----------------------------------------------------------------------------------


def key_usage(
    *,
    digital_signature: bool = False,
    content_commitment: bool = False,
    key_cert_sign: bool = False,
    crl_sign: bool = False,
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=content_commitment,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _dns_and_ip(dns_names: Sequence[str], ip_addresses: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for dns in dns_names:
        if not isinstance(dns, str) or not dns or not dns.isascii() or " " in dns:
            raise InvalidArgumentError("invalid DNS name")
        names.append(x509.DNSName(dns))
    for ip in ip_addresses:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(ip)))
        except ValueError as exc:
            raise InvalidArgumentError("invalid IP address") from exc
    return names


def _issue(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    csr_pem: bytes,
    now: datetime,
    validity: timedelta,
    subject: x509.Name,
    sans: list[x509.GeneralName],
    key_usage: x509.KeyUsage,
    eku: list[x509.ObjectIdentifier],
) -> x509.Certificate:
    start = _utc(now)
    if validity <= timedelta(0):
        raise InvalidArgumentError("validity must be positive")
    if public_key_to_der(ca_key.public_key()) != public_key_to_der(_cert_key(ca_cert)):
        raise InvalidArgumentError("the CA key does not match the CA certificate")
    public = _signing_public(load_csr(csr_pem).public_key())
    # A leaf never outlives its CA (RFC 5280 §6.1.3 would reject it at the CA's expiry anyway).
    not_after = min(start + validity, ca_cert.not_valid_after_utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage(eku), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )


def issue_auth_certificate(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    csr_pem: bytes,
    server_id: SecurityServerId,
    now: datetime,
    *,
    validity: timedelta = DEFAULT_LEAF_VALIDITY,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
) -> x509.Certificate:
    """Issue a security server's mutual-TLS certificate (URI SAN = ``server_id.uri()``).

    ``dns_names``/``ip_addresses`` (e.g. ``"localhost"``, ``"127.0.0.1"``) are added so that
    gRPC hostname checks pass; peers authorise by the URI SAN, never by host name.

    Raises:
        MalformedError: the CSR is not a PEM CSR.
        SignatureError: the CSR's self-signature does not verify.
        UnknownKeyError: the CSR's key type is not supported.
        InvalidArgumentError: naive ``now``, bad validity, bad names, CA key/cert mismatch.
    """
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(server_id.uri())]
    sans += _dns_and_ip(dns_names, ip_addresses)
    return _issue(
        ca_key,
        ca_cert,
        csr_pem,
        now,
        validity,
        _name(str(server_id), str(server_id.member)),
        sans,
        key_usage(digital_signature=True),
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
    )


def issue_signing_certificate(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    csr_pem: bytes,
    server_id: SecurityServerId,
    now: datetime,
    *,
    validity: timedelta = DEFAULT_LEAF_VALIDITY,
) -> x509.Certificate:
    """Issue the certificate binding a server's message-signing key to its member.

    Raises:
        MalformedError: the CSR is not a PEM CSR.
        SignatureError: the CSR's self-signature does not verify.
        UnknownKeyError: the CSR's key type is not supported.
        InvalidArgumentError: naive ``now``, bad validity, CA key/cert mismatch.
    """
    return _issue(
        ca_key,
        ca_cert,
        csr_pem,
        now,
        validity,
        _name(str(server_id), str(server_id.member)),
        [
            x509.UniformResourceIdentifier(server_id.uri()),
            x509.UniformResourceIdentifier(member_uri(server_id.member)),
        ],
        key_usage(digital_signature=True, content_commitment=True),
        [CDX_MESSAGE_SIGNING_EKU],
    )


def issue_client_certificate(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    csr_pem: bytes,
    common_name: str,
    uri: str,
    now: datetime,
    *,
    validity: timedelta = DEFAULT_LEAF_VALIDITY,
) -> x509.Certificate:
    """Issue a TLS client certificate for an admin or a local information system.

    ``uri`` is e.g. ``urn:cdx:admin:alice`` or ``urn:cdx:client:VN:GOV:BCA:population``; server,
    member and service URIs are refused so a client certificate never names one of those.

    Raises:
        MalformedError: the CSR is not a PEM CSR.
        SignatureError: the CSR's self-signature does not verify.
        UnknownKeyError: the CSR's key type is not supported.
        InvalidArgumentError: bad common name or URI, naive ``now``, CA key/cert mismatch.
    """
    if not isinstance(common_name, str) or not 1 <= len(common_name) <= _MAX_CN:
        raise InvalidArgumentError("common name must be 1..64 characters")
    if (
        not isinstance(uri, str)
        or not uri.startswith(CLIENT_URI_PREFIX)
        or uri.startswith((SERVER_URI_PREFIX, MEMBER_URI_PREFIX, SERVICE_URI_PREFIX))
        or len(uri) <= len(CLIENT_URI_PREFIX)
        or not uri.isascii()
        or any(c.isspace() for c in uri)
    ):
        raise InvalidArgumentError("not a client URI (urn:cdx:<kind>:<name>)")
    return _issue(
        ca_key,
        ca_cert,
        csr_pem,
        now,
        validity,
        _name(common_name),
        [x509.UniformResourceIdentifier(uri)],
        key_usage(digital_signature=True),
        [ExtendedKeyUsageOID.CLIENT_AUTH],
    )


# --- validation --------------------------------------------------------------------------------


def _cert_key(cert: x509.Certificate) -> PublicSigningKey:
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CertificateError("unsupported certificate key") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        raise CertificateError("unsupported certificate key")
    return key


#: What ``cryptography`` raises for malformed extensions: not always a ``ValueError``.
_BAD_EXTENSIONS = (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType)


def _extension(cert: x509.Certificate, ext_type: type[_E]) -> _E:
    try:
        return cert.extensions.get_extension_for_class(ext_type).value
    except x509.ExtensionNotFound as exc:
        raise CertificateError("a required certificate extension is missing") from exc
    except _BAD_EXTENSIONS as exc:
        raise CertificateError("certificate extensions are malformed") from exc


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    except _BAD_EXTENSIONS as exc:
        raise CertificateError("certificate extensions are malformed") from exc
    return constraints.ca


def _check_usage(cert: x509.Certificate, usage: Usage) -> None:
    key_usage = _extension(cert, x509.KeyUsage)
    eku = _extension(cert, x509.ExtendedKeyUsage)
    ekus = set(eku)
    server_auth, client_auth = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH
    if usage == "auth":
        ok = key_usage.digital_signature and {server_auth, client_auth} <= ekus
        ok = ok and any(u.startswith(SERVER_URI_PREFIX) for u in certificate_uris(cert))
    elif usage == "signing":
        ok = key_usage.digital_signature and key_usage.content_commitment
        ok = ok and CDX_MESSAGE_SIGNING_EKU in ekus
        uris = certificate_uris(cert)
        ok = ok and any(u.startswith(SERVER_URI_PREFIX) for u in uris)
        ok = ok and any(u.startswith(MEMBER_URI_PREFIX) for u in uris)
    elif usage == "client":
        # A server's auth certificate (serverAuth too) is not an admin/IS client certificate.
        ok = key_usage.digital_signature and client_auth in ekus and server_auth not in ekus
    else:
        raise InvalidArgumentError("unknown certificate usage")
    if not ok:
        raise CertificateError(f"the certificate is not valid for {usage} use")


def validate_certificate(
    cert: x509.Certificate,
    ca_cert: x509.Certificate,
    now: datetime,
    *,
    revoked_serials: Collection[int] = frozenset(),
    usage: Usage | None = None,
) -> None:
    """Check that ``cert`` is a valid leaf of ``ca_cert`` at ``now`` for ``usage``.

    Checks, in order: the CA is a valid CA at ``now``; ``cert`` is a leaf issued by it
    (issuer name and signature); not revoked; inside its validity period; fit for ``usage``.

    Raises:
        CertificateError: other issuer, bad signature, not a leaf, or unfit for ``usage``.
        CertificateRevokedError: the serial number is in ``revoked_serials``.
        CertificateExpiredError: ``now`` is outside the validity of ``cert`` or the CA.
        InvalidArgumentError: naive ``now`` or unknown ``usage``.
    """
    at = _utc(now)
    if not _is_ca(ca_cert):
        raise CertificateError("the trust anchor is not a CA certificate")
    if not ca_cert.not_valid_before_utc <= at <= ca_cert.not_valid_after_utc:
        raise CertificateExpiredError("the CA certificate is outside its validity period")
    try:
        issued_here = cert.issuer == ca_cert.subject
    except ValueError as exc:  # names parse lazily; a certificate not from cert_from_* may be bad
        raise CertificateError("the certificate's issuer is malformed") from exc
    if not issued_here:
        raise CertificateError("the certificate was not issued by this CA")
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm) as exc:
        raise CertificateError("the certificate was not issued by this CA") from exc
    if _is_ca(cert):
        raise CertificateError("a CA certificate is not a valid leaf")
    if cert.serial_number in revoked_serials:
        raise CertificateRevokedError()
    if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
        raise CertificateExpiredError()
    if usage is not None:
        _check_usage(cert, usage)


# --- helpers -----------------------------------------------------------------------------------


def certificate_uris(cert: x509.Certificate) -> list[str]:
    """Every URI SAN of ``cert``, in order ([] when it has no SAN extension).

    Raises:
        CertificateError: the SAN extension is malformed.
    """
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    except _BAD_EXTENSIONS as exc:
        raise CertificateError("certificate extensions are malformed") from exc
    return list(san.get_values_for_type(x509.UniformResourceIdentifier))


def _single_uri(cert: x509.Certificate, prefix: str) -> str:
    found = [u for u in certificate_uris(cert) if u.startswith(prefix)]
    if len(found) != 1:
        raise CertificateError(f"the certificate must name exactly one {prefix}... URI")
    return found[0]


def server_id_of(cert: x509.Certificate) -> SecurityServerId:
    """The security server named by the certificate's ``urn:cdx:server:`` URI SAN.

    Raises:
        CertificateError: no such URI, more than one, or one that does not parse.
    """
    try:
        return SecurityServerId.from_uri(_single_uri(cert, SERVER_URI_PREFIX))
    except InvalidIdentifierError as exc:
        raise CertificateError("the certificate's server URI is invalid") from exc


def member_id_of(cert: x509.Certificate) -> MemberId:
    """The member named by a signing certificate's ``urn:cdx:member:`` URI SAN.

    Raises:
        CertificateError: no such URI, more than one, or one that does not parse.
    """
    uri = _single_uri(cert, MEMBER_URI_PREFIX)
    try:
        return MemberId.parse(urllib.parse.unquote(uri[len(MEMBER_URI_PREFIX) :]))
    except InvalidIdentifierError as exc:
        raise CertificateError("the certificate's member URI is invalid") from exc


def fingerprint(cert: x509.Certificate) -> str:
    """Lowercase hex SHA-256 of the certificate's DER (as pinned in global configuration)."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def cert_to_pem(cert: x509.Certificate) -> bytes:
    """PEM encoding of ``cert``."""
    return cert.public_bytes(serialization.Encoding.PEM)


def _parsed(cert: x509.Certificate) -> x509.Certificate:
    # cryptography parses lazily; touch the parts we rely on so that garbage fails here, at
    # the boundary, as MalformedError rather than later as a surprise.
    try:
        cert.extensions  # noqa: B018
        cert.public_key()
        cert.not_valid_after_utc  # noqa: B018
        cert.not_valid_before_utc  # noqa: B018
        cert.issuer  # noqa: B018
        cert.subject  # noqa: B018
    except UnsupportedAlgorithm as exc:
        raise UnknownKeyError("unsupported certificate key type") from exc
    except _BAD_EXTENSIONS as exc:
        raise MalformedError("malformed certificate") from exc
    return cert


def _load_cert(
    load: Callable[[bytes], x509.Certificate], data: bytes, form: str
) -> x509.Certificate:
    if not isinstance(data, bytes):
        raise MalformedError("a certificate must be bytes")
    try:
        return _parsed(load(data))
    except (ValueError, TypeError, x509.InvalidVersion) as exc:
        raise MalformedError(f"not a {form} certificate") from exc


def cert_from_pem(data: bytes) -> x509.Certificate:
    """Parse one PEM certificate from untrusted bytes.

    Raises:
        MalformedError: not a well-formed PEM certificate.
        UnknownKeyError: its public key algorithm is not supported by the library.
    """
    return _load_cert(x509.load_pem_x509_certificate, data, "PEM")


def cert_from_der(data: bytes) -> x509.Certificate:
    """Parse one DER certificate from untrusted bytes.

    Raises:
        MalformedError: not a well-formed DER certificate.
        UnknownKeyError: its public key algorithm is not supported by the library.
    """
    return _load_cert(x509.load_der_x509_certificate, data, "DER")


SERVICE_URI_PREFIX = "urn:cdx:service:"


def issue_service_certificate(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    csr_pem: bytes,
    name: str,
    now: datetime,
    *,
    validity: timedelta = DEFAULT_LEAF_VALIDITY,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
) -> x509.Certificate:
    """Issue a central component's mutual-TLS certificate (URI SAN ``urn:cdx:service:<name>``).

    For the registry, consent service, audit log and portal: they serve gRPC (serverAuth, with
    the given DNS/IP SANs for hostname checks) and call each other (clientAuth).

    Raises:
        MalformedError: the CSR is not a PEM CSR.
        SignatureError: the CSR's self-signature does not verify.
        UnknownKeyError: the CSR's key type is not supported.
        InvalidArgumentError: bad name or SANs, naive ``now``, CA key/cert mismatch.
    """
    if (
        not isinstance(name, str)
        or not 1 <= len(name) <= _MAX_CN
        or not name.isascii()
        or any(c.isspace() for c in name)
    ):
        raise InvalidArgumentError("a service name is 1..64 printable ASCII characters")
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(SERVICE_URI_PREFIX + name)]
    sans += _dns_and_ip(dns_names, ip_addresses)
    return _issue(
        ca_key,
        ca_cert,
        csr_pem,
        now,
        validity,
        _name(name),
        sans,
        key_usage(digital_signature=True),
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
    )
