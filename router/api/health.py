"""Liveness, readiness and Prometheus metrics.

``/healthz`` says the process runs. ``/readyz`` says whether it can serve: 200 while the
catalog answers, whatever state single shards are in (an orchestrator must not pull or restart
every router because one region is down), with each part's state in the body.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from domicile.router.gauges import read_logs
from domicile.router.health import Health, catalog_health, redis_health, shard_health
from domicile.router.observability import Metrics
from domicile.router.responses import JSONResponse
from domicile.router.runtime import Runtime
from domicile.router.state import runtime_of

router = APIRouter(tags=["operations"])


@router.get("/healthz", operation_id="healthz")
async def healthz() -> Response:
    return JSONResponse({"status": "ok"})


async def _probe(runtime: Runtime) -> tuple[Health, Health | None, dict[str, Health]]:
    shards = runtime.registry.all()
    catalog, *states = await asyncio.gather(
        catalog_health(runtime.catalog), *(shard_health(shard) for shard in shards)
    )
    by_name = {shard.name: state for shard, state in zip(shards, states, strict=True)}
    return catalog, redis_health(runtime.cache), by_name


@router.get("/readyz", operation_id="readyz")
async def readyz(request: Request) -> Response:
    catalog, redis, shards = await _probe(runtime_of(request))
    body = {
        "status": "ready" if catalog.up else "not_ready",
        "catalog": catalog.as_json(),
        "redis": None if redis is None else redis.as_json(),
        "shards": {name: health.as_json() for name, health in shards.items()},
    }
    return JSONResponse(body, status_code=200 if catalog.up else 503)


@router.get("/metrics", operation_id="metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    runtime = runtime_of(request)
    collected: Metrics = request.app.state.metrics
    catalog, redis, shards = await _probe(runtime)
    collected.set_catalog(catalog)
    collected.set_redis(redis)
    for shard in runtime.registry.all():
        collected.set_shard(shard.name, shard.region.name, shards[shard.name])
    await read_logs(runtime, collected)
    return Response(generate_latest(collected.registry), media_type=CONTENT_TYPE_LATEST)
