"""The portal's proofs from the audit log's tiles (c2sp.org/tlog-tiles): which tile endpoint
global configuration names, fetching the tiles a page needs in one go, and the proofs computed
from them (``portal.verify``), which are then checked against a verified checkpoint like any
other. Where global configuration names no tile endpoint, the pages use the proofs of the log's
API instead and say so.

A tile endpoint that does not answer leaves the entries it should prove *pending*
(``tiles_unavailable``); one that serves malformed tiles makes them *failed* (``invalid_tiles``);
a tile with other hashes gives a proof that does not verify (``invalid_proof``).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable

from audit.tileclient import TileClient
from cdx import errors, note
from cdx import tiles as tiles_math
from cdx.globalconf import VerifiedGlobalConf
from portal.backends import CitizenHistory, InclusionProof, TileFetcher
from portal.verify import consistency_from_tiles, proof_from_tiles

#: What the portal asks for a configuration's tile endpoint (``None``: none configured).
TileEndpoint = Callable[[VerifiedGlobalConf], TileFetcher | None]

TILES_UNAVAILABLE = "tiles_unavailable"
INVALID_TILES = "invalid_tiles"
_UNSERVED = (errors.NotFoundError, errors.UnavailableError, errors.DeadlineExceededError)


class TileEndpoints:
    """A ``TileEndpoint``: one tile client per URL global configuration names (clients keep
    the immutable tiles they fetched)."""

    def __init__(self, *, ca_pem: bytes | None = None, timeout: float = 5.0) -> None:
        self._ca_pem = ca_pem
        self._timeout = timeout
        self._lock = threading.Lock()
        self._clients: dict[str, TileClient] = {}

    def __call__(self, conf: VerifiedGlobalConf) -> TileFetcher | None:
        url = conf.audit_tiles_url
        if not url:
            return None
        with self._lock:
            client = self._clients.get(url)
            if client is None:
                client = TileClient(url, ca_pem=self._ca_pem, timeout=self._timeout)
                self._clients = {url: client}  # the previous endpoint's tiles are not needed
            return client


def _claimed_size(checkpoint_note: str) -> int | None:
    """The size a checkpoint note states (its signature is checked later, with the proofs)."""
    try:
        return note.Checkpoint.parse(note.parse_note(checkpoint_note).text).size
    except errors.CdxError:
        return None


def with_tile_proofs(history: CitizenHistory, fetcher: TileFetcher) -> CitizenHistory:
    """The history with the inclusion proof of every entry its checkpoint covers computed from
    tiles (the proofs the log's API sent are dropped)."""
    size = _claimed_size(history.checkpoint.note) if history.checkpoint else None
    covered = [i.entry.index for i in history.items if size and i.entry.index < size]
    problem = ""
    proofs: dict[int, InclusionProof] = {}
    if size and covered:
        wanted: set[tiles_math.Tile] = set()
        for index in covered:
            wanted.update(tiles_math.inclusion_tiles(index, size))
        try:
            fetched = fetcher.fetch(sorted(wanted))
        except _UNSERVED:
            problem = TILES_UNAVAILABLE
        except errors.MalformedError:
            problem = INVALID_TILES
        else:
            for index in covered:
                try:
                    proofs[index] = proof_from_tiles(fetched, index, size)
                except errors.ProofError:
                    problem = INVALID_TILES
    items = tuple(dataclasses.replace(i, proof=proofs.get(i.entry.index)) for i in history.items)
    return dataclasses.replace(
        history, items=items, proof_source="tiles", tiles_url=fetcher.prefix, tiles_problem=problem
    )


def inclusion_from_tiles(
    fetcher: TileFetcher, index: int, size: int
) -> tuple[InclusionProof | None, str]:
    """The inclusion proof of entry ``index`` in the tree of ``size`` from tiles, or ``None``
    and why not (``tiles_unavailable`` or ``invalid_tiles``)."""
    try:
        fetched = fetcher.fetch(tiles_math.inclusion_tiles(index, size))
        return proof_from_tiles(fetched, index, size), ""
    except _UNSERVED:
        return None, TILES_UNAVAILABLE
    except (errors.MalformedError, errors.ProofError, errors.InvalidArgumentError):
        return None, INVALID_TILES


def consistency_from_tile_endpoint(
    fetcher: TileFetcher, size1: int, size2: int
) -> tuple[bytes, ...]:
    """The consistency proof from ``size1`` to ``size2`` from tiles.

    Raises:
        UnavailableError: the endpoint did not serve the tiles.
        MalformedError: it served malformed tiles.
        InvalidArgumentError: not ``size1 <= size2``.
    """
    try:
        fetched = fetcher.fetch(tiles_math.consistency_tiles(size1, size2))
        return consistency_from_tiles(fetched, size1, size2)
    except _UNSERVED as exc:
        raise errors.UnavailableError("the log's tile endpoint did not serve the tiles") from exc
    except errors.ProofError as exc:
        raise errors.MalformedError("the log's tile endpoint served malformed tiles") from exc
