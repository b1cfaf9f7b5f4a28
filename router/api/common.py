"""Helpers shared by the API modules: the caller as an audit actor, body parsing, and the
request headers routes read, declared so that the OpenAPI document shows them."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import Header, Request

from domicile.audit.events import Actor
from domicile.router.errors import ApiError

PURPOSE_MAX = 256

#: The caller's stated reason for a change, recorded in its audit entry.
Purpose = Annotated[
    str | None,
    Header(
        alias="X-Domicile-Purpose",
        description=f"why the change is made, recorded in its audit entry (at most "
        f"{PURPOSE_MAX} printable characters)",
    ),
]
#: A conditional write: the version the record must be at.
IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        description='write only if the record is at this version, e.g. "3" (else 412)',
    ),
]


def actor_of(request: Request, purpose: str | None) -> Actor:
    """The caller as the audit actor: the key id, the purpose (a route's ``Purpose`` header)
    and the request id."""
    if purpose is not None:
        purpose = purpose.strip()
        if len(purpose) > PURPOSE_MAX or not purpose.isprintable():
            raise ApiError(
                422,
                "invalid_purpose",
                f"X-Domicile-Purpose must be at most {PURPOSE_MAX} printable characters",
            )
    return Actor(
        key_id=getattr(request.state, "key_id", None),
        purpose=purpose or None,
        request_id=getattr(request.state, "request_id", None),
    )


def require_json(request: Request) -> None:
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"the body must be application/json, not {media or 'unspecified'}",
        )


async def read_json_object(request: Request, limit: int) -> dict[str, Any]:
    """The request body as a JSON object, refusing oversize bodies before reading them whole."""
    require_json(request)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large(limit)
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(
            422, "malformed_json", f"the request body is not valid JSON: {exc}"
        ) from None
    if not isinstance(value, dict):
        raise ApiError(
            422, "invalid_body", f"the record must be a JSON object, not {type(value).__name__}"
        )
    return value


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "record_too_large", f"the record exceeds the limit of {limit} bytes")


def parse_if_match(value: str | None) -> int | None:
    if value is None:
        return None
    raw = value.strip()
    if raw.startswith("W/"):
        raw = raw[2:]
    raw = raw.strip('"')
    if not raw.isdigit():
        raise ApiError(422, "invalid_if_match", 'If-Match must be a version in quotes, e.g. "3"')
    return int(raw)
