"""Unit tests for cdx.keyfiles: encrypted key files (0600, atomic), passphrase files, errors
that name the file."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519

from cdx import crypto, keyfiles
from cdx.errors import (
    GRPC_STATUS,
    InvalidArgumentError,
    KeyStoreError,
    NotFoundError,
    UnknownKeyError,
)

PASSPHRASE = b"correct horse battery staple"


KEY_MAKERS = {
    "p256": lambda: crypto.generate_signing_key("ecdsa-p256"),
    "ed25519": lambda: crypto.generate_signing_key("ed25519"),
    "x25519": crypto.generate_hpke_key,
}


@pytest.mark.parametrize("kind", list(KEY_MAKERS))
def test_key_file_round_trip_is_encrypted_and_0600(tmp_path: Path, kind: str) -> None:
    key = KEY_MAKERS[kind]()
    path = tmp_path / "key.pem"
    keyfiles.save_private_key(path, key, PASSPHRASE)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_bytes()
    assert text.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert b"BEGIN PRIVATE KEY" not in text
    loaded = keyfiles.load_private_key(path, PASSPHRASE)
    assert crypto.key_id(loaded.public_key()) == crypto.key_id(key.public_key())
    assert os.listdir(tmp_path) == ["key.pem"]  # no temporary file left behind


def test_key_file_is_0600_from_creation_even_with_permissive_umask(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []
    real_replace = os.replace

    def spy_replace(src: str, dst: str) -> None:
        seen.append(stat.S_IMODE(os.stat(src).st_mode))  # the temp file, before the rename
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy_replace)
    old_umask = os.umask(0)
    try:
        keyfiles.save_private_key(tmp_path / "k.pem", crypto.generate_signing_key(), PASSPHRASE)
    finally:
        os.umask(old_umask)
    assert seen == [0o600]
    assert stat.S_IMODE((tmp_path / "k.pem").stat().st_mode) == 0o600


def test_saving_replaces_the_old_key_atomically(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    keyfiles.save_private_key(path, crypto.generate_signing_key(), PASSPHRASE)
    new = crypto.generate_signing_key()
    keyfiles.save_private_key(path, new, PASSPHRASE)
    assert crypto.key_id(keyfiles.load_private_key(path, PASSPHRASE).public_key()) == (
        crypto.key_id(new.public_key())
    )
    assert sorted(os.listdir(tmp_path)) == ["key.pem"]


def test_failed_save_leaves_no_temp_file_and_old_key_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "key.pem"
    old = crypto.generate_signing_key()
    keyfiles.save_private_key(path, old, PASSPHRASE)

    def failing_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(KeyStoreError):
        keyfiles.save_private_key(path, crypto.generate_signing_key(), PASSPHRASE)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["key.pem"]
    assert crypto.key_id(keyfiles.load_private_key(path, PASSPHRASE).public_key()) == (
        crypto.key_id(old.public_key())
    )


@pytest.mark.parametrize("passphrase", [b"", "text passphrase", None])
def test_saving_without_a_passphrase_is_refused(tmp_path: Path, passphrase: Any) -> None:
    with pytest.raises(InvalidArgumentError):
        keyfiles.save_private_key(tmp_path / "k.pem", crypto.generate_signing_key(), passphrase)
    assert not (tmp_path / "k.pem").exists()


def test_saving_an_unsupported_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UnknownKeyError):
        keyfiles.save_private_key(
            tmp_path / "k.pem",
            ec.generate_private_key(ec.SECP384R1()),
            PASSPHRASE,
        )


def test_wrong_passphrase_is_refused(tmp_path: Path) -> None:
    keyfiles.save_private_key(tmp_path / "k.pem", crypto.generate_signing_key(), PASSPHRASE)
    with pytest.raises(KeyStoreError):
        keyfiles.load_private_key(tmp_path / "k.pem", b"wrong passphrase")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o610])
def test_group_or_world_accessible_key_file_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "k.pem"
    keyfiles.save_private_key(path, crypto.generate_signing_key(), PASSPHRASE)
    path.chmod(mode)
    with pytest.raises(KeyStoreError, match="group or others"):
        keyfiles.load_private_key(path, PASSPHRASE)


def _write_0600(path: Path, data: bytes) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return path


_UNENCRYPTED = crypto.generate_signing_key().private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
)
_P384_ENCRYPTED = ec.generate_private_key(ec.SECP384R1()).private_bytes(
    serialization.Encoding.PEM,
    serialization.PrivateFormat.PKCS8,
    serialization.BestAvailableEncryption(PASSPHRASE),
)


@pytest.mark.parametrize(
    "content",
    [b"", b"garbage", _UNENCRYPTED, _UNENCRYPTED[:100], _P384_ENCRYPTED, b"\x00" * 70_000],
    ids=["empty", "garbage", "unencrypted", "truncated", "p384", "huge"],
)
def test_corrupt_or_unencrypted_key_file_is_refused(tmp_path: Path, content: bytes) -> None:
    path = _write_0600(tmp_path / "k.pem", content)
    with pytest.raises(KeyStoreError):
        keyfiles.load_private_key(path, PASSPHRASE)


def test_truncated_encrypted_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    keyfiles.save_private_key(path, crypto.generate_signing_key(), PASSPHRASE)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(KeyStoreError):
        keyfiles.load_private_key(path, PASSPHRASE)


def test_missing_key_file_and_symlink_are_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError):
        keyfiles.load_private_key(tmp_path / "absent.pem", PASSPHRASE)
    keyfiles.save_private_key(tmp_path / "real.pem", crypto.generate_signing_key(), PASSPHRASE)
    (tmp_path / "link.pem").symlink_to(tmp_path / "real.pem")
    with pytest.raises(KeyStoreError):
        keyfiles.load_private_key(tmp_path / "link.pem", PASSPHRASE)
    with pytest.raises(KeyStoreError):
        keyfiles.load_private_key(tmp_path / "real.pem", b"")


def test_typed_loaders_check_the_key_kind(tmp_path: Path) -> None:
    keyfiles.save_private_key(tmp_path / "sig.pem", crypto.generate_signing_key(), PASSPHRASE)
    keyfiles.save_private_key(tmp_path / "hpke.pem", crypto.generate_hpke_key(), PASSPHRASE)
    assert isinstance(
        keyfiles.load_signing_key(tmp_path / "sig.pem", PASSPHRASE), ec.EllipticCurvePrivateKey
    )
    assert isinstance(
        keyfiles.load_hpke_key(tmp_path / "hpke.pem", PASSPHRASE), x25519.X25519PrivateKey
    )
    with pytest.raises(KeyStoreError):
        keyfiles.load_signing_key(tmp_path / "hpke.pem", PASSPHRASE)
    with pytest.raises(KeyStoreError):
        keyfiles.load_hpke_key(tmp_path / "sig.pem", PASSPHRASE)


def test_key_store_error_is_mapped_to_a_grpc_status() -> None:
    assert KeyStoreError in GRPC_STATUS
    assert KeyStoreError().code == "key_store_error"


def test_key_store_errors_name_the_file_and_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "auth.key"
    with pytest.raises(KeyStoreError) as missing:
        keyfiles.load_private_key(path, PASSPHRASE)
    assert str(path) in missing.value.message
    keyfiles.save_private_key(path, crypto.generate_signing_key(), PASSPHRASE)
    with pytest.raises(KeyStoreError) as wrong:
        keyfiles.load_private_key(path, b"another passphrase")
    assert str(path) in wrong.value.message and "passphrase" in wrong.value.message
    path.chmod(0o644)
    with pytest.raises(KeyStoreError) as unsafe:
        keyfiles.load_private_key(path, PASSPHRASE)
    assert f"chmod 600 {path}" in unsafe.value.message


def test_passphrase_file_must_be_private_and_non_empty(tmp_path: Path) -> None:
    path = tmp_path / "passphrase"
    with pytest.raises(NotFoundError, match=str(path)):
        keyfiles.read_passphrase(path)
    created = keyfiles.ensure_passphrase(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert keyfiles.read_passphrase(path) == created == keyfiles.ensure_passphrase(path)
    with pytest.raises(InvalidArgumentError):
        keyfiles.ensure_passphrase(path, b"something else")
    path.chmod(0o640)
    with pytest.raises(KeyStoreError, match=f"chmod 600 {path}"):
        keyfiles.read_passphrase(path)
    path.write_bytes(b"\n")
    path.chmod(0o600)
    with pytest.raises(KeyStoreError, match="empty"):
        keyfiles.read_passphrase(path)


def test_encrypted_tls_key_needs_its_passphrase_file(tmp_path: Path) -> None:
    key = crypto.generate_signing_key()
    keyfiles.save_private_key(tmp_path / "client.key", key, PASSPHRASE)
    (tmp_path / "pass").write_bytes(PASSPHRASE + b"\n")
    (tmp_path / "pass").chmod(0o600)
    with pytest.raises(InvalidArgumentError, match="passphrase file"):
        keyfiles.load_tls_key_pem(tmp_path / "client.key", None)
    pem = keyfiles.load_tls_key_pem(tmp_path / "client.key", tmp_path / "pass")
    loaded = serialization.load_pem_private_key(pem, password=None)
    assert crypto.key_id(loaded.public_key()) == crypto.key_id(key.public_key())  # type: ignore[arg-type]
    clear = tmp_path / "clear.key"
    clear.write_bytes(pem)
    assert keyfiles.load_tls_key_pem(clear, None) == pem
