"""A small client of transparency logs written from the C2SP specifications alone.

It imports nothing of CDX: only the standard library and ``cryptography``'s Ed25519. It reads a
log served per c2sp.org/tlog-tiles over HTTP, verifies checkpoints (c2sp.org/tlog-checkpoint,
c2sp.org/signed-note) and cosignatures (c2sp.org/tlog-cosignature), computes inclusion and
consistency proofs from tiles (RFC 6962 §2.1) and verifies them (RFC 9162 §2.1.3.2, §2.1.4.2),
and reads entries from entry bundles. It also speaks c2sp.org/tlog-witness as a client.

If CDX's log or witness disagreed with the specifications, this client would fail where CDX's
own code (written by the same hands as the server) might not.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import urllib.error
import urllib.request
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

EM_DASH = "\u2014"


class SpecError(Exception):
    """Something did not verify, or was not what the specification says."""


# --- hashing (RFC 6962 §2.1) ------------------------------------------------------------------


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def largest_power_of_two_below(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


# --- signed notes and checkpoints ---------------------------------------------------------------


@dataclass(frozen=True)
class VerifierKey:
    """A signed-note verifier key ``<name>+<hex key id>+<base64(type || public key)>``."""

    name: str
    key_id: bytes
    sig_type: int
    public: Ed25519PublicKey

    @classmethod
    def parse(cls, text: str) -> VerifierKey:
        name, hex_id, blob = text.strip().split("+", 2)
        raw = base64.b64decode(blob, validate=True)
        sig_type, key = raw[0], raw[1:]
        key_id = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4]
        if key_id.hex() != hex_id or len(key) != 32 or sig_type not in (0x01, 0x04):
            raise SpecError("malformed verifier key")
        return cls(name, key_id, sig_type, Ed25519PublicKey.from_public_bytes(key))


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    body: str
    signatures: tuple[tuple[str, bytes], ...]  # (key name, signature blob)
    note: str


def parse_note(text: str) -> tuple[str, list[tuple[str, bytes]]]:
    """Split a signed note into its text (ending in a newline) and its signature lines."""
    body, sep, sigs = text.partition("\n\n")
    if not sep or not sigs.endswith("\n"):
        raise SpecError("not a signed note")
    out = []
    for line in sigs[:-1].split("\n"):
        if not line.startswith(EM_DASH + " "):
            raise SpecError("a signature line must start with an em dash")
        name, blob = line[2:].split(" ")
        out.append((name, base64.b64decode(blob, validate=True)))
    return body + "\n", out


def open_checkpoint(text: str, log_key: VerifierKey, origin: str) -> Checkpoint:
    """Verify the log's Ed25519 signature (signed-note) and parse the checkpoint."""
    body, signatures = parse_note(text)
    good = False
    for name, blob in signatures:
        if name == log_key.name and blob[:4] == log_key.key_id:
            try:
                log_key.public.verify(blob[4:], body.encode())
                good = True
            except InvalidSignature as exc:
                raise SpecError("the log's signature does not verify") from exc
    if not good:
        raise SpecError("the checkpoint is not signed by the log key")
    lines = body.split("\n")
    if lines[0] != origin:
        raise SpecError("another log's checkpoint")
    size = int(lines[1])
    if str(size) != lines[1]:
        raise SpecError("a tree size has no leading zeroes")
    root = base64.b64decode(lines[2], validate=True)
    return Checkpoint(lines[0], size, root, body, tuple(signatures), text)


def verify_cosignature(checkpoint_body: str, name: str, blob: bytes, key: VerifierKey) -> int:
    """Check a ``cosignature/v1`` over a checkpoint body; returns its timestamp."""
    if name != key.name or blob[:4] != key.key_id or key.sig_type != 0x04 or len(blob) != 76:
        raise SpecError("not a cosignature by this key")
    timestamp = int.from_bytes(blob[4:12], "big")
    message = f"cosignature/v1\ntime {timestamp}\n{checkpoint_body}".encode()
    try:
        key.public.verify(blob[12:], message)
    except InvalidSignature as exc:
        raise SpecError("the cosignature does not verify") from exc
    return timestamp


# --- tiles ---------------------------------------------------------------------------------------


def tile_index_path(n: int) -> str:
    parts = []
    while True:
        parts.append(f"{n % 1000:03d}")
        n //= 1000
        if n == 0:
            break
    return "/".join([f"x{p}" for p in reversed(parts[1:])] + [parts[0]])


