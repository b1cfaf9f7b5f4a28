"""A FastAPI route that calls its endpoint without FastAPI's per-request machinery.

For the hot single-record routes, whose parameters are the ``Request``, ``str`` path parameters
and optional ``str`` headers: none of them can fail validation, so FastAPI's per-request work
(dependency resolution, two exit stacks, a second exception wrapper) buys nothing and costs
about a quarter of a point read's server CPU (bench/RESULTS.md). The route is declared as
usual, so the OpenAPI document shows it unchanged, and exceptions reach the app's handlers as
from any route. The constructor refuses an endpoint whose parameters would need validation.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.routing import APIRoute
from starlette.types import Receive, Scope, Send


class DirectRoute(APIRoute):
    def __init__(self, path: str, endpoint: Any, **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        dependant = self.dependant
        needs_validation = (
            dependant.dependencies
            or dependant.query_params
            or dependant.body_params
            or dependant.cookie_params
        )
        plain = all(p.field_info.annotation is str for p in dependant.path_params) and all(
            p.field_info.annotation in (str, str | None) and not p.field_info.is_required()
            for p in dependant.header_params
        )
        if needs_validation or not plain or dependant.request_param_name is None:
            raise TypeError(
                f"{path}: a DirectRoute endpoint takes the Request, str path parameters and "
                "optional str headers only"
            )
        self._request_param: str = dependant.request_param_name
        self._headers = [(p.name, str(p.alias)) for p in dependant.header_params]

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.methods and scope["method"] not in self.methods:
            await super().handle(scope, receive, send)  # FastAPI's 405 with its Allow header
            return
        request = Request(scope, receive, send)
        arguments = dict(scope["path_params"])
        if self._headers:
            headers = request.headers
            for name, header in self._headers:
                arguments[name] = headers.get(header)
        arguments[self._request_param] = request
        response = await self.endpoint(**arguments)
        await response(scope, receive, send)
