"""Pure checks of the exchange against global configuration (DESIGN §6.2); no I/O.

Both sides run ``authorize``: the consumer to refuse early (the subject never leaves the agency
for a request no agreement covers) and to learn the lawful basis it declares; the provider
because it is the enforcement point and trusts no consumer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509

from cdx import errors, pki
from cdx.globalconf import AgreementInfo, ServerInfo, ServiceInfo, VerifiedGlobalConf
from cdx.ids import SubsystemId


@dataclass(frozen=True)
class Authorization:
    """The agreement covering a request and the fields the request may receive under it."""

    service: ServiceInfo
    agreement: AgreementInfo
    fields: frozenset[str]
    explicit_fields: bool


def service_info(conf: VerifiedGlobalConf, service: str) -> ServiceInfo:
    """The published service.

    Raises:
        UnknownServiceError: the service is not in global configuration.
    """
    info = conf.services.get(service)
    if info is None:
        raise errors.UnknownServiceError()
    return info


def authorize(
    conf: VerifiedGlobalConf,
    client: str,
    service: str,
    purpose: str,
    requested_fields: Sequence[str],
) -> Authorization:
    """Find the agreement for client × service × purpose and check the requested fields.

    An empty field list asks for every field the agreement permits. With several agreements
    for the same purpose, the first (by id) that permits every requested field wins.

    Raises:
        UnknownServiceError: the service is not published.
        NoAgreementError: no agreement lets ``client`` call ``service`` at all.
        PurposeNotAllowedError: agreements exist, but none for ``purpose``.
        FieldNotAllowedError: a requested field is outside the agreement.
    """
    info = service_info(conf, service)
    candidates = conf.agreements_for(client, service)
    if not candidates:
        raise errors.NoAgreementError()
    for_purpose = sorted((a for a in candidates if a.purpose == purpose), key=lambda a: a.id)
    if not for_purpose:
        raise errors.PurposeNotAllowedError()
    published = frozenset(info.fields)
    requested = frozenset(requested_fields)
    for agreement in for_purpose:
        permitted = agreement.fields & published
        if not requested:
            if permitted:
                return Authorization(info, agreement, permitted, False)
        elif requested <= permitted:
            return Authorization(info, agreement, requested, True)
    raise errors.FieldNotAllowedError()


def check_peer(
    conf: VerifiedGlobalConf,
    peer_cert: x509.Certificate | None,
    *,
    consumer_server: str,
    client: str,
) -> ServerInfo:
    """Check that the TLS peer is the registered server ``consumer_server`` of ``client``'s member.

    Raises:
        PeerNotRegisteredError: no certificate, a certificate no registered server holds, a
            server other than the one the header names, or a server of another member.
        CertificateRevokedError: the peer's certificate is revoked.
    """
    if peer_cert is None:
        raise errors.PeerNotRegisteredError("no client certificate")
    fingerprint = pki.fingerprint(peer_cert)
    if conf.is_revoked(fingerprint, peer_cert.serial_number):
        raise errors.CertificateRevokedError()
    server = conf.server_by_fingerprint(fingerprint)
    if server is None or server.id != consumer_server:
        raise errors.PeerNotRegisteredError()
    try:
        client_member = str(SubsystemId.parse(client).member)
    except errors.InvalidIdentifierError as exc:
        raise errors.PeerNotRegisteredError("the client is not a subsystem id") from exc
    if server.member != client_member:
        raise errors.PeerNotRegisteredError()
    return server
