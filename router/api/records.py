"""/v1/subjects/{id}/records: conditional writes, reads with residency headers, listing."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from domicile.router.api.common import (
    IfMatch,
    Purpose,
    actor_of,
    parse_if_match,
    read_json_object,
)
from domicile.router.api.direct import DirectRoute
from domicile.router.api.models import RecordList, RecordMeta, RecordOut, errors
from domicile.router.api.openapi import secured
from domicile.router.auth import RecordsRead, authorize
from domicile.router.errors import ApiError
from domicile.router.responses import JSONResponse
from domicile.router.state import runtime_of
from domicile.shards.store import StoredRecord

PREFIX = "/v1/subjects/{subject_id}/records"

# The single-record routes are the hot path: ``DirectRoute``s (no per-request dependency
# resolution; their parameters cannot fail validation), added to the app itself rather than
# through an included router, whose matching costs 20-25 us a request (bench/RESULTS.md). They
# check the key with ``authorize`` as their first statement, so a bad key is answered first;
# the list route, whose query parameters can fail validation, keeps the dependency for that.
hot_router = APIRouter(prefix=PREFIX, tags=["records"], route_class=DirectRoute)
router = APIRouter(prefix=PREFIX, tags=["records"])

_PUT_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object"}}},
        "description": "the record: any JSON object, at most the configured size (1 MiB default)",
    }
}


_WHERE = {
    "headers": {
        "ETag": {"description": 'the version, e.g. "3"', "schema": {"type": "string"}},
        "X-Domicile-Region": {"description": "where it is stored", "schema": {"type": "string"}},
        "X-Domicile-Shard": {"description": "the shard holding it", "schema": {"type": "string"}},
    }
}


def _fields(record: StoredRecord) -> dict[str, Any]:
    return {
        "subject_id": record.subject_id,
        "collection": record.collection,
        "key": record.key,
        "version": record.version,
        "jurisdiction": record.jurisdiction,
        "region": record.region,
        "shard": record.shard,
        "content_sha256": record.content_sha256,
    }


def _meta(record: StoredRecord) -> bytes:
    return orjson.dumps(_fields(record))


def _with_data(record: StoredRecord) -> bytes:
    # The stored bytes are already JSON: embed them rather than decode and re-encode.
    fields = _fields(record)
    fields["data"] = orjson.Fragment(record.data or b"{}")
    return orjson.dumps(fields)


def _headers(record: StoredRecord) -> dict[str, str]:
    return {
        "ETag": f'"{record.version}"',
        "X-Domicile-Region": record.region,
        "X-Domicile-Shard": record.shard,
    }


@hot_router.put(
    "/{collection}/{key}",
    operation_id="put_record",
    response_model=RecordMeta,
    openapi_extra={**_PUT_BODY, **secured("records:write")},
    responses={200: _WHERE, **errors(401, 403, 404, 409, 412, 413, 415, 422, 503)},
)
async def put_record(
    subject_id: str,
    collection: str,
    key: str,
    request: Request,
    if_match: IfMatch = None,
    purpose: Purpose = None,
) -> Response:
    await authorize(request, "records:write")
    runtime = runtime_of(request)
    data = await read_json_object(request, runtime.settings.max_record_bytes)
    actor = actor_of(request, purpose)
    record = await runtime.store.put(
        subject_id, collection, key, data, actor, if_match=parse_if_match(if_match)
    )
    return JSONResponse(_meta(record), headers=_headers(record))


@hot_router.get(
    "/{collection}/{key}",
    operation_id="get_record",
    response_model=RecordOut,
    openapi_extra=secured("records:read"),
    responses={200: _WHERE, **errors(401, 403, 404, 422, 503)},
)
async def get_record(subject_id: str, collection: str, key: str, request: Request) -> Response:
    await authorize(request, "records:read")
    record = await runtime_of(request).store.get(subject_id, collection, key)
    return JSONResponse(_with_data(record), headers=_headers(record))


@hot_router.delete(
    "/{collection}/{key}",
    operation_id="delete_record",
    status_code=204,
    openapi_extra=secured("records:write"),
    responses=errors(401, 403, 404, 409, 412, 422, 503),
)
async def delete_record(
    subject_id: str,
    collection: str,
    key: str,
    request: Request,
    if_match: IfMatch = None,
    purpose: Purpose = None,
) -> Response:
    await authorize(request, "records:write")
    await runtime_of(request).store.delete(
        subject_id, collection, key, actor_of(request, purpose), if_match=parse_if_match(if_match)
    )
    return Response(status_code=204)


def _encode_cursor(position: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(position)).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        value = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):
        value = None
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)):
        raise ApiError(422, "invalid_cursor", "cursor is not one this API returned")
    return value[0], value[1]


@router.get(
    "",
    operation_id="list_records",
    response_model=RecordList,
    responses=errors(401, 403, 404, 422, 503),
)
async def list_records(
    subject_id: str,
    request: Request,
    _: RecordsRead,
    collection: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: str | None = None,
) -> Response:
    after = _decode_cursor(cursor) if cursor else None
    page = await runtime_of(request).store.list(
        subject_id, collection=collection, limit=limit, after=after
    )
    next_cursor = orjson.dumps(_encode_cursor(page.next_cursor) if page.next_cursor else None)
    body = b'{"items":[' + b",".join(_with_data(r) for r in page.items) + b'],"next_cursor":'
    return JSONResponse(body + next_cursor + b"}")
