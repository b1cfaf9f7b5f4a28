"""Liveness and Prometheus metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from domicile.router.observability import Metrics
from domicile.router.responses import JSONResponse
from domicile.router.state import runtime_of

router = APIRouter(tags=["operations"])


@router.get("/healthz", operation_id="healthz")
async def healthz() -> Response:
    return JSONResponse({"status": "ok"})


@router.get("/metrics", operation_id="metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    runtime = runtime_of(request)
    collected: Metrics = request.app.state.metrics
    shards = runtime.registry.all()
    health = await asyncio.gather(*(shard.ping(within=1.0) for shard in shards))
    for shard, up in zip(shards, health, strict=True):
        collected.shard_up.labels(shard.name, shard.region.name).set(1 if up else 0)
    return Response(generate_latest(collected.registry), media_type=CONTENT_TYPE_LATEST)
