"""Global configuration benchmark: a national-scale registry (10,000 members, 50,000 services).

Builds a real registry (``init_instance``: CA, registry key, anchor) and fills its database
through the storage layer: 10,000 members with one subsystem each, 50,000 services (five per
subsystem), 50,000 exchange agreements, 1,000 security servers (real-size certificates) and a
purpose catalogue. Then measures, over several runs:

- generate + sign: ``registry.confbuilder.build_conf`` (reading every table) and
  ``cdx.globalconf.sign_global_conf``, as the registry publishes a version;
- verify + load at a server: ``ConfClient.accept`` (size limit, signature against the anchor,
  parse, instance and rollback checks, atomic write of the last good copy) and the first use
  of every index a security server consults on an exchange (servers by id, by fingerprint and
  by subsystem, services, agreements);
- baseline in the same run: parsing the same bytes with protobuf alone (the floor of any
  verify + load).
"""

from __future__ import annotations

import json
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from bench.common import Report, log
from cdx import crypto, keyfiles, pki
from cdx.clock import utcnow
from cdx.confclient import ConfClient
from cdx.globalconf import sign_global_conf, to_ms
from cdx.v1 import registry_pb2

FIELDS = ["full_name", "birth_date", "address", "status", "annual_income", "tax_year"]


def _populate(engine: sa.Engine, members: int, per_member: int, servers: int) -> None:
    from registry import store

    now_ms = to_ms(utcnow())
    # Real-size certificates (every server row gets the same one: only its bytes travel).
    _, cert = pki.create_ca("VN", utcnow())
    cert_der = cert.public_bytes(serialization.Encoding.DER)
    hpke = b"\x01" * 32
    with engine.begin() as conn:
        conn.execute(
            sa.insert(store.purposes),
            [
                {"code": f"PURPOSE_{i}", "description": f"Purpose {i}", "description_vi": "",
                 "created_at_ms": now_ms}
                for i in range(20)
            ],
        )  # fmt: skip
        conn.execute(
            sa.insert(store.members),
            [
                {"id": f"VN:GOV:M{i:05d}", "name": f"Agency {i}", "created_at_ms": now_ms}
                for i in range(members)
            ],
        )
        conn.execute(
            sa.insert(store.subsystems),
            [
                {"id": f"VN:GOV:M{i:05d}:sys", "member_id": f"VN:GOV:M{i:05d}", "code": "sys",
                 "created_at_ms": now_ms}
                for i in range(members)
            ],
        )  # fmt: skip
        services = [
            {
                "id": f"VN:GOV:M{i:05d}:sys/svc{j}/v1",
                "subsystem_id": f"VN:GOV:M{i:05d}:sys",
                "description": f"Service {j} of agency {i}",
                "fields": json.dumps(FIELDS),
                "data_categories": json.dumps(["personal"]),
                "created_at_ms": now_ms,
            }
            for i in range(members)
            for j in range(per_member)
        ]
        conn.execute(sa.insert(store.services), services)
        conn.execute(
            sa.insert(store.agreements),
            [
                {
                    "id": f"agr-{n:06d}",
                    "client": f"VN:GOV:M{(n * 7 + 1) % members:05d}:sys",
                    "service": svc["id"],
                    "purpose": f"PURPOSE_{n % 20}",
                    "lawful_basis": "LEGAL_OBLIGATION" if n % 3 else "CONSENT",
                    "legal_reference": f"Decree {n % 300}/2024, Art. {n % 40}",
                    "fields": json.dumps(FIELDS[: 2 + n % 4]),
                    "rate_limit_per_minute": 0,
                    "retention_days": 30,
                    "sealed": False,
                    "created_at_ms": now_ms,
                }
                for n, svc in enumerate(services)
            ],
        )
        conn.execute(
            sa.insert(store.servers),
            [
                {
                    "id": f"VN:GOV:M{i:05d}:ss1",
                    "member_id": f"VN:GOV:M{i:05d}",
                    "address": f"ss1.m{i:05d}.gov.vn:5500",
                    "auth_cert": cert_der,
                    "signing_cert": cert_der,
                    "auth_fingerprint": f"{i:064x}",
                    "signing_key_id": f"{i + 10**6:064x}",
                    "hpke_public_key": hpke,
                    "witness_public_key": hpke,
                    "subsystems": json.dumps([f"VN:GOV:M{i:05d}:sys"]),
                    "revoked": False,
                    "registered_at_ms": now_ms,
                }
                for i in range(servers)
            ],
        )


