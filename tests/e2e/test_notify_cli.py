"""``cdx notify`` as an operator runs it: set up a service offline, list and requeue dead
letters on a data directory, print the webhook secret."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from cdx import db
from notify import store
from notify.instance import NotifyPaths
from notify.service import NotifyService
from stack.provision import create_instance

CDX = [sys.executable, "-m", "cdx.cli"]


def cdx(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CDX, *args], capture_output=True, text=True, timeout=60, env=dict(os.environ)
    )


def test_dead_letters_are_listed_without_addresses_and_requeued(tmp_path: Path) -> None:
    data = tmp_path / "data"
    create_instance(data)
    paths = NotifyPaths(data)
    passphrase = (data / "passphrase").read_bytes().strip()
    engine = db.create_engine(db.sqlite_url(paths.database))
    db.migrate(engine, "notify")
    service = NotifyService(engine, paths.sealer(passphrase), lambda: None, portal_url="")  # type: ignore[arg-type,return-value]
    with engine.begin() as conn:
        conn.execute(
            store.outbox.insert().values(
                delivery_key="k" * 64, channel="email", entry_index=7,
                payload=paths.sealer(passphrase).seal("notify_outbox", "k" * 64, '{"address": "an@example.vn"}'),
                state=store.DEAD, attempts=8, next_attempt_ms=0, lease_until_ms=0,
                last_error="delivery_refused", event_time_ms=0, created_at_ms=1, sent_at_ms=None,
            )
        )  # fmt: skip
    engine.dispose()

    listed = cdx("notify", "dead-letters", "--data", str(data), "--json")
    assert listed.returncode == 0, listed.stderr
    report = json.loads(listed.stdout)
    assert report["counts"]["dead"] == 1
    (letter,) = report["dead_letters"]
    assert (letter["channel"], letter["entry_index"], letter["error"]) == (
        "email",
        7,
        "delivery_refused",
    )
    assert "an@example.vn" not in listed.stdout + listed.stderr

    requeued = cdx("notify", "requeue", "--data", str(data), "--all")
    assert requeued.returncode == 0, requeued.stderr
    assert "1 dead letters queued again" in requeued.stdout
    assert service.counts() == {"pending": 1, "sent": 0, "dead": 0}

    secret = cdx("notify", "webhook-secret", "--data", str(data))
    assert secret.returncode == 0 and secret.stdout.startswith("whsec_")


def test_offline_init_writes_keys_a_request_and_settings(tmp_path: Path) -> None:
    data = tmp_path / "data"
    create_instance(data)
    target, third = _host(tmp_path / "elsewhere", data), _host(tmp_path / "third", data)
    made = cdx(
        "notify", "init", "--data", str(target), "--offline", "--registry", "127.0.0.1:1",
        "--portal-url", "https://portal.example.vn", "--smtp-host", "smtp.example.vn",
        "--smtp-sender", "no-reply@example.vn",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    paths = NotifyPaths(target)
    assert paths.tls_csr.exists() and paths.tag_key.exists() and paths.data_key.exists()
    settings = paths.read_settings()
    assert settings["smtp"]["host"] == "smtp.example.vn"
    assert settings["portal_url"] == "https://portal.example.vn"
    for key in (paths.tag_key, paths.data_key, paths.webhook_key, paths.tls_key):
        assert key.stat().st_mode & 0o077 == 0
    again = cdx(
        "notify", "init", "--data", str(target), "--offline", "--registry", "127.0.0.1:1",
        "--portal-url", "https://portal.example.vn",
    )  # fmt: skip
    assert again.returncode == 2 and "already_exists" in again.stderr
    hostile = cdx(
        "notify", "init", "--data", str(third), "--offline", "--registry", "127.0.0.1:1",
        "--portal-url", "https://p.example.vn", "--smtp-host", "smtp.example.vn",
        "--smtp-sender", "x@example.vn\r\nBcc: victim@evil.example",
    )  # fmt: skip
    assert hostile.returncode == 2 and "invalid_address" in hostile.stderr
    assert not NotifyPaths(third).exists()  # refused before any key was written


def _host(target: Path, instance: Path) -> Path:
    """A host of its own: the instance's anchor and another passphrase."""
    (target / "registry").mkdir(parents=True)
    anchor = (instance / "registry" / "anchor.json").read_bytes()
    (target / "registry" / "anchor.json").write_bytes(anchor)
    (target / "passphrase").write_bytes(b"another passphrase\n")
    (target / "passphrase").chmod(0o600)
    return target
