"""The app in-process over ASGI, with its real lifespan, and a client holding one key per scope."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx

from domicile.audit.note import Verifier
from domicile.router.app import create_app
from domicile.router.runtime import Runtime
from domicile.shards.api_keys import SCOPES


class Api:
    """An in-process client of the app, with one key per scope."""

    def __init__(self, client: httpx.AsyncClient, runtime: Runtime, keys: dict[str, str]):
        self.client = client
        self.runtime = runtime
        self.keys = keys

    def auth(self, scope: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[scope]}"}

    async def request(
        self, method: str, url: str, scope: str = "admin", **kwargs: Any
    ) -> httpx.Response:
        headers = {**self.auth(scope), **kwargs.pop("headers", {})}
        return await self.client.request(method, url, headers=headers, **kwargs)

    async def register(self, subject_id: str, jurisdiction: str) -> httpx.Response:
        return await self.request(
            "POST", "/v1/subjects", json={"subject_id": subject_id, "jurisdiction": jurisdiction}
        )

    async def put(
        self, subject_id: str, collection: str, key: str, data: Any, **kwargs: Any
    ) -> httpx.Response:
        return await self.request(
            "PUT", f"/v1/subjects/{subject_id}/records/{collection}/{key}", json=data, **kwargs
        )


async def start_api(settings: Any) -> AsyncIterator[Api]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        runtime: Runtime = app.state.runtime
        keys = {
            scope: (await runtime.api_keys.create(f"test-{scope}", {scope})).secret
            for scope in SCOPES
        }
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://domicile") as client:
            yield Api(client, runtime, keys)


async def write_some(api: Api, subjects: dict[str, str], records: int = 2) -> None:
    for subject, jurisdiction in subjects.items():
        assert (await api.register(subject, jurisdiction)).status_code in (200, 201)
        for n in range(records):
            response = await api.put(subject, "notes", f"n{n}", {"n": n, "who": subject})
            assert response.status_code == 200, response.text


async def verifier_of(api: Api) -> Verifier:
    response = await api.client.get("/v1/audit/key")
    return Verifier.parse(response.text.strip())
