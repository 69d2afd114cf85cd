"""Value types the registry returns (shared by the service, its client and the CLI)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple


class ServerCertificates(NamedTuple):
    """What a security server gets back from registration (all PEM)."""

    auth_cert_pem: bytes
    signing_cert_pem: bytes
    ca_pem: bytes


class IssuedCertificate(NamedTuple):
    cert_pem: bytes
    ca_pem: bytes


class MemberInfo(NamedTuple):
    id: str
    name: str
    subsystems: tuple[str, ...]  # subsystem codes


@dataclass(frozen=True)
class HistoryEntry:
    """One admin change: who did what to which object, and when."""

    seq: int
    at: datetime
    actor: str
    action: str
    target: str
    detail: str
