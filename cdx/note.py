"""C2SP signed notes, tlog checkpoints and Ed25519 cosignatures; parses strictly, does no I/O.

Formats (DESIGN §8):

- signed note (https://c2sp.org/signed-note): UTF-8 text ending in ``\\n``, a blank line, then
  one or more lines ``— <key name> <base64(key id(4) || signature)>\\n``; key id =
  ``SHA-256(name || 0x0A || type || public key)[:4]``; type 0x01 = Ed25519 over the text;
- verifier key ``<name>+<hex key id>+<base64(type || public key)>``, signer key
  ``PRIVATE+KEY+<name>+<hex key id>+<base64(type || seed)>`` (golang.org/x/mod/sumdb/note);
- checkpoint (https://c2sp.org/tlog-checkpoint): origin, decimal tree size, base64 root hash,
  then optional non-empty extension lines;
- cosignature (https://c2sp.org/tlog-cosignature, ``cosignature/v1``): type 0x04, signature =
  ``uint64 timestamp || Ed25519(b"cosignature/v1\\ntime <t>\\n" || checkpoint text)``.

Everything parsed here is untrusted: sizes are bounded (``LimitExceededError``), any format
violation raises ``NoteFormatError``, a bad signature by a known key ``NoteSignatureError``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol, Self

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from cdx.errors import LimitExceededError, NoteFormatError, NoteSignatureError

__all__ = [
    "MAX_CHECKPOINT_BYTES",
    "MAX_KEY_TEXT",
    "MAX_NOTE_BYTES",
    "MAX_SIGNATURES",
    "MAX_TIMESTAMP",
    "MAX_TREE_SIZE",
    "SIG_TYPE_COSIGNATURE_V1",
    "SIG_TYPE_ED25519",
    "Checkpoint",
    "CosignatureSigner",
    "CosignatureVerifier",
    "Ed25519Signing",
    "Note",
    "NoteSignature",
    "NoteSigner",
    "NoteVerifier",
    "VerifiedNote",
    "Verifier",
    "cosignature_timestamp",
    "key_id",
    "open_checkpoint",
    "open_note",
    "parse_note",
]

MAX_NOTE_BYTES = 1 << 20
#: signed-note: "Verifiers SHOULD apply a maximum limit ... but MUST accept at least up to 16".
MAX_SIGNATURES = 100
MAX_CHECKPOINT_BYTES = 64 << 10
MAX_KEY_TEXT = 1024
MAX_TIMESTAMP = 2**63 - 1  # tlog-cosignature: "It MUST NOT exceed 2^63 - 1"
MAX_TREE_SIZE = 2**64 - 1
SIG_TYPE_ED25519 = 0x01
SIG_TYPE_COSIGNATURE_V1 = 0x04
_DASH = "\u2014 "  # em dash and a space open every signature line
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")  # signed-note: no controls other than newline
_SIZE = re.compile(r"0|[1-9][0-9]{0,19}")  # tlog-checkpoint: decimal, no leading zeroes
_HEX_ID = re.compile(r"[0-9a-fA-F]{8}")


def key_id(name: str, sig_type: int, public_key: bytes) -> bytes:
    """Return the key id ``SHA-256(name || 0x0A || type || public key)[:4]`` (signed-note)."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + public_key).digest()[:4]