class TiledLog:
    """A read-only view of a tiled log at one checkpoint, fetching tiles on demand."""

    def __init__(self, prefix: str, checkpoint: Checkpoint) -> None:
        self.prefix = prefix.rstrip("/")
        self.cp = checkpoint
        self._tiles: dict[tuple[int, int], bytes] = {}
        self.fetched: list[str] = []

    def _get(self, path: str) -> bytes:
        request = urllib.request.Request(
            f"{self.prefix}/{path}", headers={"accept-encoding": "gzip, identity"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            data = response.read()
            if response.headers.get("content-encoding") == "gzip":
                data = gzip.decompress(data)
        self.fetched.append(path)
        return bytes(data)

    def _width(self, level: int, index: int) -> int:
        hashes = self.cp.size // 256**level
        return min(256, hashes - index * 256)

    def tile(self, level: int, index: int) -> bytes:
        key = (level, index)
        if key not in self._tiles:
            width = self._width(level, index)
            if width <= 0:
                raise SpecError("no such tile in this tree")
            suffix = "" if width == 256 else f".p/{width}"
            data = self._get(f"tile/{level}/{tile_index_path(index)}{suffix}")
            if len(data) != 32 * width:
                raise SpecError("a tile of the wrong length")
            self._tiles[key] = data
        return self._tiles[key]

    def hash_at(self, level: int, index: int) -> bytes:
        """MTH of the perfect subtree of height ``level`` number ``index`` (from tiles)."""
        tile_level, rest = divmod(level, 8)
        first = index << rest  # the first of 2**rest hashes at tree level 8 * tile_level
        data = self.tile(tile_level, first // 256)
        off = first % 256
        hashes = [data[(off + i) * 32 : (off + i + 1) * 32] for i in range(1 << rest)]
        while len(hashes) > 1:
            hashes = [node_hash(hashes[i], hashes[i + 1]) for i in range(0, len(hashes), 2)]
        return hashes[0]

    def mth(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi]) by the RFC 6962 recursion, perfect subtrees read from tiles."""
        n = hi - lo
        if n & (n - 1) == 0 and lo % n == 0:
            level = n.bit_length() - 1
            return self.hash_at(level, lo >> level)
        k = largest_power_of_two_below(n)
        return node_hash(self.mth(lo, lo + k), self.mth(lo + k, hi))

    def inclusion_proof(self, m: int) -> list[bytes]:
        """PATH(m, D[n]), RFC 6962 §2.1.1."""

        def path(m: int, lo: int, hi: int) -> list[bytes]:
            n = hi - lo
            if n == 1:
                return []
            k = largest_power_of_two_below(n)
            if m < k:
                return [*path(m, lo, lo + k), self.mth(lo + k, hi)]
            return [*path(m - k, lo + k, hi), self.mth(lo, lo + k)]

        return path(m, 0, self.cp.size)

    def consistency_proof(self, m: int) -> list[bytes]:
        """PROOF(m, D[n]), RFC 6962 §2.1.2."""

        def subproof(m: int, lo: int, hi: int, complete: bool) -> list[bytes]:
            n = hi - lo
            if m == n:
                return [] if complete else [self.mth(lo, hi)]
            k = largest_power_of_two_below(n)
            if m <= k:
                return [*subproof(m, lo, lo + k, complete), self.mth(lo + k, hi)]
            return [*subproof(m - k, lo + k, hi, False), self.mth(lo, lo + k)]

        return [] if m in (0, self.cp.size) else subproof(m, 0, self.cp.size, True)

    def entry(self, index: int) -> bytes:
        """Entry ``index`` from its bundle, checked against the level-0 tile."""
        n, off = divmod(index, 256)
        width = self._width(0, n)
        suffix = "" if width == 256 else f".p/{width}"
        data = self._get(f"tile/entries/{tile_index_path(n)}{suffix}")
        entries, pos = [], 0
        while pos < len(data):
            length = int.from_bytes(data[pos : pos + 2], "big")
            entries.append(data[pos + 2 : pos + 2 + length])
            pos += 2 + length
        if len(entries) != width:
            raise SpecError("a bundle with the wrong number of entries")
        entry = entries[off]
        if leaf_hash(entry) != self.hash_at(0, index):
            raise SpecError("the entry does not hash to its leaf")
        return entry


# --- proof verification (RFC 9162 §2.1.3.2 and §2.1.4.2) ---------------------------------------


def verify_inclusion(leaf: bytes, index: int, size: int, proof: list[bytes], root: bytes) -> None:
    if index >= size:
        raise SpecError("index beyond the tree")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise SpecError("proof too long")
        if fn % 2 == 1 or fn == sn:
            r = node_hash(p, r)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0 or r != root:
        raise SpecError("inclusion proof does not verify")


def verify_consistency(
    size1: int, size2: int, proof: list[bytes], root1: bytes, root2: bytes
) -> None:
    if size1 == size2:
        if proof or root1 != root2:
            raise SpecError("same size, different trees")
        return
    if size1 == 0 or size1 > size2 or not proof:
        raise SpecError("not a consistency proof")
    path = list(proof)
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn % 2 == 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise SpecError("proof too long")
        if fn % 2 == 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0 or fr != root1 or sr != root2:
        raise SpecError("consistency proof does not verify")


# --- tlog-witness client -------------------------------------------------------------------------


def add_checkpoint(
    url: str, old_size: int, proof: list[bytes], checkpoint_note: str
) -> tuple[int, str, str]:
    """POST ``add-checkpoint``; returns (HTTP status, content type, body)."""
    body = f"old {old_size}\n" + "".join(base64.b64encode(h).decode() + "\n" for h in proof)
    return post(url, (body + "\n" + checkpoint_note).encode())


def post(url: str, data: bytes) -> tuple[int, str, str]:
    """POST raw bytes; returns (HTTP status, content type, body)."""
    request = urllib.request.Request(url, data=data, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return (
                response.status,
                response.headers.get("content-type", ""),
                response.read().decode(),
            )
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("content-type", ""), exc.read().decode()
