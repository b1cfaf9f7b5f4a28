"""/v1/shards (admin): the topology with live health, schema revision and counts."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from starlette.responses import Response

from domicile.router.api.models import ShardList, errors
from domicile.router.auth import Admin
from domicile.router.health import BEHIND, DOWN, UP, shard_health
from domicile.router.responses import JSONResponse
from domicile.router.runtime import Runtime
from domicile.router.state import runtime_of
from domicile.shards.errors import ShardUnavailable
from domicile.shards.faults import Cause
from domicile.shards.registry import Shard
from domicile.shards.schema_runner import (
    SHARD_HISTORY,
    head_revision,
    revisions_behind,
    shard_revision,
)

router = APIRouter(prefix="/v1/shards", tags=["shards"])


async def describe_shard(runtime: Runtime, shard: Shard) -> dict[str, object]:
    """The shard's health (state, cause, reason), schema revision and counts (None when it
    cannot be read). A shard that serves below the schema this version needs is ``behind``."""
    health = await shard_health(shard)
    info: dict[str, object] = {
        "name": shard.name,
        "region": shard.region.name,
        "country": shard.region.country,
        "health": health.state,
        "cause": health.cause,
        "reason": health.reason,
        "schema_revision": None,
        "head_revision": head_revision(SHARD_HISTORY),
        "subjects": None,
        "records": None,
    }
    if health.state == DOWN:
        return info
    try:
        async with asyncio.timeout(5):
            info["schema_revision"] = revision = await shard_revision(shard)
            info["subjects"], info["records"] = await runtime.store.shard_counts(shard)
    except TimeoutError:
        info.update(
            health=DOWN,
            cause=Cause.TIMED_OUT.value,
            reason=f"shard {shard.name} did not answer in time",
        )
        return info
    except ShardUnavailable as exc:  # it failed between the probe and now
        info.update(health=DOWN, cause=exc.fault.cause.value, reason=exc.message)
        return info
    behind = revisions_behind(revision)
    if health.state == UP and behind:
        info.update(
            health=BEHIND,
            cause="schema_behind",
            reason=f"shard {shard.name} is at schema {revision or 'base'}, {behind} "
            f"revision{'' if behind == 1 else 's'} below {info['head_revision']}, which this "
            "version needs; run `domicile shards upgrade`",
        )
    return info


@router.get("", operation_id="list_shards", response_model=ShardList, responses=errors(401, 403))
async def list_shards(request: Request, _: Admin) -> Response:
    runtime = runtime_of(request)
    shards = await asyncio.gather(*(describe_shard(runtime, s) for s in runtime.registry.all()))
    return JSONResponse({"shards": list(shards)})
