"""Publishes the log as C2SP tlog-tiles: tiles, entry bundles, the checkpoint and the key
documents, into a ``TileStore`` (a directory or an S3-compatible bucket) that any static server,
CDN or ``audit.http`` serves.

Each round (every ``interval`` seconds, and when nudged after a checkpoint):

1. the newest signed checkpoint is the target; the size of the checkpoint published before is
   read back from the store (so a restarted publisher continues where it stopped);
2. every tile the target tree has that the published one had not (``cdx.tiles.new_tiles``: the
   full tiles completed since and the target's partial tiles), each level-0 one with its entry
   bundle (the leaves, exactly the bytes of ``GetEntries``: sealed and shredded entries reveal
   nothing more than today), is written; so are the partial hash tiles of the (at most
   ``INTERMEDIATE_CHECKPOINTS`` newest) checkpoints signed in between, so that a client can
   compute proofs from tiles against *any* recent checkpoint, e.g. the newest one with the
   witness quorum, which is often not the newest one;
3. only then the checkpoint, with every cosignature received for it, so a client never sees a
   checkpoint whose tiles are missing. A checkpoint that gains cosignatures is written again.

A target smaller than what was published is a rewritten store: refused, logged, reported by
``health()``; nothing is overwritten.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from audit.store import AuditStore, CheckpointRow
from audit.tilestore import TileStore
from cdx import errors, keydocs, note, telemetry, tiles
from cdx.globalconf import VerifiedGlobalConf

log = logging.getLogger(__name__)

CHECKPOINT_PATH = "checkpoint"
_TEXT = "text/plain; charset=utf-8"
_BINARY = "application/octet-stream"
DEFAULT_INTERVAL = 1.0
#: Checkpoints signed between two rounds whose partial tiles are written too (the newest ones;
#: a client that needs an older size falls back to a full tile, c2sp.org/tlog-tiles).
INTERMEDIATE_CHECKPOINTS = 64


class TilePublisher:
    """Writes what a tiled log serves; ``publish_once`` is one round (see the module docstring)."""

    def __init__(
        self,
        store: AuditStore,
        target: TileStore,
        *,
        conf: Callable[[], VerifiedGlobalConf] | None = None,
        interval: float = DEFAULT_INTERVAL,
    ) -> None:
        self._store = store
        self.target = target
        self._conf = conf
        self._interval = interval
        self._lock = threading.Lock()
        self._published: tuple[int, str] | None = None  # (size, note as written)
        self._keys_version = -1
        self._alarm: str | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cdx-audit-tiles", daemon=True)

    def health(self) -> str | None:
        """``None`` when healthy, else why publishing was refused."""
        return self._alarm

    @property
    def published_size(self) -> int:
        """The size of the checkpoint written last (0 before the first)."""
        return self._read_published()[0]

    def _read_published(self) -> tuple[int, str]:
        if self._published is None:
            text = self.target.get(CHECKPOINT_PATH)
            if text is None:
                self._published = (0, "")
            else:
                body = note.parse_note(text.decode()).text
                self._published = (note.Checkpoint.parse(body).size, text.decode())
        return self._published

    def publish_once(self) -> int:
        """Publish the newest checkpoint and the tiles it needs; returns its size.

        Raises:
            CheckpointInconsistentError: the newest checkpoint is smaller than the published one.
            UnavailableError: the tile store could not be written (retried next round).
        """
        with self._lock:
            self._publish_keys()
            latest = self._store.latest_checkpoint()
            if latest is None:
                return 0
            size, written = self._read_published()
            if latest.size < size:
                self._alarm = "the log's newest checkpoint is smaller than the published one"
                log.error("tile publishing refused: %s", self._alarm)
                raise errors.CheckpointInconsistentError(self._alarm)
            if latest.size > size:
                with telemetry.stage("audit.tiles") as stage:
                    stage.set("tiles", self._write_round(size, latest.size))
            text = latest.note_with_cosignatures
            if text != written:
                self.target.put(CHECKPOINT_PATH, text.encode(), content_type=_TEXT, immutable=False)
                self._published = (latest.size, text)
            self._alarm = None
            return latest.size

    def _write_round(self, old: int, new: int) -> int:
        """The tiles of every checkpoint in ``(old, new]``: hash tiles only for the ones in
        between, hash tiles and bundles for ``new``."""
        count = 0
        previous = old
        between = self._store.checkpoint_sizes_between(old, new, INTERMEDIATE_CHECKPOINTS)
        for size in between:
            count += self._write_tiles(previous, size, partial_bundles=False)
            previous = size
        return count + self._write_tiles(previous, new)

    def _write_tiles(self, old: int, new: int, *, partial_bundles: bool = True) -> int:
        count = 0
        for tile in tiles.new_tiles(old, new):
            data = self._store.hashes_at(tiles.TILE_HEIGHT * tile.level, tile.first, tile.width)
            if tile.level == 0 and (partial_bundles or not tile.partial):
                leaves = self._store.leaves_between(tile.first, tile.first + tile.width)
                bundle = tiles.entry_bundle(leaves)
                self.target.put(tile.bundle_path(), bundle, content_type=_BINARY, immutable=True)
            self.target.put(tile.path(), data, content_type=_BINARY, immutable=True)
            count += 1
        return count

    def _publish_keys(self) -> None:
        if self._conf is None:
            return
        try:
            conf = self._conf()
        except errors.CdxError as exc:
            log.warning("no global configuration to publish keys from: %s", exc.code)
            return
        if conf.version == self._keys_version:
            return
        for path, (data, content_type) in keydocs.documents(conf).items():
            self.target.put(path, data, content_type=content_type, immutable=False)
        self._keys_version = conf.version

    def last_published(self) -> CheckpointRow | None:
        """The stored checkpoint of the size written last, if any."""
        size = self.published_size
        return self._store.checkpoint_at(size) if size else None

    # --- background ---------------------------------------------------------------------------

    def nudge(self) -> None:
        """Publish soon (e.g. after a new checkpoint or cosignature)."""
        self._wake.set()

    def start(self) -> TilePublisher:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.publish_once()
            except errors.CheckpointInconsistentError:
                pass  # logged; an operator must intervene
            except errors.CdxError as exc:
                log.warning("publishing tiles failed (retrying): %s", exc.code)
            except Exception:
                log.exception("publishing tiles failed")
            self._wake.wait(self._interval)
            self._wake.clear()
