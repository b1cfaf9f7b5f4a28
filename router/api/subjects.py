"""/v1/subjects: register (with lookup keys), placement, erasure, export."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from domicile.audit.events import rfc3339
from domicile.router.api.common import Purpose, actor_of, require_json
from domicile.router.api.models import RegisterSubject, SubjectExport, SubjectPlacementOut, errors
from domicile.router.auth import RecordsRead, SubjectsWrite
from domicile.router.responses import JSONResponse
from domicile.router.state import runtime_of
from domicile.shards.store import StoredRecord, SubjectPlacement

router = APIRouter(prefix="/v1/subjects", tags=["subjects"])


def placement_json(p: SubjectPlacement) -> dict[str, str]:
    return {
        "subject_id": p.subject_id,
        "jurisdiction": p.jurisdiction,
        "region": p.region,
        "country": p.country,
        "shard": p.shard,
    }


@router.post(
    "",
    operation_id="register_subject",
    status_code=201,
    response_model=SubjectPlacementOut,
    responses={
        200: {"model": SubjectPlacementOut, "description": "already registered"},
        **errors(401, 403, 409, 415, 422, 503),
    },
)
async def register_subject(
    body: RegisterSubject, request: Request, _: SubjectsWrite, purpose: Purpose = None
) -> Response:
    require_json(request)
    runtime = runtime_of(request)
    placement, created = await runtime.store.register(
        body.subject_id, body.jurisdiction, actor_of(request, purpose), body.lookups
    )
    return JSONResponse(placement_json(placement), status_code=201 if created else 200)


@router.get(
    "/{subject_id}",
    operation_id="get_subject",
    response_model=SubjectPlacementOut,
    responses=errors(401, 403, 404, 422, 503),
)
async def get_subject(subject_id: str, request: Request, _: RecordsRead) -> Response:
    placement = await runtime_of(request).store.placement(subject_id)
    return JSONResponse(placement_json(placement))


@router.delete(
    "/{subject_id}",
    operation_id="erase_subject",
    status_code=204,
    responses=errors(401, 403, 404, 422, 503),
)
async def erase_subject(
    subject_id: str, request: Request, _: SubjectsWrite, purpose: Purpose = None
) -> Response:
    await runtime_of(request).store.erase(subject_id, actor_of(request, purpose))
    return Response(status_code=204)


def _exported(record: StoredRecord) -> bytes:
    meta = orjson.dumps(
        {
            "collection": record.collection,
            "key": record.key,
            "version": record.version,
            "content_sha256": record.content_sha256,
        }
    )
    return meta[:-1] + b',"data":' + (record.data or b"{}") + b"}"


@router.get(
    "/{subject_id}/export",
    operation_id="export_subject",
    response_model=SubjectExport,
    responses=errors(401, 403, 404, 422, 503),
)
async def export_subject(subject_id: str, request: Request, _: RecordsRead) -> Response:
    exported = await runtime_of(request).store.export(subject_id)
    head = orjson.dumps(
        {
            **placement_json(exported.placement),
            "exported_at": rfc3339(datetime.now(UTC)),
            "lookups": dict(exported.lookups),
        }
    )
    records = b",".join(_exported(r) for r in exported.records)
    body = head[:-1] + b',"records":[' + records + b"]}"
    return JSONResponse(body)