def _valid_name(name: str) -> bool:
    # signed-note: non-empty, no Unicode spaces, no "+"; control characters are banned note-wide.
    if not name or "+" in name or len(name) > MAX_KEY_TEXT:
        return False
    if any(c.isspace() or c < " " for c in name):
        return False
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _b64decode(text: str) -> bytes:
    """Standard base64 (RFC 4648 §4), canonical only, so that one value has one encoding."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise NoteFormatError("invalid base64") from exc
    if base64.b64encode(raw).decode("ascii") != text:
        raise NoteFormatError("non-canonical base64")
    return raw


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _check_text(text: str) -> bytes:
    """Check a note text before signing; return its UTF-8 bytes."""
    if not text.endswith("\n"):
        raise NoteFormatError("note text must end with a newline")
    if _CONTROL.search(text):
        raise NoteFormatError("note text contains control characters")
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise NoteFormatError("note text is not valid UTF-8") from exc
    if len(raw) > MAX_NOTE_BYTES:
        raise LimitExceededError("note text is too long")
    return raw


# --- signatures and notes ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line: key name, 4-byte key id and the signature bytes after the id."""

    name: str
    key_id: bytes
    signature: bytes

    def __post_init__(self) -> None:
        if not _valid_name(self.name) or len(self.key_id) != 4 or not self.signature:
            raise NoteFormatError("a signature needs a valid name, a 4-byte key id, a signature")

    @classmethod
    def parse_line(cls, line: str) -> NoteSignature:
        """Parse ``— <name> <base64>`` (one trailing newline allowed).

        Raises:
            NoteFormatError: not a well-formed signature line.
        """
        line = line.removesuffix("\n")
        if not line.startswith(_DASH) or "\n" in line or _CONTROL.search(line):
            raise NoteFormatError("signature line must start with an em dash and a space")
        name, sep, blob = line[len(_DASH) :].partition(" ")
        if not sep or not _valid_name(name):
            raise NoteFormatError("invalid key name in signature line")
        raw = _b64decode(blob)
        if len(raw) < 5:
            raise NoteFormatError("signature is too short")
        return cls(name, raw[:4], raw[4:])

    def to_line(self) -> str:
        """Return the line, newline included."""
        return f"{_DASH}{self.name} {_b64(self.key_id + self.signature)}\n"


@dataclass(frozen=True, slots=True)
class Note:
    """A parsed, *unverified* note: the signed text and its signature lines."""

    text: str
    signatures: tuple[NoteSignature, ...]

    def to_text(self) -> str:
        """Serialise (text, blank line, signature lines); use it to append a cosignature."""
        return self.text + "\n" + "".join(s.to_line() for s in self.signatures)


