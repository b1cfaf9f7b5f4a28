"""/v1/keys (admin): list, create and revoke API keys, as ``domicile keys`` does.

A revoked key is refused (401) by every router at once when they share Redis, otherwise within
the authenticator's cache time (``router.auth``). Listings never carry a secret; a new key's
secret is in the creation's answer only.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from domicile.router.api.common import require_json
from domicile.router.api.models import errors
from domicile.router.auth import Admin
from domicile.router.responses import JSONResponse
from domicile.router.state import runtime_of
from domicile.router.views import key_json

router = APIRouter(prefix="/v1/keys", tags=["keys"])


class KeyOut(BaseModel):
    key_id: str
    name: str
    scopes: list[str]
    created_at: str
    last_used_at: str | None = Field(
        description="recorded at most once a minute per router, so up to a minute behind"
    )
    revoked_at: str | None


class KeyList(BaseModel):
    keys: list[KeyOut]


class CreateKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=128, description="who the key is for")
    scopes: list[str] = Field(
        min_length=1,
        description="records:read, records:write, subjects:write, audit:read, admin",
    )


class NewKeyOut(KeyOut):
    secret: str = Field(description="the bearer token; shown this once, never stored")


@router.get("", operation_id="list_keys", response_model=KeyList, responses=errors(401, 403, 503))
async def list_keys(request: Request, _: Admin) -> Response:
    """Every API key, revoked ones included, oldest first."""
    keys = await runtime_of(request).api_keys.all()
    return JSONResponse({"keys": [key_json(k) for k in keys]})


@router.post(
    "",
    operation_id="create_key",
    status_code=201,
    response_model=NewKeyOut,
    responses=errors(401, 403, 415, 422, 503),
)
async def create_key(body: CreateKey, request: Request, caller: Admin) -> Response:
    require_json(request)
    api_keys = runtime_of(request).api_keys
    new = await api_keys.create(body.name, set(body.scopes), by=caller.key_id)
    created = await api_keys.get(new.key_id)
    assert created is not None
    return JSONResponse({**key_json(created), "secret": new.secret}, status_code=201)


@router.delete(
    "/{key_id}",
    operation_id="revoke_key",
    status_code=204,
    responses=errors(401, 403, 404, 503),
)
async def revoke_key(key_id: str, request: Request, caller: Admin) -> Response:
    """Revoke the key (again is 204 too): every router refuses it from now on."""
    await runtime_of(request).api_keys.revoke(key_id, by=caller.key_id)
    return Response(status_code=204)
