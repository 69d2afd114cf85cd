"""Fuzzing C2SP signed notes, checkpoints, cosignatures and key texts (what witnesses, security
servers and inspectors read from the audit log): only coded CDX errors escape, and a mutated
note or cosignature never verifies."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from cdx.errors import LimitExceededError, NoteFormatError, NoteSignatureError
from cdx.note import (
    MAX_NOTE_BYTES,
    Checkpoint,
    CosignatureSigner,
    CosignatureVerifier,
    NoteSignature,
    NoteSigner,
    NoteVerifier,
    open_checkpoint,
    open_note,
    parse_note,
)

from .fuzzing import expect_error, fuzz_settings, mutated, mutated_text, outcome

LOG = NoteSigner("audit.cdx.example/VN", Ed25519PrivateKey.generate())
WITNESS = CosignatureSigner("VN:GOV:BCA:ss1", Ed25519PrivateKey.generate())
CHECKPOINT = Checkpoint("audit.cdx.example/VN", 1234, bytes(range(32)))
CHECKPOINT_TEXT = CHECKPOINT.to_text()
SIGNED = LOG.sign(CHECKPOINT_TEXT)
COSIGNATURE = WITNESS.cosign(CHECKPOINT_TEXT, 1_750_000_000)
COSIGNED = SIGNED + COSIGNATURE
FORMAT_ERRORS = (NoteFormatError, LimitExceededError)

_note_chars = st.characters(codec="utf-8")
_notes = st.one_of(
    st.binary(max_size=400),
    st.text(_note_chars, max_size=300),
    mutated(COSIGNED.encode()),
    mutated_text(COSIGNED),
    # Structurally plausible: random text, a blank line, random "signature" lines.
    st.tuples(
        st.text(max_size=80),
        st.lists(st.tuples(st.text(max_size=20), st.binary(max_size=80)), max_size=4),
    ).map(
        lambda t: (
            t[0]
            + "\n\n"
            + "".join(
                f"— {name} {__import__('base64').b64encode(b).decode()}\n" for name, b in t[1]
            )
        )
    ),
)


@fuzz_settings()
@given(data=_notes)
def test_fuzz_parse_note(data: bytes | str) -> None:
    result = outcome(parse_note, data)
    if isinstance(result, Exception):
        assert isinstance(result, FORMAT_ERRORS)
    else:
        # What parses serialises back to exactly what was read (one encoding per note).
        text = data if isinstance(data, str) else data.decode()
        assert result.to_text() == text


@fuzz_settings()
@given(data=st.one_of(mutated(COSIGNED.encode()), mutated_text(COSIGNED)))
def test_fuzz_mutated_note_never_verifies_as_changed(data: bytes | str) -> None:
    result = outcome(open_checkpoint, data, [LOG.verifier(), WITNESS.verifier()], required=2)
    if isinstance(result, Exception):
        assert isinstance(result, (*FORMAT_ERRORS, NoteSignatureError)), result
        return
    checkpoint, note = result
    # Only edits outside the signed text and the signatures (none exist) could verify.
    assert note.text == CHECKPOINT_TEXT and checkpoint == CHECKPOINT


@fuzz_settings()
@given(
    text=st.one_of(
        st.text(max_size=200),
        mutated_text(CHECKPOINT_TEXT),
        st.tuples(
            st.text(max_size=20), st.text("0123456789-+ x", max_size=25), st.text(max_size=50)
        ).map(lambda t: f"{t[0]}\n{t[1]}\n{t[2]}\n"),
    )
)
def test_fuzz_checkpoint_parse(text: str) -> None:
    result = outcome(Checkpoint.parse, text)
    if isinstance(result, Exception):
        assert isinstance(result, FORMAT_ERRORS)
    else:
        assert result.to_text() == text
        assert 0 <= result.size < 2**64


@fuzz_settings()
@given(line=st.one_of(st.text(max_size=150), mutated_text(COSIGNATURE)))
def test_fuzz_cosignature_line(line: str) -> None:
    result = outcome(WITNESS.verifier().verify_cosignature, line, CHECKPOINT_TEXT)
    if isinstance(result, Exception):
        assert isinstance(result, (*FORMAT_ERRORS, NoteSignatureError))
    else:
        assert result == 1_750_000_000
        assert NoteSignature.parse_line(line) == NoteSignature.parse_line(COSIGNATURE)


@fuzz_settings()
@given(text=st.one_of(mutated_text(CHECKPOINT_TEXT), st.text(max_size=100)))
def test_fuzz_cosignature_over_other_checkpoint(text: str) -> None:
    result = outcome(WITNESS.verifier().verify_cosignature, COSIGNATURE, text)
    if text != CHECKPOINT_TEXT:
        assert isinstance(result, (*FORMAT_ERRORS, NoteSignatureError)), result


_KEY_TEXTS = {
    NoteVerifier: LOG.verifier().key_text(),
    CosignatureVerifier: WITNESS.verifier().key_text(),
    NoteSigner: "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
    CosignatureSigner: "PRIVATE+KEY+w+00000000+BAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
}


@fuzz_settings()
@given(
    kind=st.sampled_from(sorted(_KEY_TEXTS, key=lambda k: k.__name__)),
    data=st.data(),
)
def test_fuzz_key_texts(kind: type, data: st.DataObject) -> None:
    text = data.draw(st.one_of(st.text(max_size=120), mutated_text(_KEY_TEXTS[kind])))
    result = outcome(kind.from_key_text, text)
    if isinstance(result, Exception):
        assert isinstance(result, FORMAT_ERRORS)


def test_note_over_the_size_limit_is_refused_unread() -> None:
    expect_error(LimitExceededError, parse_note, b"a" * (MAX_NOTE_BYTES + 1))
    expect_error(LimitExceededError, parse_note, "é" * (MAX_NOTE_BYTES // 2 + 1))


def test_note_with_too_many_signatures_is_refused() -> None:
    lines = "".join(NoteSignature(f"k{i}", b"\x00\x00\x00\x01", b"s").to_line() for i in range(101))
    expect_error(LimitExceededError, parse_note, CHECKPOINT_TEXT + "\n" + lines)


def test_checkpoint_with_absurd_tree_size_is_refused() -> None:
    text = f"o\n{2**64}\n{CHECKPOINT_TEXT.splitlines()[2]}\n"
    expect_error(NoteFormatError, Checkpoint.parse, text)
    expect_error(NoteFormatError, Checkpoint.parse, "o\n" + "9" * 4000 + "\nAAAA\n")
    expect_error(NoteFormatError, Checkpoint.parse, "o\n-1\nAAAA\n")


def test_required_signatures_cannot_be_met_by_repeating_one_signature() -> None:
    doubled = SIGNED + LOG.sign(CHECKPOINT_TEXT).split("\n\n", 1)[1]
    expect_error(NoteFormatError, open_note, doubled, [LOG.verifier()])
