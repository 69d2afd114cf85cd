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
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from cdx import errors, merkle, tiles
from cdx.tiles import Tile

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

    def _immutable(self, path: str) -> bytes:
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
            return self._immutable(tile.path())
        except errors.NotFoundError:
            if not tile.partial:
                raise
        # The hashes of a partial tile are a prefix of the full one's (the same subtrees).
        full = self._immutable(Tile(tile.level, tile.index).path())
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
        entries = tiles.parse_entry_bundle(self._immutable(tile.bundle_path()), tile.width)
        (leaf,) = self.fetch([tile]).values()
        entry = entries[offset]
        if merkle.leaf_hash(entry) != leaf[offset * 32 : offset * 32 + 32]:
            raise errors.ProofError("the entry does not hash to its leaf")
        return entry
