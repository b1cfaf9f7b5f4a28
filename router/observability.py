"""Request ids, Prometheus metrics and the access log, as one pure ASGI middleware.

The access log names the route template (``/v1/subjects/{subject_id}``), never the raw path: a
path carries subject ids and record keys, and logs are often shipped abroad (invariant 7).
"""

from __future__ import annotations

import logging
import os
import re
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from domicile.router.health import Health

access_log = logging.getLogger("domicile.access")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "domicile_http_requests",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "domicile_http_request_duration_seconds",
            "HTTP request latency by route",
            ["method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.refused = Counter(
            "domicile_placements_refused",
            "Registrations refused because the policy permits no region for the jurisdiction",
            ["jurisdiction"],
            registry=self.registry,
        )
        self.shard_up = Gauge(
            "domicile_shard_up",
            "1 when the shard serves reads and writes; 0 with the cause (read_only: reads only)",
            ["shard", "region", "cause"],
            registry=self.registry,
        )
        self.catalog_up = Gauge(
            "domicile_catalog_up",
            "1 when the catalog database answers; 0 with the cause",
            ["cause"],
            registry=self.registry,
        )
        self.redis_up = Gauge(
            "domicile_redis_up",
            "1 when the configured Redis is in use; 0 with the cause (placements are then "
            "read from the catalog)",
            ["cause"],
            registry=self.registry,
        )
        self.rule_to_move = Gauge(
            "domicile_rule_subjects_to_move",
            "Subjects a rule with an effective time governs that are outside its target regions",
            ["rule"],
            registry=self.registry,
        )
        self.rule_seconds_left = Gauge(
            "domicile_rule_seconds_to_effective",
            "Seconds until a scheduled rule takes effect (0 once it has)",
            ["rule"],
            registry=self.registry,
        )
        self.relocations = Histogram(
            "domicile_relocations_seconds",
            "Relocations on write (placement rule 8): the pause the writing request met",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "domicile_auth_failures",
            "Failed authentications by reason (missing, malformed, unknown_key, wrong_secret, "
            "revoked), and requests refused with 429 after too many of them (throttled)",
            ["reason"],
            registry=self.registry,
        )
        #: The cause label last set per series, so a changed cause replaces its old series.
        self._causes: dict[tuple[Gauge, tuple[str, ...]], str] = {}
        # labels() validates and locks on every call; a route's children never change.
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def set_shard(self, shard: str, region: str, health: Health) -> None:
        self._set(self.shard_up, (shard, region), health)

    def set_catalog(self, health: Health) -> None:
        self._set(self.catalog_up, (), health)

    def set_redis(self, health: Health | None) -> None:
        if health is not None:  # no series at all when no Redis is configured
            self._set(self.redis_up, (), health)

    def _set(self, gauge: Gauge, labels: tuple[str, ...], health: Health) -> None:
        cause = health.cause or ""
        previous = self._causes.get((gauge, labels))
        if previous is not None and previous != cause:
            gauge.remove(*labels, previous)
        self._causes[(gauge, labels)] = cause
        gauge.labels(*labels, cause).set(1 if health.up else 0)

    def observe(self, method: str, route: str, status: int, elapsed: float) -> None:
        children = self._children.get((method, route, status))
        if children is None:
            children = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
            self._children[(method, route, status)] = children
        children[0].inc()
        children[1].observe(elapsed)


def _route_of(scope: Scope) -> str:
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class Observability:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                request_id = candidate if _REQUEST_ID.fullmatch(candidate) else ""
                break
        request_id = request_id or os.urandom(16).hex()
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = _route_of(scope)
            method = scope["method"]
            self.metrics.observe(method, route, status, elapsed)
            access_log.info(
                "%s %s %d %.1fms request=%s", method, route, status, elapsed * 1000, request_id
            )
