"""Access to the per-app runtime from request handlers."""

from __future__ import annotations

from fastapi import Request

from domicile.router.runtime import Runtime


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime
