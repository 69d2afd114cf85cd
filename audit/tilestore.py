"""Where the log's static C2SP tlog-tiles resources live: a directory or an S3-compatible bucket.

A ``TileStore`` holds bytes by path (``checkpoint``, ``tile/0/x001/234``, ``tile/entries/...``,
``.well-known/...``). Tiles and entry bundles are immutable once written (a partial tile has its
own path per width); only ``checkpoint`` and the key documents change. Any static web server,
CDN or object store can serve a store's contents as they are; ``audit.http`` serves them too.

``open_tile_store(location)`` takes a directory path, or ``s3://BUCKET[/PREFIX]`` with the
endpoint and credentials of an S3-compatible service from the standard ``AWS_*`` environment
variables or ``?endpoint=URL`` (boto3; ``pip install cdx[s3]``).
"""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path
from typing import Any, Protocol

from cdx import errors
from cdx.files import write_atomically

#: A tile or bundle never changes: a CDN may keep it for a year.
IMMUTABLE = "public, max-age=31536000, immutable"
#: The checkpoint changes every few seconds (c2sp.org/tlog-tiles: "SHOULD prevent caching
#: beyond a few seconds").
MUTABLE = "no-cache"


class TileStore(Protocol):
    """Bytes by path; ``put`` replaces (a tile is only ever written with the same bytes)."""

    def put(self, path: str, data: bytes, *, content_type: str, immutable: bool) -> None:
        """Store ``data`` at ``path``.

        Raises:
            UnavailableError: the store could not be written.
        """
        ...

    def get(self, path: str) -> bytes | None:
        """The bytes at ``path``, or ``None``.

        Raises:
            UnavailableError: the store could not be read.
        """
        ...


def _check_path(path: str) -> str:
    parts = path.split("/")
    if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise errors.InvalidArgumentError("not a tile store path")
    return path


class DirectoryTileStore:
    """A directory a static web server can serve as it is (files written atomically, 0644 by
    default; ``file_mode=0o600`` when only this account serves them, as a single box does)."""

    def __init__(self, root: Path, *, file_mode: int = 0o644) -> None:
        self.root = root
        self._mode = file_mode
        root.mkdir(parents=True, exist_ok=True)

    def put(self, path: str, data: bytes, *, content_type: str, immutable: bool) -> None:
        target = self.root / _check_path(path)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(target, data, self._mode)
        except OSError as exc:
            raise errors.UnavailableError(f"cannot write {target}") from exc

    def get(self, path: str) -> bytes | None:
        try:
            return (self.root / _check_path(path)).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        except OSError as exc:
            raise errors.UnavailableError(f"cannot read {path} from {self.root}") from exc


class S3TileStore:
    """An S3-compatible bucket (AWS S3, MinIO, Ceph RGW, ...), objects under ``prefix``, with
    the content type and cache headers a CDN in front of it passes on."""

    def __init__(self, bucket: str, prefix: str = "", *, client: Any = None, **client_kw: Any):
        if client is None:
            try:
                import boto3
            except ImportError as exc:  # pragma: no cover - depends on the installation
                raise errors.FailedPreconditionError(
                    "an S3 tile store needs boto3: pip install 'cdx[s3]'"
                ) from exc
            client = boto3.client("s3", **client_kw)
        self._client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    def _key(self, path: str) -> str:
        path = _check_path(path)
        return f"{self.prefix}/{path}" if self.prefix else path

    def put(self, path: str, data: bytes, *, content_type: str, immutable: bool) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.put_object(
                Bucket=self.bucket,
                Key=self._key(path),
                Body=data,
                ContentType=content_type,
                CacheControl=IMMUTABLE if immutable else MUTABLE,
            )
        except (BotoCoreError, ClientError) as exc:
            raise errors.UnavailableError(f"cannot write {path} to bucket {self.bucket}") from exc

    def get(self, path: str) -> bytes | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self._key(path))
            return bytes(response["Body"].read())
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise errors.UnavailableError(f"cannot read {path} from bucket {self.bucket}") from exc
        except BotoCoreError as exc:
            raise errors.UnavailableError(f"cannot read {path} from bucket {self.bucket}") from exc


def open_tile_store(location: str) -> TileStore:
    """A store from a directory path or an ``s3://BUCKET[/PREFIX][?endpoint=URL]`` URL.

    Raises:
        InvalidArgumentError: an unknown scheme or no bucket.
    """
    parsed = urllib.parse.urlsplit(location)
    if parsed.scheme in ("", "file"):
        return DirectoryTileStore(Path(parsed.path if parsed.scheme else location))
    if parsed.scheme != "s3" or not parsed.netloc:
        raise errors.InvalidArgumentError("a tile store is a directory or s3://BUCKET[/PREFIX]")
    query = urllib.parse.parse_qs(parsed.query)
    endpoint = query.get("endpoint", [os.environ.get("AWS_ENDPOINT_URL_S3", "")])[0]
    kw = {"endpoint_url": endpoint} if endpoint else {}
    return S3TileStore(parsed.netloc, parsed.path, **kw)
