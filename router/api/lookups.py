"""Lookup keys: set and remove a subject's (``/v1/subjects/{id}/lookups/{kind}``), and find a
subject by one (``POST /v1/lookups/{kind}``: the value travels in the body, never in the URL,
which proxies log)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from domicile.router.api.common import Purpose, actor_of, require_json
from domicile.router.api.models import LookupOut, LookupValueIn, SubjectPlacementOut, errors
from domicile.router.api.subjects import placement_json
from domicile.router.auth import RecordsRead, SubjectsWrite
from domicile.router.responses import JSONResponse
from domicile.router.state import runtime_of

router = APIRouter(tags=["lookups"])


@router.put(
    "/v1/subjects/{subject_id}/lookups/{kind}",
    operation_id="set_lookup",
    response_model=LookupOut,
    responses=errors(401, 403, 404, 409, 415, 422, 503),
)
async def set_lookup(
    subject_id: str,
    kind: str,
    body: LookupValueIn,
    request: Request,
    _: SubjectsWrite,
    purpose: Purpose = None,
) -> Response:
    """Set or replace the subject's lookup key of this kind. 409 `lookup_taken` when another
    subject holds the value; 422 `invalid_lookup` when it does not normalise."""
    require_json(request)
    await runtime_of(request).store.set_lookup(
        subject_id, kind, body.value, actor_of(request, purpose)
    )
    return JSONResponse({"subject_id": subject_id, "kind": kind})


@router.delete(
    "/v1/subjects/{subject_id}/lookups/{kind}",
    operation_id="remove_lookup",
    status_code=204,
    responses=errors(401, 403, 404, 422, 503),
)
async def remove_lookup(
    subject_id: str, kind: str, request: Request, _: SubjectsWrite, purpose: Purpose = None
) -> Response:
    """Remove the subject's lookup key of this kind (if any): its value is free again."""
    await runtime_of(request).store.remove_lookup(subject_id, kind, actor_of(request, purpose))
    return Response(status_code=204)


@router.post(
    "/v1/lookups/{kind}",
    operation_id="find_by_lookup",
    response_model=SubjectPlacementOut,
    responses=errors(401, 403, 404, 415, 422, 503),
)
async def find_by_lookup(
    kind: str, body: LookupValueIn, request: Request, _: RecordsRead
) -> Response:
    """The placement of the subject holding this value (e-mail, phone in E.164 or in the
    national form of the subject's country, username), or 404 `subject_not_found`."""
    require_json(request)
    placement = await runtime_of(request).lookups.find(kind, body.value)
    return JSONResponse(placement_json(placement))