def run(*, quick: bool = False, runs: int = 3) -> Report:
    """Run the global configuration benchmark."""
    from registry.bootstrap import init_instance, open_registry
    from registry.confbuilder import build_conf

    members, per_member, servers = (1_000, 5, 100) if quick else (10_000, 5, 1_000)
    runs = 1 if quick else max(runs, 3)
    report = Report(
        "globalconf",
        params={
            "members": members,
            "services": members * per_member,
            "agreements": members * per_member,
            "servers": servers,
            "runs": runs,
            "database": "sqlite",
        },
    )
    with tempfile.TemporaryDirectory(prefix="cdx-bench-conf-") as tmp:
        root = Path(tmp)
        paths = init_instance(root, "VN", utcnow())
        service = open_registry(paths)
        try:
            log(
                f"globalconf: filling the registry ({members} members, {members * per_member} services)"
            )
            _populate(service.engine, members, per_member, servers)
            signer = crypto.KeySigner(
                keyfiles.load_signing_key(paths.registry_key, paths.passphrase())
            )
            ca_der = x509.load_pem_x509_certificate(paths.load_ca_pem()).public_bytes(
                serialization.Encoding.DER
            )
            anchor = paths.load_anchor()
            identity = paths.admin_identity()
            build_s, sign_s, verify_s, index_s, parse_s = [], [], [], [], []
            size = 0
            for n in range(runs):
                now = utcnow()
                t0 = time.perf_counter()
                with service.engine.connect() as conn:
                    conf = build_conf(
                        conn,
                        instance="VN",
                        version=1000 + n,
                        issued_at=now,
                        expires_at=now + timedelta(minutes=10),
                        ca_cert_der=ca_der,
                    )
                t1 = time.perf_counter()
                raw = sign_global_conf(conf, signer)
                t2 = time.perf_counter()
                size = len(raw)
                build_s.append(t1 - t0)
                sign_s.append(t2 - t1)

                t3 = time.perf_counter()
                signed = registry_pb2.SignedGlobalConf.FromString(raw)
                registry_pb2.GlobalConf.FromString(signed.conf)
                parse_s.append(time.perf_counter() - t3)

                client = ConfClient(
                    "127.0.0.1:1", identity, anchor, root / f"server{n}" / "globalconf.bin"
                )
                t4 = time.perf_counter()
                verified = client.accept(raw, now)
                t5 = time.perf_counter()
                # First use of every index a server consults on an exchange.
                verified.server_by_fingerprint("0" * 64)
                verified.server_for_subsystem("VN:GOV:M00001:sys")
                verified.agreements_for("VN:GOV:M00001:sys", "VN:GOV:M00002:sys/svc0/v1")
                _ = verified.services, verified.members, verified.purposes
                t6 = time.perf_counter()
                verify_s.append(t5 - t4)
                index_s.append(t6 - t5)
                client.stop()
        finally:
            service.engine.dispose()
    ms = 1000.0
    report.add("configuration size", [size / 1e6], "MB")
    report.add("generate (read tables, build)", [x * ms for x in build_s], "ms")
    report.add("sign", [x * ms for x in sign_s], "ms")
    report.add("generate + sign", [(a + b) * ms for a, b in zip(build_s, sign_s)], "ms")
    report.add("verify + store at a server", [x * ms for x in verify_s], "ms")
    report.add("load (build lookup indexes)", [x * ms for x in index_s], "ms")
    report.add(
        "verify + load at a server",
        [(a + b) * ms for a, b in zip(verify_s, index_s)],
        "ms",
        target="< 1,000 ms",
        check=lambda v: v < 1000,
    )
    report.add("baseline: protobuf parse only", [x * ms for x in parse_s], "ms")
    report.add(
        "verify + load / parse only",
        [(a + b) / p for a, b, p in zip(verify_s, index_s, parse_s)],
        "x",
    )
    return report
