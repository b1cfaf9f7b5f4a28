"""The FastAPI application. Everything stateful is built in the lifespan, not at import."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from domicile.router.api import (
    audit,
    errors,
    health,
    lookups,
    moves,
    openapi,
    records,
    shards,
    subjects,
)
from domicile.router.auth import Authenticator
from domicile.router.config import Settings
from domicile.router.observability import Metrics, Observability
from domicile.router.runtime import bootstrap_admin_key, open_runtime
from domicile.router.schedule import follow_schedule
from domicile.router.throttle import AuthThrottle, RedisFailures

log = logging.getLogger("domicile")


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_runtime(settings) as runtime:
            for reason in (runtime.catalog_fault, *runtime.shard_faults.values()):
                if reason is not None:  # served without it meanwhile; /readyz tells its state
                    log.warning("not ready at start-up: %s", reason)
            if runtime.catalog_migrated:
                await bootstrap_admin_key(runtime)
            app.state.runtime = runtime
            shared = (
                RedisFailures(settings.redis_url, settings.deployment, settings.redis_ca)
                if settings.redis_url
                else None
            )
            throttle = AuthThrottle(settings.auth_failures_per_minute, shared)
            app.state.authenticator = Authenticator(
                runtime.api_keys,
                throttle=throttle,
                count=lambda reason: metrics.auth_failures.labels(reason).inc(),
            )
            if runtime.store.relocator is not None:
                runtime.store.relocator.observe = metrics.relocations.observe
            background = [
                asyncio.create_task(runtime.migrate_catalog_when_back()),
                asyncio.create_task(follow_schedule(runtime, metrics)),
            ]
            try:
                async with runtime.audit.running():
                    yield
            finally:
                await throttle.aclose()
                for task in background:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    app = FastAPI(
        title="domicile",
        version="0.1.0",
        summary="Geo-partitioned user-data storage: every record stays where the law says.",
        lifespan=lifespan,
        routes=records.hot_router.routes,  # on the app itself, matched first: the hot path
    )
    metrics = Metrics()
    app.state.metrics = metrics
    app.add_middleware(Observability, metrics=metrics)
    errors.install(app)
    openapi.install(app)
    for module in (records, subjects, lookups, shards, moves, audit, health):
        app.include_router(module.router)
    return app
