"""Global configuration names where the audit log's tiles are served (``audit_tiles_url``):
an http(s) URL prefix, set and cleared like the other anchors, refused when it is anything
else, and carried to every verifier of the configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdx import errors
from cdx.clock import utcnow
from cdx.globalconf import verify_global_conf
from cdx.paths import InstancePaths
from registry.bootstrap import init_instance, open_registry
from registry.client import RegistryAdminClient
from registry.server import start_registry
from registry.service import RegistryService

ACTOR = "admin:bootstrap"


@pytest.fixture
def registry(tmp_path: Path) -> RegistryService:
    init_instance(tmp_path, "VN", utcnow())
    return open_registry(tmp_path)


def test_the_tile_url_is_published_in_global_configuration(
    registry: RegistryService, tmp_path: Path
) -> None:
    anchors = registry.set_trust_anchors(
        audit_tiles_url="https://cdx.example.vn/audit/", actor=ACTOR
    )
    assert anchors.audit_tiles_url == "https://cdx.example.vn/audit"  # no trailing slash
    registry.set_trust_anchors(audit_log_address="127.0.0.1:7402", actor=ACTOR)  # kept
    conf = verify_global_conf(
        registry.current_conf(), InstancePaths(tmp_path).load_anchor(), utcnow()
    )
    assert conf.audit_tiles_url == "https://cdx.example.vn/audit"
    assert registry.set_trust_anchors(audit_tiles_url="", actor=ACTOR).audit_tiles_url == ""


@pytest.mark.parametrize(
    "bad",
    [
        "ftp://cdx.example.vn/audit",
        "cdx.example.vn/audit",
        "https://",
        "https://user:secret@cdx.example.vn/audit",
        "https://cdx.example.vn/audit?x=1",
        "https://cdx.example.vn/audit#top",
        "https://cdx.example.vn/au dit",
        "https://cdx.example.vn/\naudit",
        "https://cdx.example.vn/" + "a" * 5000,
    ],
)
def test_anything_but_an_http_url_prefix_is_refused(registry: RegistryService, bad: str) -> None:
    with pytest.raises(errors.InvalidArgumentError):
        registry.set_trust_anchors(audit_tiles_url=bad, actor=ACTOR)


def test_an_administrator_sets_the_tile_url_over_the_admin_api(tmp_path: Path) -> None:
    init_instance(tmp_path, "VN", utcnow())
    paths = InstancePaths(tmp_path)
    running = start_registry(paths)
    try:
        with RegistryAdminClient(running.address, paths.admin_identity()) as admin:
            anchors = admin.set_trust_anchors(audit_tiles_url="http://127.0.0.1:7403")
            assert anchors.audit_tiles_url == "http://127.0.0.1:7403"
            kept = admin.set_trust_anchors(witness_quorum=1)  # fields not given are kept
            assert kept.audit_tiles_url == "http://127.0.0.1:7403"
            with pytest.raises(errors.InvalidArgumentError):
                admin.set_trust_anchors(audit_tiles_url="file:///etc/passwd")
    finally:
        running.stop()
