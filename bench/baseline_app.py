"""Baseline B: the service a team would write for one region, without residency.

Bare FastAPI over an asyncpg pool (statements prepared and cached per connection by asyncpg),
orjson bodies, the same uvicorn settings as ``domicile serve`` (one worker, uvloop, httptools,
no access log). Same URLs and response shapes as domicile's record API, minus everything that
residency adds: no auth, no pseudonyms, no directory, no fence, no audit entry. Keep it honest:
make it faster if you can, never slower.

    python -m bench.baseline_app --dsn postgresql://… --port 8101
"""

from __future__ import annotations

import argparse
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import orjson
import uvicorn
from fastapi import FastAPI, Request
from starlette.responses import Response

SELECT = "SELECT version, data FROM records WHERE subject_id = $1 AND collection = $2 AND key = $3"
UPSERT = """
INSERT INTO records (subject_id, collection, key, data, version, updated_at)
VALUES ($1, $2, $3, $4, 1, now())
ON CONFLICT (subject_id, collection, key) DO UPDATE
SET data = excluded.data, version = records.version + 1, updated_at = excluded.updated_at
RETURNING version
"""
JSON = "application/json"


async def keep_session(_: asyncpg.Connection) -> None:
    """The pool's ``reset`` hook, doing nothing (see ``create_pool`` below)."""


def create_app(dsn: str) -> FastAPI:
    pool: asyncpg.Pool | None = None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        nonlocal pool
        # Ten connections (asyncpg's default), as many as domicile keeps per shard; thirty were
        # no faster on this two-core host. No session reset on release: the service runs only
        # the two statements below, and asyncpg's default reset is a round trip per request.
        pool = await asyncpg.create_pool(dsn, reset=keep_session)
        try:
            yield
        finally:
            await pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/v1/subjects/{subject_id}/records/{collection}/{key}")
    async def get_record(subject_id: str, collection: str, key: str) -> Response:
        assert pool is not None
        row = await pool.fetchrow(SELECT, subject_id, collection, key)
        if row is None:
            return Response(b'{"error":"not found"}', 404, media_type=JSON)
        version, data = row
        body = orjson.dumps(
            {
                "subject_id": subject_id,
                "collection": collection,
                "key": key,
                "version": version,
                "data": orjson.Fragment(data),
            }
        )
        return Response(body, media_type=JSON, headers={"ETag": f'"{version}"'})

    @app.put("/v1/subjects/{subject_id}/records/{collection}/{key}")
    async def put_record(subject_id: str, collection: str, key: str, request: Request) -> Response:
        assert pool is not None
        try:
            value = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return Response(b'{"error":"malformed json"}', 422, media_type=JSON)
        if not isinstance(value, dict):
            return Response(b'{"error":"not an object"}', 422, media_type=JSON)
        version = await pool.fetchval(
            UPSERT, subject_id, collection, key, orjson.dumps(value).decode()
        )
        body = orjson.dumps(
            {"subject_id": subject_id, "collection": collection, "key": key, "version": version}
        )
        return Response(body, media_type=JSON, headers={"ETag": f'"{version}"'})

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8101)
    args = parser.parse_args()
    app = create_app(args.dsn)
    gc.freeze()  # as ``domicile serve`` does: startup objects leave the collector's scans
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        access_log=False,
        log_config=None,
        loop="uvloop",
        http="httptools",
    )


if __name__ == "__main__":
    main()
