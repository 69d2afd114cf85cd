"""A new period of the log as operators and inspectors run it: ``cdx audit init`` makes the new
log's keys, ``cdx audit anchor`` starts it on the old log's last checkpoint, global configuration
names it, ``cdx audit serve`` runs it on the same address, and ``cdx audit verify --previous``
walks from it into the old period, read from the old log's tiles (its database archived)."""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from audit.http import tiles_app
from audit.tilestore import DirectoryTileStore
from cdx import webserver
from security_server.backends.sample import CITIZENS
from tests.e2e.test_audit_cli import (
    BENEFIT,
    CDX,
    ORIGIN,
    _entries,
    _wait_checkpoint,
    audit_cli_env,
    run,
)
from tests.integration.exchange_harness import ADMIN
from tests.waiting import eventually

NEW_ORIGIN = "cdx.test/audit/2027"

pytestmark = pytest.mark.xdist_group("audit-cli")


def test_an_operator_starts_a_new_period_and_verification_walks_across_it(
    tmp_path: Path,
) -> None:
    with audit_cli_env(tmp_path / "data") as env:
        data, old_dir, new_dir = env.data, env.data / "audit", env.data / "audit-2027"
        size = _entries(env)
        _wait_checkpoint(env, size)
        published = old_dir / "tiles" / "checkpoint"
        eventually(
            lambda: published.exists() and published.read_text().split("\n")[1] == str(size),
            timeout=10,
            what="the old log's last tiles",
        )
        env.process.send_signal(signal.SIGTERM)  # the old period ends
        env.process.wait(10)

        fresh = run("audit", "init", "--data", str(data), "--origin", NEW_ORIGIN,
                    "--audit-dir", str(tmp_path / "unrelated"))  # fmt: skip
        assert fresh.rc == 0, fresh.err
        refused = run("audit", "anchor", "--data", str(data), "--previous-dir", str(old_dir),
                      "--audit-dir", str(tmp_path / "unrelated"))  # fmt: skip
        assert refused.rc == 2 and "--continues" in refused.err  # another audit service key
        r = run("audit", "init", "--data", str(data), "--origin", NEW_ORIGIN,
                "--audit-dir", str(new_dir), "--continues", str(old_dir))  # fmt: skip
        assert r.rc == 0, r.err
        shutil.copytree(old_dir / "tls", new_dir / "tls")  # the same service identity
        r = run("audit", "anchor", "--data", str(data), "--previous-dir", str(old_dir),
                "--audit-dir", str(new_dir))  # fmt: skip
        assert r.rc == 0, r.err
        assert f"anchoring {ORIGIN} at size {size}" in r.out
        again = run("audit", "anchor", "--data", str(data), "--previous-dir", str(old_dir),
                    "--audit-dir", str(new_dir))  # fmt: skip
        assert again.rc == 2 and "failed_precondition" in again.err  # a period starts once

        env.instance.registry_service.set_trust_anchors(
            audit_log_origin=NEW_ORIGIN,
            audit_log_key=(new_dir / "log.vkey").read_text().strip(),
            actor=ADMIN,
        )
        serving = subprocess.Popen(
            [*CDX, "audit", "serve", "--data", str(data), "--audit-dir", str(new_dir),
             "--listen", env.address, "--registry", env.instance.registry.address,
             "--interval", "1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert serving.stdout is not None
            line = serving.stdout.readline()
            assert f"audit log {NEW_ORIGIN} listening on {env.address}" in line, line
            social, population = env.instance.agency("social"), env.instance.agency("population")
            social.query(population.service, CITIZENS[2].id, BENEFIT)
            eventually(
                lambda: not (social.running.outbox.depth() or population.running.outbox.depth()),
                timeout=20,
                what="the outboxes drained into the new log",
            )
            _wait_checkpoint(env, 3)  # the anchor and both sides of the new exchange
            archived = DirectoryTileStore(old_dir / "tiles")
            with webserver.serve(tiles_app(archived), "127.0.0.1:0", name="old-tiles") as web:
                chain = env.cdx("audit", "verify", "--previous", web.url, "--no-progress",
                                "--grace", "3600")  # fmt: skip
                alone = env.cdx("audit", "verify", "--no-progress", "--grace", "3600")
        finally:
            serving.send_signal(signal.SIGTERM)
            serving.wait(10)
    assert chain.rc == 0, chain.out + chain.err
    assert f"== {NEW_ORIGIN} (newest)" in chain.out and f"== {ORIGIN} (period -1)" in chain.out
    assert "VERIFIED: 2 periods of the log, each anchored in the next" in chain.out
    assert alone.rc == 0 and "previous_log_not_checked" in alone.out, alone.out + alone.err
