"""DirectRoute: the hot routes' endpoint call without FastAPI's per-request machinery."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Header, Request
from starlette.responses import JSONResponse, Response

from domicile.router.api.direct import DirectRoute

pytestmark = pytest.mark.anyio


def _app() -> FastAPI:
    router = APIRouter(prefix="/things/{owner}", route_class=DirectRoute)

    @router.put("/{name}")
    async def put_thing(
        owner: str, name: str, request: Request, if_match: Annotated[str | None, Header()] = None
    ) -> Response:
        body = await request.body()
        return JSONResponse({"owner": owner, "name": name, "if_match": if_match, "size": len(body)})

    @router.get("/{name}")
    async def get_thing(owner: str, name: str, request: Request) -> Response:
        raise ValueError(f"no {name}")

    app = FastAPI(routes=router.routes)

    @app.exception_handler(ValueError)
    async def not_found(_: Request, exc: ValueError) -> Response:
        return JSONResponse({"error": str(exc)}, status_code=404)

    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def test_parameters_headers_and_body_reach_the_endpoint(client: httpx.AsyncClient) -> None:
    answer = await client.put("/things/ann/b%20c", content=b"12345", headers={"If-Match": '"3"'})
    assert answer.status_code == 200
    assert answer.json() == {"owner": "ann", "name": "b c", "if_match": '"3"', "size": 5}
    assert (await client.put("/things/ann/x")).json()["if_match"] is None


async def test_exceptions_reach_the_app_handlers(client: httpx.AsyncClient) -> None:
    answer = await client.get("/things/ann/x")
    assert (answer.status_code, answer.json()) == (404, {"error": "no x"})


async def test_a_wrong_method_gets_fastapis_405(client: httpx.AsyncClient) -> None:
    refused = await client.delete("/things/ann/x")
    assert refused.status_code == 405
    assert "PUT" in refused.headers["allow"]


def test_the_route_stays_in_the_openapi_document() -> None:
    schema = _app().openapi()
    operation = schema["paths"]["/things/{owner}/{name}"]["put"]
    assert {p["name"] for p in operation["parameters"]} == {"owner", "name", "if-match"}


def test_an_endpoint_that_needs_validation_is_refused() -> None:
    router = APIRouter(route_class=DirectRoute)

    async def typed(number: int, request: Request) -> Response:
        return Response()

    async def with_query(name: str, request: Request, limit: int = 5) -> Response:
        return Response()

    for endpoint in (typed, with_query):
        with pytest.raises(TypeError, match="DirectRoute endpoint"):
            router.add_api_route("/x/{number}" if endpoint is typed else "/x/{name}", endpoint)
