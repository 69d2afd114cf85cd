"""Reads a tiled log (C2SP tlog-tiles) over HTTP(S): the checkpoint, tiles and entries; proofs
are computed from tiles by ``cdx.tiles`` and must still be checked against a verified
checkpoint (nothing served is trusted).

Tiles of one request are fetched in parallel and kept (they never change); only the checkpoint
is fetched afresh. A partial tile the log no longer (or never) published is taken from the
prefix of the full tile, as c2sp.org/tlog-tiles lets clients do.
"""

from __future__ import annotations

import gzip
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from cdx import errors, merkle, note, tiles
from cdx.tiles import Tile
from cdx.v1 import audit_pb2

_CACHE_LIMIT = 4096


class TileClient:
    """One log's tiles under a URL prefix (``https://host/path``); ``ca_pem`` is trusted for
    HTTPS beside the system's certificate authorities."""

    def __init__(self, prefix: str, *, ca_pem: bytes | None = None, timeout: float = 10.0) -> None:
        if not prefix.startswith(("http://", "https://")):
            raise errors.InvalidArgumentError("a tile URL starts with http:// or https://")
        self.prefix = prefix.rstrip("/")
        self._timeout = timeout
        self._context: ssl.SSLContext | None = None
        if ca_pem:  # the instance CA as well as the system's (a CDN has a public certificate)
            self._context = ssl.create_default_context()
            self._context.load_verify_locations(cadata=ca_pem.decode())
        self._cache: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def _get(self, path: str) -> bytes:
        request = urllib.request.Request(  # noqa: S310 - http(s) only, checked above
            f"{self.prefix}/{path}", headers={"accept-encoding": "gzip, identity"}
        )
        try:
            with urllib.request.urlopen(  # noqa: S310
                request, timeout=self._timeout, context=self._context
            ) as response:
                data = bytes(response.read())
                if response.headers.get("content-encoding") == "gzip":
                    data = gzip.decompress(data)
                return data
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise errors.NotFoundError(f"{path} is not served at {self.prefix}") from exc
            raise errors.UnavailableError(f"{self.prefix} answered {exc.code} for {path}") from exc
        except (OSError, EOFError) as exc:
            raise errors.UnavailableError(f"cannot read {path} from {self.prefix}") from exc

    def immutable(self, path: str) -> bytes:
        """A tile or bundle (kept once fetched: they never change)."""
        with self._lock:
            cached = self._cache.get(path)
        if cached is not None:
            return cached
        data = self._get(path)
        with self._lock:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[path] = data
        return data

    def checkpoint_note(self) -> str:
        """The checkpoint as served (verify it before use).

        Raises:
            NotFoundError / UnavailableError: not served.
        """
        return self._get("checkpoint").decode("utf-8", "replace")

    def fetch(self, wanted: Sequence[Tile]) -> dict[Tile, bytes]:
        """The given tiles, fetched in parallel.

        Raises:
            NotFoundError / UnavailableError: a tile is not served.
            MalformedError: a tile has the wrong length.
        """
        with ThreadPoolExecutor(max_workers=min(8, max(1, len(wanted)))) as pool:
            data = list(pool.map(self._tile, wanted))
        out = dict(zip(wanted, data, strict=True))
        for tile, content in out.items():
            tiles.check_tile(tile, content)
        return out

    def _tile(self, tile: Tile) -> bytes:
        try:
            return self.immutable(tile.path())
        except errors.NotFoundError:
            if not tile.partial:
                raise
        # The hashes of a partial tile are a prefix of the full one's (the same subtrees).
        full = self.immutable(Tile(tile.level, tile.index).path())
        return full[: tile.width * merkle.HASH_SIZE]

    def inclusion_proof(self, index: int, size: int) -> tuple[bytes, list[bytes]]:
        """``(leaf hash, proof)`` of entry ``index`` in the tree of ``size`` entries.

        Raises:
            InvalidArgumentError: ``index`` not below ``size``.
            NotFoundError / UnavailableError / MalformedError / ProofError: bad or missing tiles.
        """
        return tiles.inclusion_proof(self.fetch(tiles.inclusion_tiles(index, size)), index, size)

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        """The consistency proof from ``size1`` to ``size2``.

        Raises:
            InvalidArgumentError: not ``size1 <= size2``.
            NotFoundError / UnavailableError / MalformedError / ProofError: bad or missing tiles.
        """
        wanted = tiles.consistency_tiles(size1, size2)
        return tiles.consistency_proof(self.fetch(wanted), size1, size2)

    def entry(self, index: int, size: int) -> bytes:
        """Entry ``index`` from its bundle, checked against its level-0 tile.

        Raises:
            InvalidArgumentError: ``index`` not below ``size``.
            NotFoundError / UnavailableError / MalformedError: bad or missing bundle.
            ProofError: the entry does not hash to its leaf.
        """
        tile, offset, _ = tiles.tile_of(index, index + 1, size)
        entries = tiles.parse_entry_bundle(self.immutable(tile.bundle_path()), tile.width)
        (leaf,) = self.fetch([tile]).values()
        entry = entries[offset]
        if merkle.leaf_hash(entry) != leaf[offset * 32 : offset * 32 + 32]:
            raise errors.ProofError("the entry does not hash to its leaf")
        return entry