def parse_note(data: bytes | str) -> Note:
    """Split a signed note into text and signatures without verifying anything.

    Raises:
        LimitExceededError: over ``MAX_NOTE_BYTES`` or ``MAX_SIGNATURES``.
        NoteFormatError: not UTF-8, control characters (CR included), no blank line before the
            signatures, a malformed signature line, or two signatures with one name and key id.
    """
    if len(data) > MAX_NOTE_BYTES:  # a str is never longer in characters than in bytes
        raise LimitExceededError("note is too long")
    try:
        msg = data if isinstance(data, str) else data.decode("utf-8")
        raw_len = len(msg.encode("utf-8"))
    except UnicodeError as exc:
        raise NoteFormatError("note is not valid UTF-8") from exc
    if raw_len > MAX_NOTE_BYTES:
        raise LimitExceededError("note is too long")
    if _CONTROL.search(msg):
        raise NoteFormatError("note contains control characters")
    # signed-note: the text is separated from the signatures by the last empty line.
    split = msg.rfind("\n\n")
    if split < 0:
        raise NoteFormatError("note has no blank line before its signatures")
    text, block = msg[: split + 1], msg[split + 2 :]
    if not block.endswith("\n"):
        raise NoteFormatError("note has no signature lines, or the last one lacks a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise LimitExceededError("note has too many signatures")
    signatures = tuple(NoteSignature.parse_line(line) for line in lines)
    if len({(s.name, s.key_id) for s in signatures}) != len(signatures):
        raise NoteFormatError("note has two signatures with the same key name and id")
    return Note(text, signatures)


class Verifier(Protocol):
    """A known key: signatures whose (name, key id) match it must verify."""

    @property
    def name(self) -> str:
        """The key name."""
        ...

    @property
    def key_id(self) -> bytes:
        """The 4-byte key id."""
        ...

    def verify(self, text: str, signature: bytes) -> bool:
        """Whether ``signature`` (after the key id) is valid for the note ``text``."""
        ...


@dataclass(frozen=True, slots=True)
class VerifiedNote:
    """A note whose ``verified`` signatures were checked; ``unverified`` are by unknown keys."""

    text: str
    verified: tuple[NoteSignature, ...]
    unverified: tuple[NoteSignature, ...]


def open_note(
    data: bytes | str, verifiers: Sequence[Verifier], *, required: int = 1
) -> VerifiedNote:
    """Parse a note and check that at least ``required`` of ``verifiers`` signed it.

    Per signed-note, signatures by unknown keys (name and id not both matching) are ignored and
    a signature by a known key must verify, or the whole note is rejected.

    Raises:
        LimitExceededError: the note is too large (see ``parse_note``).
        NoteFormatError: the note is malformed (see ``parse_note``).
        NoteSignatureError: a known key's signature is invalid, or fewer than ``required``
            known keys signed.
        ValueError: ``required`` is out of range or two verifiers share a name and key id.
    """
    known = {(v.name, v.key_id): v for v in verifiers}
    if len(known) != len(verifiers):
        raise ValueError("two verifiers share a key name and key id")
    if not 1 <= required <= len(known):
        raise ValueError("required must be between 1 and the number of verifiers")
    note = parse_note(data)
    verified, unverified = [], []
    for sig in note.signatures:
        verifier = known.get((sig.name, sig.key_id))
        if verifier is None:
            unverified.append(sig)
        elif verifier.verify(note.text, sig.signature):
            verified.append(sig)
        else:
            raise NoteSignatureError("invalid signature by a known key")
    if len(verified) < required:
        raise NoteSignatureError("note is not signed by enough known keys")
    return VerifiedNote(note.text, tuple(verified), tuple(unverified))


# --- keys --------------------------------------------------------------------------------------


class Ed25519Signing(Protocol):
    """What signing needs from a key; ``Ed25519PrivateKey`` fits, so can an HSM wrapper."""

    def sign(self, data: bytes) -> bytes:
        """Return the Ed25519 signature of ``data``."""
        ...

    def public_key(self) -> Ed25519PublicKey:
        """Return the public half."""
        ...


def _parse_key_text(text: str, sig_type: int, *, private: bool) -> tuple[str, bytes]:
    """Parse ``[PRIVATE+KEY+]<name>+<hex id>+<base64(type || key)>``; return (name, key)."""
    if len(text) > MAX_KEY_TEXT:
        raise LimitExceededError("key text is too long")
    if private:
        if not text.startswith("PRIVATE+KEY+"):
            raise NoteFormatError("signer key must start with PRIVATE+KEY+")
        text = text[len("PRIVATE+KEY+") :]
    parts = text.split("+", 2)  # names and ids hold no "+"; base64 may
    if len(parts) != 3 or not _valid_name(parts[0]) or not _HEX_ID.fullmatch(parts[1]):
        raise NoteFormatError("malformed key text")
    name, hex_id, blob = parts
    raw = _b64decode(blob)
    if len(raw) != 33 or raw[0] != sig_type:
        raise NoteFormatError(f"key text is not a type 0x{sig_type:02x} Ed25519 key")
    if private:
        public = _raw_public(Ed25519PrivateKey.from_private_bytes(raw[1:]).public_key())
    else:
        public = raw[1:]
    if key_id(name, sig_type, public) != bytes.fromhex(hex_id):
        raise NoteFormatError("key id does not match the key")
    return name, raw[1:]


class _NamedKey:
    """What a note key is named by, verifier or signer: name, signature type, public key, id."""

    _sig_type: ClassVar[int]
    _name: str
    _public: bytes
    _key_id: bytes

    def _named(self, name: str, public_raw: bytes) -> None:
        if not _valid_name(name):
            raise NoteFormatError("invalid key name")
        self._name, self._public = name, public_raw
        self._key_id = key_id(name, self._sig_type, public_raw)

    @property
    def name(self) -> str:
        """The key name."""
        return self._name

    @property
    def key_id(self) -> bytes:
        """The 4-byte key id."""
        return self._key_id

    def _verifier_key_text(self) -> str:
        blob = _b64(bytes([self._sig_type]) + self._public)
        return f"{self._name}+{self._key_id.hex()}+{blob}"


class _PublicKey(_NamedKey):
    def __init__(self, name: str, public_key: Ed25519PublicKey | bytes) -> None:
        try:
            key = (
                public_key
                if isinstance(public_key, Ed25519PublicKey)
                else Ed25519PublicKey.from_public_bytes(public_key)
            )
        except ValueError as exc:
            raise NoteFormatError("invalid Ed25519 public key") from exc
        self._key = key
        self._named(name, _raw_public(key))

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte Ed25519 public key."""
        return self._public

    def key_text(self) -> str:
        """Return the verifier key text ``<name>+<hex id>+<base64(type || key)>``."""
        return self._verifier_key_text()

    @classmethod
    def from_key_text(cls, vkey: str) -> Self:
        """Parse a verifier key text of this class's signature type.

        Raises:
            LimitExceededError: the text is too long.
            NoteFormatError: malformed, another key type, or the key id does not match.
        """
        return cls(*_parse_key_text(vkey, cls._sig_type, private=False))

    def _verify_raw(self, message: bytes, signature: bytes) -> bool:
        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            return False
        return True


class _Signer(_NamedKey):
    def __init__(self, name: str, private_key: Ed25519Signing) -> None:
        self._key = private_key
        self._named(name, _raw_public(private_key.public_key()))

    def verifier_key(self) -> str:
        """Return the verifier key text to hand to verifiers."""
        return self._verifier_key_text()

    @classmethod
    def from_key_text(cls, skey: str) -> Self:
        """Load a ``PRIVATE+KEY+<name>+<hex id>+<base64(type || seed)>`` signer key.

        Raises:
            LimitExceededError: the text is too long.
            NoteFormatError: malformed, another key type, or the key id does not match.
        """
        name, seed = _parse_key_text(skey, cls._sig_type, private=True)
        return cls(name, Ed25519PrivateKey.from_private_bytes(seed))


class NoteVerifier(_PublicKey):
    """An Ed25519 (type 0x01) note verifier."""

    _sig_type = SIG_TYPE_ED25519

    def verify(self, text: str, signature: bytes) -> bool:
        """Whether ``signature`` is this key's Ed25519 signature of ``text``."""
        return len(signature) == 64 and self._verify_raw(text.encode("utf-8"), signature)


class NoteSigner(_Signer):
    """Signs notes with Ed25519 (type 0x01)."""

    _sig_type = SIG_TYPE_ED25519

    def verifier(self) -> NoteVerifier:
        """The matching verifier."""
        return NoteVerifier(self._name, self._public)

    def sign_text(self, text: str) -> NoteSignature:
        """Sign a note text (ending in a newline).

        Raises:
            NoteFormatError: the text has no final newline or contains control characters.
            LimitExceededError: the text is too long.
        """
        return NoteSignature(self._name, self._key_id, self._key.sign(_check_text(text)))

    def sign(self, text: str) -> str:
        """Return the signed note: ``text``, a blank line, this key's signature line.

        Raises:
            NoteFormatError: the text has no final newline or contains control characters.
            LimitExceededError: the text is too long.
        """
        return Note(text, (self.sign_text(text),)).to_text()


# --- checkpoints -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A tlog-checkpoint note body: origin, tree size, root hash, extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "extensions", tuple(self.extensions))
        for line in (self.origin, *self.extensions):
            if not isinstance(line, str) or not line or "\n" in line or _CONTROL.search(line):
                raise NoteFormatError("checkpoint lines must be non-empty single lines")
        if not isinstance(self.size, int) or isinstance(self.size, bool):
            raise NoteFormatError("checkpoint size must be an integer")
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise NoteFormatError("checkpoint size out of range")
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != 32:
            raise NoteFormatError("checkpoint root hash must be 32 bytes")

    def to_text(self) -> str:
        """Return the note text (newline-terminated lines)."""
        lines = [self.origin, str(self.size), _b64(self.root_hash), *self.extensions]
        return "".join(line + "\n" for line in lines)

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """Parse a checkpoint note text strictly (tlog-checkpoint "Note text").

        Raises:
            LimitExceededError: over ``MAX_CHECKPOINT_BYTES``.
            NoteFormatError: fewer than three lines, empty lines, a size with leading zeroes or
                non-digits, a root hash that is not canonical base64 of 32 bytes.
        """
        if len(text) > MAX_CHECKPOINT_BYTES:
            raise LimitExceededError("checkpoint is too long")
        if not text.endswith("\n"):
            raise NoteFormatError("checkpoint must end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise NoteFormatError("checkpoint needs origin, size and root hash lines")
        origin, size, root_hash, *extensions = lines
        if not _SIZE.fullmatch(size):
            raise NoteFormatError("checkpoint size is not a canonical decimal")
        return cls(origin, int(size), _b64decode(root_hash), tuple(extensions))


def open_checkpoint(
    data: bytes | str, verifiers: Sequence[Verifier], *, required: int = 1
) -> tuple[Checkpoint, VerifiedNote]:
    """Open a signed checkpoint (``open_note``) and parse its text (``Checkpoint.parse``).

    Raises:
        LimitExceededError: the note or checkpoint is too large.
        NoteFormatError: the note or the checkpoint is malformed.
        NoteSignatureError: as for ``open_note``.
        ValueError: as for ``open_note``.
    """
    note = open_note(data, verifiers, required=required)
    return Checkpoint.parse(note.text), note


# --- cosignatures ------------------------------------------------------------------------------


def _cosigned_message(checkpoint_text: str, timestamp: int) -> bytes:
    # tlog-cosignature "Ed25519 signed message": header line, time line, whole note body.
    return f"cosignature/v1\ntime {timestamp}\n{checkpoint_text}".encode()


def _check_timestamp(timestamp: int) -> None:
    if isinstance(timestamp, bool) or not isinstance(timestamp, int):
        raise NoteFormatError("cosignature timestamp must be an integer")
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise NoteFormatError("cosignature timestamp out of range")


class CosignatureVerifier(_PublicKey):
    """A witness key (type 0x04) checking ``cosignature/v1`` timestamped signatures."""

    _sig_type = SIG_TYPE_COSIGNATURE_V1

    def verify(self, text: str, signature: bytes) -> bool:
        """Whether ``signature`` (timestamp || Ed25519) is this witness's cosignature of text."""
        if len(signature) != 72:
            return False
        timestamp = int.from_bytes(signature[:8], "big")
        if timestamp > MAX_TIMESTAMP:
            return False
        return self._verify_raw(_cosigned_message(text, timestamp), signature[8:])

    def verify_cosignature(self, signature: NoteSignature | str, checkpoint_text: str) -> int:
        """Check this witness's cosignature of a checkpoint; return its timestamp.

        Raises:
            NoteFormatError: the line, the signature size, the timestamp or the checkpoint is
                malformed.
            LimitExceededError: the checkpoint is too long.
            NoteSignatureError: the line is by another key, or the signature is invalid.
        """
        sig = (
            signature
            if isinstance(signature, NoteSignature)
            else NoteSignature.parse_line(signature)
        )
        Checkpoint.parse(checkpoint_text)
        if (sig.name, sig.key_id) != (self.name, self.key_id):
            raise NoteSignatureError("cosignature is not by this witness key")
        timestamp = cosignature_timestamp(sig)
        if not self._verify_raw(_cosigned_message(checkpoint_text, timestamp), sig.signature[8:]):
            raise NoteSignatureError("invalid cosignature")
        return timestamp


class CosignatureSigner(_Signer):
    """A witness's ``cosignature/v1`` signer (type 0x04)."""

    _sig_type = SIG_TYPE_COSIGNATURE_V1

    def verifier(self) -> CosignatureVerifier:
        """The matching verifier."""
        return CosignatureVerifier(self._name, self._public)

    def cosign(self, checkpoint_text: str, timestamp: int) -> str:
        """Return the cosignature line (newline included) for a checkpoint at ``timestamp``.

        Raises:
            NoteFormatError: the checkpoint text is malformed or the timestamp out of range.
            LimitExceededError: the checkpoint is too long.
        """
        Checkpoint.parse(checkpoint_text)
        _check_timestamp(timestamp)
        signature = self._key.sign(_cosigned_message(checkpoint_text, timestamp))
        stamp = timestamp.to_bytes(8, "big")
        return NoteSignature(self._name, self._key_id, stamp + signature).to_line()


def cosignature_timestamp(signature: NoteSignature) -> int:
    """Return the (unverified) timestamp of a ``cosignature/v1`` signature.

    Raises:
        NoteFormatError: the signature is not 8 + 64 bytes or the timestamp exceeds 2^63 - 1.
    """
    if len(signature.signature) != 72:
        raise NoteFormatError("cosignature must be a timestamp and an Ed25519 signature")
    timestamp = int.from_bytes(signature.signature[:8], "big")
    _check_timestamp(timestamp)
    return timestamp
