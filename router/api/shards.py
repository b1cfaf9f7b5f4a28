"""/v1/shards (admin): the topology with live health, schema revision and counts."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from starlette.responses import Response

from domicile.router.api.models import ShardList, errors
from domicile.router.auth import Admin
from domicile.router.responses import JSONResponse
from domicile.router.runtime import Runtime
from domicile.router.state import runtime_of
from domicile.shards.errors import Unavailable
from domicile.shards.registry import Shard
from domicile.shards.schema_runner import SHARD_HISTORY, current_revision, head_revision

router = APIRouter(prefix="/v1/shards", tags=["shards"])


async def describe_shard(runtime: Runtime, shard: Shard) -> dict[str, object]:
    info: dict[str, object] = {
        "name": shard.name,
        "region": shard.region.name,
        "country": shard.region.country,
        "health": "down",
        "schema_revision": None,
        "head_revision": head_revision(SHARD_HISTORY),
        "subjects": None,
        "records": None,
    }
    if not await shard.ping():
        return info
    try:
        async with asyncio.timeout(5):
            info["schema_revision"] = await current_revision(shard.engine)
            info["subjects"], info["records"] = await runtime.store.shard_counts(shard)
    except (Unavailable, TimeoutError):
        return info
    except Exception:  # a shard not yet migrated has no tables to count
        info["health"] = "schema_missing"
        return info
    info["health"] = "up"
    return info


@router.get("", operation_id="list_shards", response_model=ShardList, responses=errors(401, 403))
async def list_shards(request: Request, _: Admin) -> Response:
    runtime = runtime_of(request)
    shards = await asyncio.gather(*(describe_shard(runtime, s) for s in runtime.registry.all()))
    return JSONResponse({"shards": list(shards)})
