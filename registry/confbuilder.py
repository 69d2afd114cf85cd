"""Builds the (unsigned) global configuration snapshot from the registry tables.

Everything a security server needs to decide (DESIGN §5): members with their subsystems, live
servers, services, agreements, purposes, trust anchors with the CA, and the certificates
revoked but not yet expired. Lists are ordered by id so equal states give equal bytes.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection

from cdx.globalconf import to_ms
from cdx.v1 import common_pb2, registry_pb2
from registry import store


def build_conf(
    conn: Connection,
    *,
    instance: str,
    version: int,
    issued_at: datetime,
    expires_at: datetime,
    ca_cert_der: bytes,
) -> registry_pb2.GlobalConf:
    """The configuration snapshot of the state visible to ``conn``."""
    conf = registry_pb2.GlobalConf(
        instance=instance,
        version=version,
        issued_at_ms=to_ms(issued_at),
        expires_at_ms=to_ms(expires_at),
    )
    codes: dict[str, list[str]] = {}
    for sub in store.all_rows(conn, store.subsystems, "id"):
        codes.setdefault(sub.member_id, []).append(sub.code)
    for m in store.all_rows(conn, store.members, "id"):
        conf.members.add(id=m.id, name=m.name, subsystems=sorted(codes.get(m.id, [])))
    for s in store.all_rows(conn, store.servers, "id"):
        if s.revoked:
            continue
        conf.servers.add(
            id=s.id,
            address=s.address,
            auth_cert=bytes(s.auth_cert),
            signing_cert=bytes(s.signing_cert),
            hpke_public_key=bytes(s.hpke_public_key),
            subsystems=store.loads(s.subsystems),
            auth_cert_fingerprint=s.auth_fingerprint,
            signing_key_id=s.signing_key_id,
            witness_public_key=bytes(s.witness_public_key),
        )
    for svc in store.all_rows(conn, store.services, "id"):
        conf.services.add(
            id=svc.id,
            description=svc.description,
            fields=store.loads(svc.fields),
            data_categories=store.loads(svc.data_categories),
        )
    for a in store.all_rows(conn, store.agreements, "id"):
        conf.agreements.add(
            id=a.id,
            client=a.client,
            service=a.service,
            purpose=a.purpose,
            lawful_basis=common_pb2.LawfulBasis.Value(a.lawful_basis),
            legal_reference=a.legal_reference,
            fields=store.loads(a.fields),
            rate_limit_per_minute=a.rate_limit_per_minute,
            retention_days=a.retention_days,
            visibility=common_pb2.SEALED if a.sealed else common_pb2.NORMAL,
        )
    for p in store.all_rows(conn, store.purposes, "code"):
        conf.purposes.add(code=p.code, description=p.description, description_vi=p.description_vi)
    data = store.get_trust_anchors(conn)
    if data:
        conf.anchors.ParseFromString(data)
    conf.anchors.ca_cert = ca_cert_der
    for r in store.revoked_certificates(conn, to_ms(issued_at)):
        conf.revoked_cert_fingerprints.append(r.fingerprint)
        conf.revoked_serials.append(r.serial)
    return conf
