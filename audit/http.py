"""The log's read API over HTTP(S): C2SP tlog-tiles and the key documents, from a ``TileStore``.

``GET /checkpoint`` (mutable, not cached), ``GET /tile/<L>/<N>[.p/<W>]`` and
``GET /tile/entries/<N>[.p/<W>]`` (immutable, cached for a year; entry bundles gzip-compressed
when the client accepts it), ``GET /.well-known/cdx/log.vkey``, ``witnesses.vkeys`` and
``jwks.json``. Anything else, or a path that is not canonical, is 404. The same files can be
served by any static server or CDN from the store itself; this app exists so a single-box
instance needs nothing else.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from audit.publisher import CHECKPOINT_PATH
from audit.tilestore import IMMUTABLE, MUTABLE, TileStore
from audit.tlogwitness import MAX_BODY_BYTES, Answer
from cdx import errors, keydocs, tiles

_KEY_DOCUMENTS = {
    keydocs.LOG_KEY_PATH: "text/plain; charset=utf-8",
    keydocs.WITNESS_KEYS_PATH: "text/plain; charset=utf-8",
    keydocs.JWKS_PATH: "application/jwk-set+json",
}


def _not_found() -> Response:
    return PlainTextResponse("not found\n", status_code=404, headers={"cache-control": MUTABLE})


def witness_app(add_checkpoint: Callable[[bytes], Answer]) -> Starlette:
    """The ASGI app of a tlog-witness: ``POST /add-checkpoint`` (c2sp.org/tlog-witness)."""

    async def handle(request: Request) -> Response:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                return PlainTextResponse("request too large\n", status_code=413)
        answer = await run_in_threadpool(add_checkpoint, bytes(body))
        # Exactly the content type the specification names (no charset added to it).
        return Response(
            answer.body.encode(),
            status_code=answer.status,
            headers={"content-type": answer.content_type},
        )

    return Starlette(routes=[Route("/add-checkpoint", handle, methods=["POST"])])


def tiles_app(store: TileStore) -> Starlette:
    """The ASGI app serving ``store``."""

    async def checkpoint(_request: Request) -> Response:
        data = store.get(CHECKPOINT_PATH)
        if data is None:
            return _not_found()
        return Response(
            data,
            media_type="text/plain; charset=utf-8",
            headers={"cache-control": MUTABLE},
        )

    async def tile(request: Request) -> Response:
        path = f"tile/{request.path_params['rest']}"
        try:
            _, entries = tiles.parse_path(path)
        except errors.MalformedError:
            return _not_found()
        data = store.get(path)
        if data is None:
            return _not_found()
        headers = {"cache-control": IMMUTABLE}
        if entries:  # bundles compress well; hashes do not
            headers["vary"] = "accept-encoding"
            if "gzip" in request.headers.get("accept-encoding", ""):
                data = gzip.compress(data, compresslevel=6, mtime=0)
                headers["content-encoding"] = "gzip"
        return Response(data, media_type="application/octet-stream", headers=headers)

    async def well_known(request: Request) -> Response:
        path = f".well-known/cdx/{request.path_params['name']}"
        content_type = _KEY_DOCUMENTS.get(path)
        data = store.get(path) if content_type else None
        if data is None or content_type is None:
            return _not_found()
        return Response(data, media_type=content_type, headers={"cache-control": "max-age=60"})

    return Starlette(
        routes=[
            Route("/checkpoint", checkpoint, methods=["GET"]),
            Route("/tile/{rest:path}", tile, methods=["GET"]),
            Route("/.well-known/cdx/{name}", well_known, methods=["GET"]),
        ]
    )
