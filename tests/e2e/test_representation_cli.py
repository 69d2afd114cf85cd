"""``cdx representation`` on a running single-box instance: the population register (the
representation authority global configuration designates) registers, lists, amends and ends a
parent's relation from the command line with nothing but ``--data``; the parent lists whom they
may act for and manages their child's consents with ``cdx consent ... --acting-for``."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cdx_command import run_cdx
from tests.integration.consent_env import ConsentEnv, request_consent, start_consent_env
from tests.integration.representation_support import minor

PARENT, CHILD = "079090000005", "079190000012"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsentEnv]:
    built = start_consent_env(tmp_path_factory.mktemp("representation-cli"))
    try:
        yield built
    finally:
        built.close()


def _token_file(env: ConsentEnv, root: Path, citizen: str) -> str:
    path = root / f"token-{citizen}"
    path.write_text(env.token(citizen))
    path.chmod(0o600)
    return str(path)


def test_the_authority_and_a_parent_use_the_command_line(env: ConsentEnv, tmp_path: Path) -> None:
    data = ["--data", str(env.instance.root)]
    registered = run_cdx(
        [
            "representation", "register", *data, "--representative", PARENT,
            "--represented", CHILD, "--kind", "parent", "--majority-date", minor(),
            "--represented-name", "Hoàng Minh Tú", "--json",
        ]
    )  # fmt: skip
    assert registered.rc == 0, registered.err
    relation = json.loads(registered.out)
    assert relation["in_force"] and relation["authority"] == "VN:GOV:BCA:population"
    assert relation["scopes"] == ["history", "consents"]

    listed = run_cdx(["representation", "list", *data, "--person", CHILD])
    assert listed.rc == 0 and relation["id"] in listed.out and "Hoàng Minh Tú" in listed.out

    amended = run_cdx(
        ["representation", "amend", *data, relation["id"], "--reference", "birth reg. 9/2020"]
    )
    assert amended.rc == 0 and "version 2" in amended.out, amended.err

    token = _token_file(env, tmp_path, PARENT)
    mine = run_cdx(["representation", "mine", *data, "--token-file", token, "--json"])
    assert mine.rc == 0, mine.err
    assert [r["id"] for r in json.loads(mine.out)] == [relation["id"]]

    pending = request_consent(env, CHILD)
    approved = run_cdx(
        ["consent", "approve", *data, pending.id, "--token-file", token, "--acting-for", CHILD]
    )
    assert approved.rc == 0 and "ACTIVE" in approved.out, approved.err
    shown = run_cdx(
        ["consent", "show", *data, pending.id, "--token-file", token, "--acting-for", CHILD]
    )
    assert re.search(r"approved\s+ACTIVE\s+representative:parent:", shown.out), shown.out

    ended = run_cdx(["representation", "end", *data, relation["id"], "--reason", "court-order"])
    assert ended.rc == 0 and "ended at" in ended.out, ended.err
    refused = run_cdx(["consent", "list", *data, "--token-file", token, "--acting-for", CHILD])
    assert refused.rc == 2 and "representation_ended" in refused.err


def test_an_agency_that_is_not_the_authority_is_refused(env: ConsentEnv) -> None:
    data = ["--data", str(env.instance.root)]
    refused = run_cdx(
        [
            "representation", "register", *data, "--authority", "VN:GOV:GDT:income",
            "--representative", PARENT, "--represented", "079190000013", "--kind", "guardian",
        ]
    )  # fmt: skip
    assert refused.rc == 2 and "not_representation_authority" in refused.err