class TileLogSource:
    """A log as its tiles serve it, for ``audit.verify.verify_log``: the published checkpoint
    (tiles publish only the newest one), every entry from the entry bundles, and proofs
    computed from the tiles. Verification checks everything read against signed checkpoints,
    so nothing here needs to be trusted; an archived period of the log, whose database is
    gone, stays verifiable this way."""

    def __init__(self, client: TileClient) -> None:
        self.client = client
        self._size: int | None = None

    def _published_size(self) -> int:
        if self._size is None:
            self._size = note.Checkpoint.parse(
                note.parse_note(self.client.checkpoint_note()).text
            ).size
        return self._size

    def checkpoint(self, min_cosignatures: int = 0) -> audit_pb2.Checkpoint:
        """The published checkpoint (the caller counts its cosignatures).

        Raises:
            NotFoundError / UnavailableError: not served.
            NoteFormatError: not a checkpoint.
        """
        text = self.client.checkpoint_note()
        cp = note.Checkpoint.parse(note.parse_note(text).text)
        self._size = cp.size
        return audit_pb2.Checkpoint(note=text, size=cp.size, root_hash=cp.root_hash)

    def iter_checkpoints(self) -> Iterator[audit_pb2.Checkpoint]:
        try:
            yield self.checkpoint()
        except errors.NotFoundError:
            return

    def iter_leaves(self, start: int, end: int) -> Iterator[tuple[int, bytes]]:
        """``(index, entry)`` of ``[start, end)`` from the bundles of a tree of at least
        ``end`` entries (each bundle read once; a partial bundle no longer served is taken
        from the full one).

        Raises:
            NotFoundError / UnavailableError / MalformedError: a bundle is missing or bad.
        """
        size = max(end, self._published_size())
        pos = start
        while pos < end:
            tile, offset, _ = tiles.tile_of(pos, pos + 1, size)
            bundle = self._bundle(tile)
            stop = min(end - tile.first, tile.width)
            for i in range(offset, stop):
                yield tile.first + i, bundle[i]
            pos = tile.first + stop

    def _bundle(self, tile: Tile) -> list[bytes]:
        try:
            return tiles.parse_entry_bundle(self.client.immutable(tile.bundle_path()), tile.width)
        except errors.NotFoundError:
            if not tile.partial:
                raise
        full = Tile(0, tile.index)
        entries = tiles.parse_entry_bundle(self.client.immutable(full.bundle_path()), full.width)
        return entries[: tile.width]

    def iter_entries(self, start: int, end: int) -> Iterator[audit_pb2.LogEntry]:
        for index, leaf in self.iter_leaves(start, end):
            yield audit_pb2.LogEntry(
                index=index, record=audit_pb2.SignedAccessRecord.FromString(leaf)
            )

    def inclusion_proof(
        self, index: int = 0, tree_size: int = 0, record_id: str = ""
    ) -> audit_pb2.InclusionProof:
        """Raises the errors of ``TileClient.inclusion_proof``; ``record_id`` is not
        supported (tiles are not searchable: ``InvalidArgumentError``)."""
        if record_id:
            raise errors.InvalidArgumentError("tiles cannot be searched by record id")
        leaf_hash, hashes = self.client.inclusion_proof(index, tree_size)
        return audit_pb2.InclusionProof(
            index=index, tree_size=tree_size, hashes=hashes, leaf_hash=leaf_hash
        )

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        return self.client.consistency_proof(size1, size2)
