"""C2SP signed notes, checkpoints and cosignatures: reference vectors, round trips, bad input."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from cdx.errors import LimitExceededError, NoteFormatError, NoteSignatureError
from cdx.note import (
    MAX_NOTE_BYTES,
    MAX_SIGNATURES,
    SIG_TYPE_COSIGNATURE_V1,
    SIG_TYPE_ED25519,
    Checkpoint,
    CosignatureSigner,
    CosignatureVerifier,
    Note,
    NoteSignature,
    NoteSigner,
    NoteVerifier,
    cosignature_timestamp,
    key_id,
    open_checkpoint,
    open_note,
    parse_note,
)

# The example key and note from golang.org/x/mod/sumdb/note (package documentation and tests).
VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
SIG_B64 = (
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
)
SIG_LINE = f"— PeterNeumann {SIG_B64}\n"
NOTE = TEXT + "\n" + SIG_LINE

# The tlog-checkpoint / tlog-cosignature specification example.
SPEC_CHECKPOINT = (
    "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
)
SPEC_COSIGNATURE_LINE = (
    "— witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2"
    "oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA=="
)


def new_signer(name: str = "log.example/cdx") -> NoteSigner:
    return NoteSigner(name, Ed25519PrivateKey.generate())


def new_witness(name: str = "witness.example/w1") -> CosignatureSigner:
    return CosignatureSigner(name, Ed25519PrivateKey.generate())


# --- reference vectors -------------------------------------------------------------------------


def test_key_id_of_reference_verifier_key() -> None:
    verifier = NoteVerifier.from_key_text(VKEY)
    assert verifier.name == "PeterNeumann"
    assert verifier.key_id.hex() == "c74f20a3"
    raw = base64.b64decode(VKEY.split("+", 2)[2])
    assert key_id("PeterNeumann", SIG_TYPE_ED25519, raw[1:]).hex() == "c74f20a3"
    assert verifier.key_text() == VKEY


def test_reference_signer_reproduces_the_published_note_byte_for_byte() -> None:
    signer = NoteSigner.from_key_text(SKEY)
    assert signer.verifier_key() == VKEY
    assert signer.sign(TEXT) == NOTE


def test_reference_note_verifies() -> None:
    opened = open_note(NOTE.encode(), [NoteVerifier.from_key_text(VKEY)])
    assert opened.text == TEXT
    assert [s.name for s in opened.verified] == ["PeterNeumann"]
    assert opened.unverified == ()


def test_signed_note_spec_example_parses() -> None:
    # c2sp.org/signed-note example: the text itself holds an empty line; the last one splits.
    note = parse_note(
        "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned è subito sera.\n"
        "\n— quasimodo.example/salvatore NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONrMouFSQU"
        "0xMcXxj99ihAQwaqP3ZekRwNtIc=\n"
    )
    assert note.text.endswith(":\n\ned è subito sera.\n")
    assert len(note.signatures) == 1 and len(note.signatures[0].signature) == 64


def test_tampered_reference_note_is_rejected_as_bad_signature() -> None:
    with pytest.raises(NoteSignatureError):
        open_note(NOTE.replace("cryptography", "cryptographY"), [NoteVerifier.from_key_text(VKEY)])


def test_mangled_reference_keys_are_rejected() -> None:
    """As golang.org/x/mod/sumdb/note TestNewVerifier: every substring and byte bump fails."""
    for i in range(len(VKEY) + 1):
        for j in range(i + 1, len(VKEY) + 1):
            if (i, j) != (0, len(VKEY)):
                with pytest.raises((NoteFormatError, LimitExceededError)):
                    NoteVerifier.from_key_text(VKEY[i:j])
    for i in range(len(VKEY)):
        mangled = VKEY[:i] + chr(ord(VKEY[i]) + 1) + VKEY[i + 1 :]
        with pytest.raises(NoteFormatError):
            NoteVerifier.from_key_text(mangled)


BAD_KEYS = [
    ("wrong key id", "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"),
    ("short key id", "PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"),
    ("missing key", "PeterNeumann+c74f20a3+"),
    ("missing parts", "PeterNeumann+c74f20a3"),
    ("empty name", "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"),
    ("space in name", "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"),
    ("not base64", "PeterNeumann+c74f20a3+!!!!"),
    ("private key given", SKEY),
]


@pytest.mark.parametrize(("name", "text"), BAD_KEYS, ids=[c[0] for c in BAD_KEYS])
def test_malformed_verifier_keys_are_rejected(name: str, text: str) -> None:
    with pytest.raises(NoteFormatError):
        NoteVerifier.from_key_text(text)


def test_key_types_are_not_interchangeable() -> None:
    witness = new_witness()
    with pytest.raises(NoteFormatError):
        NoteVerifier.from_key_text(witness.verifier_key())
    with pytest.raises(NoteFormatError):
        CosignatureVerifier.from_key_text(VKEY)
    with pytest.raises(NoteFormatError):
        CosignatureSigner.from_key_text(SKEY)
    with pytest.raises(NoteFormatError):
        NoteSigner.from_key_text(VKEY)
    with pytest.raises(NoteFormatError):
        NoteSigner.from_key_text(SKEY.replace("c74f20a3", "c74f20a4"))
    with pytest.raises(LimitExceededError):
        NoteVerifier.from_key_text("a" * 5000)


# --- round trips and verification semantics ----------------------------------------------------

note_texts = st.lists(
    st.text(alphabet=st.characters(codec="utf-8", min_codepoint=0x20), max_size=40),
    min_size=1,
    max_size=6,
).map(lambda lines: "".join(line + "\n" for line in lines))


@settings(max_examples=50, deadline=None)
@given(note_texts)
def test_sign_open_round_trip(text: str) -> None:
    signer = new_signer()
    signed = signer.sign(text)
    assert open_note(signed, [signer.verifier()]).text == text
    assert (
        open_note(signed.encode(), [NoteVerifier.from_key_text(signer.verifier_key())]).text == text
    )
    assert parse_note(signed).to_text() == signed


def test_unknown_signatures_are_ignored_and_kept() -> None:
    log, other = new_signer(), new_signer("other.example/key")
    note = parse_note(log.sign(TEXT))
    # Same name as the known key with another id, and another name with the known id: unknown.
    impostors = (
        NoteSignature(log.name, b"\x00\x00\x00\x00", b"x" * 64),
        NoteSignature("someone.else", log.key_id, b"x" * 64),
        other.sign_text(TEXT),
    )
    signed = Note(TEXT, (*impostors, *note.signatures)).to_text()
    opened = open_note(signed, [log.verifier()])
    assert opened.verified == note.signatures
    assert opened.unverified == impostors


def test_note_without_a_known_signature_is_rejected() -> None:
    with pytest.raises(NoteSignatureError):
        open_note(new_signer().sign(TEXT), [new_signer().verifier()])


def test_bad_signature_by_a_known_key_rejects_the_whole_note() -> None:
    a, b = new_signer("a.example"), new_signer("b.example")
    forged = NoteSignature(b.name, b.key_id, bytes(64))
    signed = Note(TEXT, (a.sign_text(TEXT), forged)).to_text()
    with pytest.raises(NoteSignatureError):
        open_note(signed, [a.verifier(), b.verifier()])


def test_required_counts_distinct_known_keys() -> None:
    a, b, c = new_signer("a.example"), new_signer("b.example"), new_signer("c.example")
    verifiers = [a.verifier(), b.verifier(), c.verifier()]
    two = Note(TEXT, (a.sign_text(TEXT), b.sign_text(TEXT))).to_text()
    assert len(open_note(two, verifiers, required=2).verified) == 2
    with pytest.raises(NoteSignatureError):
        open_note(two, verifiers, required=3)
    with pytest.raises(ValueError):
        open_note(two, verifiers, required=0)
    with pytest.raises(ValueError):
        open_note(two, verifiers, required=4)
    with pytest.raises(ValueError):
        open_note(two, [a.verifier(), a.verifier()])


def test_signing_rejects_bad_text() -> None:
    signer = new_signer()
    for text in ("no final newline", "tab\there\n", "cr\r\n", "\ud800\n"):
        with pytest.raises(NoteFormatError):
            signer.sign(text)
    with pytest.raises(LimitExceededError):
        signer.sign("a" * MAX_NOTE_BYTES + "\n")
    with pytest.raises(NoteFormatError):
        NoteSigner("bad+name", Ed25519PrivateKey.generate())
    with pytest.raises(NoteFormatError):
        NoteSignature("name", b"\x00" * 3, b"sig")


# --- malformed notes ---------------------------------------------------------------------------

OTHER_LINE = (
    "— Other AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n"
)

MALFORMED_NOTES: list[tuple[str, bytes | str]] = [
    ("missing blank line", TEXT + SIG_LINE),
    ("no signatures", TEXT + "\n"),
    ("empty input", ""),
    ("last line without newline", NOTE[:-1]),
    ("bad base64", TEXT + "\n— PeterNeumann !!!!\n"),
    ("unpadded base64", TEXT + "\n— PeterNeumann " + SIG_B64.rstrip("=") + "\n"),
    ("non-canonical base64", TEXT + "\n— PeterNeumann " + SIG_B64[:-2] + "N=\n"),
    ("hyphen instead of em dash", TEXT + "\n- PeterNeumann " + SIG_B64 + "\n"),
    ("en dash instead of em dash", TEXT + "\n– PeterNeumann " + SIG_B64 + "\n"),
    ("no space after dash", TEXT + "\n—PeterNeumann " + SIG_B64 + "\n"),
    ("missing signature", TEXT + "\n— PeterNeumann\n"),
    ("empty key name", TEXT + "\n—  " + SIG_B64 + "\n"),
    ("plus in key name", TEXT + "\n— Peter+Neumann " + SIG_B64 + "\n"),
    ("trailing space", TEXT + "\n— PeterNeumann " + SIG_B64 + " \n"),
    ("signature of only a key id", TEXT + "\n— PeterNeumann AAAAAA==\n"),
    ("CRLF line endings", NOTE.replace("\n", "\r\n")),
    ("carriage return in text", "a\rb\n\n" + SIG_LINE),
    ("NUL in text", "a\x00b\n\n" + SIG_LINE),
    ("tab in signature line", TEXT + "\n— PeterNeumann\t" + SIG_B64 + "\n"),
    ("non-UTF-8 bytes", b"caf\xe9\n\n" + SIG_LINE.encode()),
    ("truncated UTF-8", NOTE.encode()[:-2] + b"\xe2\x80\n"),
    ("overlong UTF-8", b"\xc0\xaf\n\n" + SIG_LINE.encode()),
    ("lone surrogate", "\ud800\n\n" + SIG_LINE),
    ("duplicate signature line", NOTE + SIG_LINE),
    ("duplicate unknown key", NOTE + OTHER_LINE + OTHER_LINE),
]


@pytest.mark.parametrize(("name", "data"), MALFORMED_NOTES, ids=[c[0] for c in MALFORMED_NOTES])
def test_malformed_notes_raise_note_format_error(name: str, data: bytes | str) -> None:
    verifier = NoteVerifier.from_key_text(VKEY)
    with pytest.raises(NoteFormatError) as info:
        open_note(data, [verifier])
    assert info.type is NoteFormatError


def test_oversized_notes_raise_limit_exceeded() -> None:
    verifier = NoteVerifier.from_key_text(VKEY)
    too_long = "a" * MAX_NOTE_BYTES + NOTE
    for data in (too_long, too_long.encode(), "é" * (MAX_NOTE_BYTES // 2) + NOTE):
        with pytest.raises(LimitExceededError):
            open_note(data, [verifier])
    many = NOTE + "".join(
        f"— k{i} AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n"
        for i in range(MAX_SIGNATURES)
    )
    with pytest.raises(LimitExceededError):
        open_note(many, [verifier])


def test_the_signature_limit_is_generous_enough() -> None:
    # signed-note: verifiers MUST accept at least 16 signatures.
    lines = "".join(
        f"— k{i} AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n"
        for i in range(MAX_SIGNATURES - 1)
    )
    opened = open_note(NOTE + lines, [NoteVerifier.from_key_text(VKEY)])
    assert len(opened.unverified) == MAX_SIGNATURES - 1


# --- checkpoints -------------------------------------------------------------------------------


def test_spec_checkpoint_round_trip() -> None:
    checkpoint = Checkpoint.parse(SPEC_CHECKPOINT)
    assert checkpoint.origin == "example.com/behind-the-sofa"
    assert checkpoint.size == 20852163
    assert checkpoint.root_hash == base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    assert checkpoint.extensions == ()
    assert checkpoint.to_text() == SPEC_CHECKPOINT


line_text = st.text(
    alphabet=st.characters(codec="utf-8", min_codepoint=0x20),
    min_size=1,
    max_size=30,
)


@settings(max_examples=100, deadline=None)
@given(
    line_text,
    st.integers(min_value=0, max_value=2**64 - 1),
    st.binary(min_size=32, max_size=32),
    st.lists(line_text, max_size=3),
)
def test_checkpoint_text_round_trip(origin: str, size: int, root: bytes, ext: list[str]) -> None:
    checkpoint = Checkpoint(origin, size, root, tuple(ext))
    assert Checkpoint.parse(checkpoint.to_text()) == checkpoint


ROOT_B64 = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="
MALFORMED_CHECKPOINTS = [
    ("empty", ""),
    ("no final newline", SPEC_CHECKPOINT[:-1]),
    ("two lines", "origin\n5\n"),
    ("empty origin", f"\n5\n{ROOT_B64}\n"),
    ("leading zero", f"o\n05\n{ROOT_B64}\n"),
    ("double zero", f"o\n00\n{ROOT_B64}\n"),
    ("negative size", f"o\n-1\n{ROOT_B64}\n"),
    ("plus sign", f"o\n+1\n{ROOT_B64}\n"),
    ("space in size", f"o\n 1\n{ROOT_B64}\n"),
    ("decimal point", f"o\n1.0\n{ROOT_B64}\n"),
    ("non-ASCII digit", f"o\n\u0661\n{ROOT_B64}\n"),
    ("hex size", f"o\n0x10\n{ROOT_B64}\n"),
    ("size beyond uint64", f"o\n{2**64}\n{ROOT_B64}\n"),
    ("31-byte hash", f"o\n1\n{base64.b64encode(bytes(31)).decode()}\n"),
    ("33-byte hash", f"o\n1\n{base64.b64encode(bytes(33)).decode()}\n"),
    ("unpadded hash", f"o\n1\n{ROOT_B64.rstrip('=')}\n"),
    ("non-canonical hash", f"o\n1\n{ROOT_B64[:-2]}J=\n"),
    ("hex hash", f"o\n1\n{'00' * 32}\n"),
    ("empty extension line", SPEC_CHECKPOINT + "\n"),
    ("carriage return", SPEC_CHECKPOINT.replace("\n", "\r\n")),
]


@pytest.mark.parametrize(
    ("name", "text"), MALFORMED_CHECKPOINTS, ids=[c[0] for c in MALFORMED_CHECKPOINTS]
)
def test_malformed_checkpoints_raise_note_format_error(name: str, text: str) -> None:
    with pytest.raises(NoteFormatError) as info:
        Checkpoint.parse(text)
    assert info.type is NoteFormatError


def test_oversized_checkpoint_raises_limit_exceeded() -> None:
    with pytest.raises(LimitExceededError):
        Checkpoint.parse(SPEC_CHECKPOINT + "x" * 70_000 + "\n")


def test_checkpoint_constructor_validates() -> None:
    for args in (
        ("", 1, bytes(32)),
        ("o", -1, bytes(32)),
        ("o", 1, bytes(31)),
        ("a\nb", 1, bytes(32)),
    ):
        with pytest.raises(NoteFormatError):
            Checkpoint(*args)
    with pytest.raises(NoteFormatError):
        Checkpoint("o", 1, bytes(32), ("",))


def test_open_checkpoint() -> None:
    log = new_signer("example.com/behind-the-sofa")
    checkpoint, note = open_checkpoint(log.sign(SPEC_CHECKPOINT), [log.verifier()])
    assert checkpoint == Checkpoint.parse(SPEC_CHECKPOINT)
    assert note.verified[0].name == log.name
    with pytest.raises(NoteFormatError):
        open_checkpoint(log.sign("not a checkpoint\n"), [log.verifier()])


# --- cosignatures ------------------------------------------------------------------------------

TIME = 1679315147


def test_cosignature_round_trip_and_wire_format() -> None:
    witness = new_witness()
    line = witness.cosign(SPEC_CHECKPOINT, TIME)
    verifier = CosignatureVerifier.from_key_text(witness.verifier_key())
    assert verifier.verify_cosignature(line, SPEC_CHECKPOINT) == TIME
    assert verifier.verify_cosignature(NoteSignature.parse_line(line), SPEC_CHECKPOINT) == TIME

    # Check the bytes independently of the module: key id, timestamp, signed message.
    name, blob = line.removeprefix("— ").removesuffix("\n").split(" ")
    raw = base64.b64decode(blob)
    public = verifier.public_key
    assert name == witness.name and len(raw) == 4 + 8 + 64
    assert raw[:4] == key_id(witness.name, SIG_TYPE_COSIGNATURE_V1, public)
    assert int.from_bytes(raw[4:12], "big") == TIME
    message = b"cosignature/v1\ntime 1679315147\n" + SPEC_CHECKPOINT.encode()
    Ed25519PublicKey.from_public_bytes(public).verify(raw[12:], message)  # raises if wrong
    assert base64.b64decode(witness.verifier_key().split("+", 2)[2])[0] == 0x04


def test_spec_cosignature_line_frames_a_timestamped_signature() -> None:
    # The spec publishes no witness key, so only the framing can be checked.
    sig = NoteSignature.parse_line(SPEC_COSIGNATURE_LINE)
    assert sig.name == "witness.example.com/w1"
    assert sig.key_id.hex() == "8d66cf3f"
    assert cosignature_timestamp(sig) == TIME


def test_tampered_cosignatures_are_rejected() -> None:
    witness, impostor = new_witness(), new_witness()
    verifier = witness.verifier()
    line = witness.cosign(SPEC_CHECKPOINT, TIME)
    sig = NoteSignature.parse_line(line)
    other_checkpoint = SPEC_CHECKPOINT.replace("20852163", "20852164")
    with pytest.raises(NoteSignatureError):
        verifier.verify_cosignature(line, other_checkpoint)
    later = NoteSignature(sig.name, sig.key_id, (TIME + 1).to_bytes(8, "big") + sig.signature[8:])
    with pytest.raises(NoteSignatureError):
        verifier.verify_cosignature(later, SPEC_CHECKPOINT)
    with pytest.raises(NoteSignatureError):  # other key under the same name: other key id
        verifier.verify_cosignature(impostor.cosign(SPEC_CHECKPOINT, TIME), SPEC_CHECKPOINT)
    same_id = NoteSignature.parse_line(impostor.cosign(SPEC_CHECKPOINT, TIME))
    forged = NoteSignature(sig.name, sig.key_id, same_id.signature)
    with pytest.raises(NoteSignatureError):  # right key id, signature by another key
        verifier.verify_cosignature(forged, SPEC_CHECKPOINT)
    renamed = NoteSignature("other.example/w", sig.key_id, sig.signature)
    with pytest.raises(NoteSignatureError):  # valid bytes, but the line names another witness
        verifier.verify_cosignature(renamed, SPEC_CHECKPOINT)
    # The same key as a plain (0x01) note key has another key id: a cosignature is no signature.
    plain = NoteVerifier(witness.name, verifier.public_key)
    assert plain.key_id != verifier.key_id
    with pytest.raises(NoteSignatureError):
        open_note(SPEC_CHECKPOINT + "\n" + line, [plain])


def test_malformed_cosignature_input() -> None:
    witness = new_witness()
    verifier = witness.verifier()
    for bad_time in (-1, 2**63, True):
        with pytest.raises(NoteFormatError):
            witness.cosign(SPEC_CHECKPOINT, bad_time)
    with pytest.raises(NoteFormatError):
        witness.cosign("not a checkpoint\n", TIME)
    short = NoteSignature(witness.name, witness.key_id, bytes(71))
    with pytest.raises(NoteFormatError):
        verifier.verify_cosignature(short, SPEC_CHECKPOINT)
    huge_time = NoteSignature(witness.name, witness.key_id, b"\xff" * 8 + bytes(64))
    with pytest.raises(NoteFormatError):
        verifier.verify_cosignature(huge_time, SPEC_CHECKPOINT)
    with pytest.raises(NoteFormatError):
        verifier.verify_cosignature("- not a line", SPEC_CHECKPOINT)


def test_cosigned_checkpoint_needs_k_of_n_witnesses() -> None:
    log = new_signer("example.com/behind-the-sofa")
    w1, w2, w3 = new_witness("w1.example"), new_witness("w2.example"), new_witness("w3.example")
    signed = log.sign(SPEC_CHECKPOINT)
    cosigned = signed + w1.cosign(SPEC_CHECKPOINT, TIME) + w2.cosign(SPEC_CHECKPOINT, TIME + 5)
    # The log's key alone still opens it: cosignatures are unknown signatures to it.
    checkpoint, note = open_checkpoint(cosigned, [log.verifier()])
    assert checkpoint.size == 20852163 and len(note.unverified) == 2
    witnesses = [w1.verifier(), w2.verifier(), w3.verifier()]
    opened = open_note(cosigned, witnesses, required=2)
    assert sorted(cosignature_timestamp(s) for s in opened.verified) == [TIME, TIME + 5]
    with pytest.raises(NoteSignatureError):
        open_note(cosigned, witnesses, required=3)
    # A cosignature over another checkpoint, pasted onto this one, fails as a known-key signature.
    pasted = signed + w1.cosign(SPEC_CHECKPOINT.replace("20852163", "1"), TIME)
    with pytest.raises(NoteSignatureError):
        open_note(pasted, witnesses)
